"""Quantisation-aware mode: the torch forward pass reproduces the golden model on the exported network,
every layer's spike times bit for bit (silent sets included)."""

import numpy as np
import pytest
import torch

import model
from model.datasets import load_dataset
from training.net import ArchError, SpikingNet, parse_arch, to_network
from training.train import loss_fn


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train")


@pytest.mark.parametrize("arch,seed", [
    ("64-40-10", 0),
    ("64-30-20-10", 1),
    ("1x8x8-c6k3p1-p2-c8k3-10", 2),
    ("1x8x8-c4k3s2p1-16-10", 3),
])
def test_qat_forward_equals_golden_model_bit_for_bit(tmp_path, digits, arch, seed):
    print(f"arch {arch} seed {seed}")
    net = SpikingNet(arch, input_shape=digits.shape, seed=seed)
    n = 400 if arch[0] != "1" else 150  # conv layers are slower in float64
    x = net.encode(digits.images[:n])
    y = torch.from_numpy(digits.labels[:n])
    net.calibrate(x[:100])
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for s in range(0, 100, 50):  # a few QAT steps so the weights are not just the initial ones
        out = net(x[s:s + 50].double(), quantised=True, out_window=1000)
        opt.zero_grad()
        loss_fn(out[-1].float(), y[s:s + 50], 3.0).backward()
        opt.step()
    path = tmp_path / "net.npz"
    model.save(to_network(net), path, metadata={"arch": arch})
    loaded = model.load(path)
    with torch.no_grad():
        mine = net(x.double(), quantised=True)
    golden = model.run(loaded, model.encode(digits.images[:n].reshape(n, -1), loaded.encoding,
                                            loaded.time_bits))
    assert len(mine) == len(golden.times)
    for k, (a, b) in enumerate(zip(mine, golden.times, strict=True)):
        a = a.numpy()
        a = np.where(a > net.t_end, loaded.no_spike, a).astype(np.int64)
        assert a.shape == b.shape, k
        mismatch = np.argwhere(a != b)
        assert mismatch.size == 0, f"layer {k}: {len(mismatch)} differ, first {mismatch[0]}: {a[tuple(mismatch[0])]} " \
                                   f"vs golden {b[tuple(mismatch[0])]}"
        fired = (b != loaded.no_spike).mean()
        assert 0.05 < fired, f"layer {k}: only {fired:.1%} fire; the comparison would be vacuous"
    assert (golden.prediction >= 0).mean() > 0.5


def test_float_forward_is_close_to_exported_network(digits):
    """The export keeps the float network's behaviour: per-neuron scaling leaves spike times unchanged up
    to rounding (weights and thresholds) and the integer ceiling of times."""
    net = SpikingNet("64-40-10", input_shape=digits.shape, seed=5)
    x = net.encode(digits.images[:300])
    net.calibrate(x)
    with torch.no_grad():
        f = net(x)[-1]
        q = net(x.double(), quantised=True)[-1]
    both = (f <= net.t_end) & (q <= net.t_end)
    assert both.float().mean() > 0.5
    assert (q[both] - f[both].double()).abs().mean() < 3.0


@pytest.mark.parametrize("bad", ["784", "784-x-10", "1x28x28-c0k5-10", "784-c16k5-10", "1x8x8-c4k9-10",
                                 "1x8x8-c4k3-p2"])
def test_bad_architectures_are_rejected(bad):
    with pytest.raises(ArchError, match="--arch"):
        parse_arch(bad)


def test_arch_strings():
    shape, layers = parse_arch("1x28x28-c16k5-p2-c32k3s1p1-p2-10")
    assert shape == (1, 28, 28)
    assert [s.out_shape for s in layers] == [(16, 24, 24), (16, 12, 12), (32, 12, 12), (32, 6, 6), (10,)]
    shape, layers = parse_arch("784-800-10", (1, 28, 28))
    assert shape == (1, 28, 28) and layers[0].fan_in == 784
