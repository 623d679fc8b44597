"""The dead-neuron regulariser revives neurons that no STDBP gradient reaches; input augmentation keeps
silent inputs silent and stays on the encoder's time grid."""

import numpy as np
import torch

from training.net import SpikingNet
from training.train import augment, live_penalty


def _dead_net(arch: str, seed: int):
    print(f"arch {arch} seed {seed}")
    net = SpikingNet(arch, seed=seed)
    rng = np.random.default_rng(seed)
    x = torch.tensor(rng.integers(0, 32, (16, *net.input_shape)), dtype=torch.float32)
    net.calibrate(x)
    with torch.no_grad():
        w = net.weights[0]
        if w.ndim == 2:
            w[:, :3] = -w[:, :3].abs()  # three dense neurons that cannot fire
        else:
            w[:2] = -w[:2].abs()  # two conv channels that cannot fire anywhere
    return net, x


def test_live_penalty_revives_dead_neurons_dense_and_conv():
    for arch, seed in (("20-12-4", 0), ("1x6x6-c4k3-p2-3", 1)):
        net, x = _dead_net(arch, seed)
        times = net(x, out_window=1000)
        dead = (times[0] > net.t_end).reshape(len(x), -1).all(0)
        assert dead.sum() >= 3, arch
        penalty = live_penalty(net, x, times)
        assert penalty > 0
        # STDBP alone gives the dead neurons' weights nothing; the penalty does.
        (g_stdbp,) = torch.autograd.grad(times[-1][times[-1] <= 1000].sum(), net.weights[0], allow_unused=True,
                                         retain_graph=True)
        (g_live,) = torch.autograd.grad(penalty, net.weights[0])
        cols = (slice(None), slice(0, 3)) if g_live.ndim == 2 else (slice(0, 2),)
        assert g_stdbp is None or g_stdbp[cols].abs().sum() == 0
        assert g_live[cols].abs().sum() > 0
        opt = torch.optim.Adam(net.parameters(), lr=0.05)
        for _ in range(200):
            times = net(x, out_window=1000)
            p = live_penalty(net, x, times)
            if p == 0:
                break
            opt.zero_grad()
            p.backward()
            opt.step()
        times = net(x)
        assert not (times[0] > net.t_end).reshape(len(x), -1).all(0).any(), arch  # every neuron fires again
        assert live_penalty(net, x, net(x, out_window=1000)) == 0


def test_live_penalty_is_zero_when_every_neuron_fires():
    net = SpikingNet("20-12-4", seed=3)
    x = torch.zeros(8, 20)  # every input at t = 0: with positive mean weights every neuron fires
    with torch.no_grad():
        for w in net.weights:
            w.abs_()
    times = net(x, out_window=1000)
    assert (times[0] <= net.t_end).any(0).all()
    assert live_penalty(net, x, times) == 0


def test_augment_keeps_silence_and_the_grid():
    print("seed 5")
    rng = np.random.default_rng(5)
    x = torch.tensor(rng.integers(0, 32, (50, 40)), dtype=torch.float32)
    x[torch.tensor(rng.random((50, 40)) < 0.3)] = 255.0  # silent
    a = augment(x, 254, 31, 0.2, 2, torch.Generator().manual_seed(1))
    b = augment(x, 254, 31, 0.2, 2, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)  # seeded: a resumed run replays it
    assert torch.all(a[x > 254] > 254)  # silent stays silent
    live = a <= 254
    assert torch.equal(a[live], a[live].round()) and a[live].min() >= 0 and a[live].max() <= 31
    moved = (a - x).abs()[live & (x <= 254)]
    assert moved.max() <= 2 and moved.max() > 0
    dropped = float(((x <= 254) & (a > 254)).sum() / (x <= 254).sum())
    assert 0.15 < dropped < 0.25
    assert torch.equal(augment(x, 254, 31, 0.0, 0, torch.Generator()), x)


def test_shift_translates_each_image_and_fills_silence():
    """``shift`` moves every sample by its own offset in [-s, s] per axis (the same for all channels); each
    output is the input translated, with silent pixels where the image moved in from outside."""
    gen = torch.Generator().manual_seed(3)
    b, c, h, w, s, silent = 40, 2, 6, 5, 2, 255.0
    x = torch.randint(0, 32, (b, c * h * w), generator=gen).to(torch.float32)
    y = augment(x, 254, 31, 0.0, 0, torch.Generator().manual_seed(4), shift=s, shape=(c, h, w))
    assert y.shape == x.shape
    xi, yi = x.reshape(b, c, h, w), y.reshape(b, c, h, w)
    seen = set()
    for n in range(b):
        found = []
        for dy in range(-s, s + 1):
            for dx in range(-s, s + 1):
                ref = torch.full((c, h, w), silent)
                ys, yd = slice(max(0, dy), h + min(0, dy)), slice(max(0, -dy), h + min(0, -dy))
                xs, xd = slice(max(0, dx), w + min(0, dx)), slice(max(0, -dx), w + min(0, -dx))
                ref[:, yd, xd] = xi[n, :, ys, xs]
                if torch.equal(ref, yi[n]):
                    found.append((dy, dx))
        assert found, f"sample {n} is not a translation of its input by at most {s} pixels"
        seen.update(found)
    assert len(seen) > 10  # offsets really vary per sample
    z = augment(x, 254, 31, 0.0, 0, torch.Generator().manual_seed(4), shift=s, shape=(c, h, w))
    assert torch.equal(y, z)  # seeded: a resumed run replays it


def test_flip_mirrors_about_half_of_the_images():
    """``flip`` mirrors each image left-right (every channel) or leaves it as it is, about half of each."""
    gen = torch.Generator().manual_seed(6)
    b, c, h, w = 400, 2, 4, 5
    x = torch.randint(0, 32, (b, c * h * w), generator=gen).to(torch.float32)
    y = augment(x, 254, 31, 0.0, 0, torch.Generator().manual_seed(7), shape=(c, h, w), flip=True)
    xi, yi = x.reshape(b, c, h, w), y.reshape(b, c, h, w)
    same = (xi == yi).flatten(1).all(1)
    mirrored = (xi.flip(-1) == yi).flatten(1).all(1)
    assert torch.all(same ^ mirrored)  # each image is one or the other (random images: never both)
    assert 0.4 < float(mirrored.float().mean()) < 0.6
    z = augment(x, 254, 31, 0.0, 0, torch.Generator().manual_seed(7), shape=(c, h, w), flip=True)
    assert torch.equal(y, z)  # seeded: a resumed run replays it
