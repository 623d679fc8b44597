"""The committed trained Fashion-MNIST network (networks/fmnist-fc.npz, 784-100-10) on the RTL mesh under
Icarus: every neuron's spike time in every layer equals the golden model's on the first test images."""

from __future__ import annotations

import json
from pathlib import Path

import model
from model.datasets import load_dataset
from yoso.cli import main as yoso

NET = Path(__file__).resolve().parents[2] / "networks" / "fmnist-fc.npz"
IMAGES = 2


def test_trained_fashion_mnist_network_on_mesh_bit_exact(capsys):
    net = model.load(NET)
    rc = yoso(["verify", "--net", str(NET), "--mesh", "2x2", "--dataset", "fashion-mnist",
               "--images", str(IMAGES), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0, out
    hidden, classes = net.layers[0].weight.shape[1], net.n_outputs
    assert out["images"] == IMAGES and out["spikes_compared"] == IMAGES * (hidden + classes)
    assert out["mismatches"] == 0 and out["protocol_errors"] == 0 and out["predictions_equal_golden"]
    # The verdict is the golden model's, on the same images.
    test = load_dataset("fashion-mnist", "test")
    pixels = test.images[:IMAGES].reshape(IMAGES, -1)
    golden = model.run(net, model.encode(pixels, net.encoding, net.time_bits))
    assert out["golden_accuracy"] == float((golden.prediction == test.labels[:IMAGES]).mean())
