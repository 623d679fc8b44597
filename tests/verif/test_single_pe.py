"""A network file run layer by layer on one simulated PE (verif/single_pe.py), every layer's spike times
compared with ``yoso infer --dump-spikes`` (the golden model).

Default: a small random network on scikit-learn digits (Icarus). ``-m slow``: 100 Fashion-MNIST test images
through a random 784-32-10 network (Verilator), the issue's acceptance run.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import model
from verif.scoreboard import first_mismatch
from verif.single_pe import run_network
from yoso.cli import main


def golden_dump(tmp_path, net_path, dataset: str, limit: int) -> dict:
    out = tmp_path / "golden.npz"
    assert main(["infer", "--net", str(net_path), "--dataset", dataset, "--limit", str(limit), "--json",
                 "--dump-spikes", str(out)]) == 0
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


def compare(net, got: dict, want: dict) -> int:
    """Assert every layer's spike times are equal; returns the number of compared spike times."""
    n = 0
    for k in range(len(net.layers)):
        g = got[f"layer{k}"]
        w = want[f"layer{k}"].reshape(len(g), -1)
        for b in range(len(g)):
            msg = first_mismatch(g[b], w[b], net.no_spike)
            assert msg is None, f"layer {k} image {b}: {msg}"
        n += w.size
    return n


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog (iverilog) not installed")
def test_digits_random_network_icarus(tmp_path):
    net = model.random_network("64-12-10", seed=4, time_bits=5, t_in_max=12)
    path = tmp_path / "net.npz"
    model.save(net, path)
    want = golden_dump(tmp_path, path, "digits", 4)
    got = run_network(path, want["input"], lanes=4, neurons=8, sim="icarus", name="ci-digits")
    assert compare(net, got, want) == 4 * (12 + 10)
    fired = (want["layer0"] != net.no_spike).mean()
    assert 0.2 < fired < 1.0  # a run where spikes happen and silence too
    print(f"cycles={got['cycles']} config={got['config']}")


@pytest.mark.slow
def test_fashion_mnist_100_images_verilator(tmp_path):
    net = model.random_network("784-32-10", seed=0, bias=0.0)  # about half the hidden neurons stay silent
    path = tmp_path / "net.npz"
    model.save(net, path)
    want = golden_dump(tmp_path, path, "fashion-mnist", 100)
    got = run_network(path, want["input"], lanes=8, sim="verilator", name="slow-fmnist")
    n = compare(net, got, want)
    assert n == 100 * (32 + 10)
    for k in range(2):
        assert 0.1 < (want[f"layer{k}"] != net.no_spike).mean() < 0.95  # spikes and silence both compared
    pred = model.decide(got["layer1"], net.no_spike)
    assert np.array_equal(pred, want["prediction"])
    print(f"images=100 compared spike times={n} cycles={got['cycles']} config={got['config']} "
          f"hidden fired={(want['layer0'] != net.no_spike).mean():.3f} "
          f"output fired={(want['layer1'] != net.no_spike).mean():.3f}")
