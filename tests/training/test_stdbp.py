"""The STDBP layer: closed-form spike times against time stepping, both algorithms against each other and
the gradients against finite differences (float64, away from discontinuities)."""

import numpy as np
import pytest
import torch

from training import stdbp
from training.stdbp import spike_times

T_END = 254


def _case(seed: int, rows: int = 6, n: int = 12, m: int = 5, integer_times: bool = False):
    """Random inputs where every neuron fires and no spike time sits near a kink (an input time) or near
    the window end, so finite differences see one smooth piece. Returns (t, w, theta, out)."""
    rng = np.random.default_rng(seed)
    for _ in range(200):
        if integer_times:
            t = rng.integers(0, 32, (rows, n)).astype(np.float64)
        else:
            t = rng.uniform(0, 30, (rows, n))
        t[rng.random((rows, n)) < 0.15] = T_END + 1  # some silent inputs
        w = rng.normal(0.15, 0.3, (n, m))
        theta = rng.uniform(1.0, 4.0, m)
        tt, ww, th = (torch.tensor(a, dtype=torch.float64) for a in (t, w, theta))
        out = spike_times(tt, ww, th, T_END)
        if (out > T_END).any():
            continue
        gap = (out[:, None, :] - tt[:, :, None]).abs().min()
        if gap > 1e-3 and out.max() < T_END - 1:
            return tt, ww, th, out
    raise AssertionError(f"seed {seed}: no smooth case found")


def _stepped(t, w, theta, dt=1e-3):
    """Time-stepped crossing on a fine grid (an independent formulation of the definition)."""
    grid = torch.arange(0, 80, dt, dtype=torch.float64)
    v = torch.clamp(grid[None, :, None] - t[:, None, :], min=0) @ w  # (R, T, M)
    crossed = v >= theta
    first = crossed.to(torch.uint8).argmax(dim=1)
    return torch.where(crossed.any(dim=1), grid[first], torch.full_like(grid[first], np.inf))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_closed_form_matches_time_stepping(seed):
    print(f"seed {seed}")
    t, w, theta, out = _case(seed)
    ref = _stepped(t, w, theta)
    assert torch.all((out - ref).abs() <= 1.1e-3), (out, ref)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("integer", [False, True])
@pytest.mark.parametrize("gather", [False, True])
def test_grid_and_sort_paths_agree(seed, integer, gather, monkeypatch):
    print(f"seed {seed}")
    monkeypatch.setattr(stdbp, "GATHER_MAX_OUT", 64 if gather else 0)
    rng = np.random.default_rng(seed)
    t = torch.tensor(rng.integers(0, 32, (40, 30)), dtype=torch.float64)
    t[t > 27] = T_END + 1
    w = torch.tensor(rng.integers(-60, 120, (30, 20)), dtype=torch.float64)
    w[:, -3:] = -w[:, -3:].abs()  # three neurons that can never fire
    theta = torch.tensor(rng.integers(1, 4000, 20), dtype=torch.float64)
    results = []
    for path in ("grid", "sort", "kernel"):
        tt, ww, th = (a.clone().requires_grad_() for a in (t, w, theta))
        out = spike_times(tt, ww, th, T_END, integer=integer, path=path)
        weights = torch.tensor(rng.normal(size=out.shape)) * (out <= T_END)
        (out * weights).sum().backward()
        results.append((out, tt.grad, ww.grad, th.grad))
        rng = np.random.default_rng(seed)  # same loss weights for both paths
        rng.integers(0, 32, (40, 30)), rng.integers(-60, 120, (30, 20)), rng.integers(1, 4000, 20)
    (o1, *g1), *others = results
    assert (o1 <= T_END).float().mean() > 0.5 and (o1 > T_END).any()  # fires and silences both covered
    for o2, *g2 in others:
        assert torch.equal(o1, o2)
        for a, b in zip(g1, g2, strict=True):
            torch.testing.assert_close(a, b)
    if integer:
        assert torch.equal(o1, o1.round())


@pytest.mark.parametrize("path", ["grid", "grid-matmul", "sort", "kernel"])
@pytest.mark.parametrize("seed", [3, 4])
def test_gradcheck(path, seed, monkeypatch):
    print(f"seed {seed}")
    if path == "grid-matmul":
        monkeypatch.setattr(stdbp, "GATHER_MAX_OUT", 0)
        path = "grid"
    t, w, theta, _ = _case(seed)
    inputs = tuple(a.clone().requires_grad_() for a in (t, w, theta))
    assert torch.autograd.gradcheck(lambda a, b, c: spike_times(a, b, c, T_END, path=path), inputs,
                                    eps=1e-7, atol=1e-5, rtol=1e-4)


def test_stdbp_formulas_explicitly():
    """dt_j/dw_ij = (t_i - t_j)/sum_C w and dt_j/dt_i = w_ij/sum_C w for causal i, zero otherwise."""
    t = torch.tensor([[0.0, 2.0, 50.0, T_END + 1.0]], dtype=torch.float64, requires_grad=True)
    w = torch.tensor([[1.0], [0.5], [3.0], [2.0]], dtype=torch.float64, requires_grad=True)
    theta = torch.tensor([6.0], dtype=torch.float64, requires_grad=True)
    out = spike_times(t, w, theta, T_END)
    # causal set {0, 2}: t_j = (6 + 0*1 + 2*0.5) / 1.5 = 14/3
    assert out.item() == pytest.approx(14 / 3)
    out.sum().backward()
    s = 1.5
    assert w.grad[:, 0].tolist() == pytest.approx([(0 - 14 / 3) / s, (2 - 14 / 3) / s, 0, 0])
    assert t.grad[0].tolist() == pytest.approx([1 / s, 0.5 / s, 0, 0])
    assert theta.grad.item() == pytest.approx(1 / s)


def test_silent_neurons_have_no_gradient_and_never_firing_outputs():
    t = torch.tensor([[0.0, 1.0, T_END + 1.0]], dtype=torch.float64, requires_grad=True)
    w = torch.tensor([[-1.0, 1e-4], [0.5, 1e-4], [5.0, 1e-4]], dtype=torch.float64, requires_grad=True)
    theta = torch.tensor([1.0, 1.0], dtype=torch.float64, requires_grad=True)
    out = spike_times(t, w, theta, T_END)
    assert out.tolist() == [[T_END + 1, T_END + 1]]  # negative slope; too small a slope within the window
    out.sum().backward()
    assert t.grad.abs().sum() == 0 and w.grad.abs().sum() == 0 and theta.grad.abs().sum() == 0


def test_gradient_guard_bounds_inverse_slope():
    # A large negative then positive weight: sum_C w is tiny when the neuron fires; the guard caps 1/sum_C w
    # at t_end / theta.
    t = torch.tensor([[0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    w = torch.tensor([[1.0], [-0.999999]], dtype=torch.float64, requires_grad=True)
    theta = torch.tensor([1e-4], dtype=torch.float64)
    out = spike_times(t, w, theta, T_END)
    assert out.item() <= T_END
    out.sum().backward()
    assert torch.isfinite(t.grad).all() and t.grad.abs().max() <= T_END / 1e-4 + 1e-6


def test_time_stepped_reference_agrees_on_integer_inputs():
    """training/reference.py (the benchmark's baseline) computes the same times and gradients when input
    times are integers (V is then linear inside every step)."""
    from training.reference import stepped_spike_times

    rng = np.random.default_rng(11)
    print("seed 11")
    t = torch.tensor(rng.integers(0, 32, (20, 25)), dtype=torch.float64)
    t[t > 28] = T_END + 1
    w = torch.tensor(rng.normal(0.1, 0.3, (25, 8)), requires_grad=True)
    theta = torch.tensor(rng.uniform(1, 5, 8))
    a = spike_times(t, w, theta, T_END)
    b = stepped_spike_times(t, w, theta, T_END)
    assert torch.equal(a > T_END, b > T_END) and (a <= T_END).float().mean() > 0.5
    fired = a <= T_END
    torch.testing.assert_close(a[fired], b[fired])
    ga, = torch.autograd.grad(a[fired].sum(), w)
    gb, = torch.autograd.grad(b[fired].sum(), w)
    torch.testing.assert_close(ga, gb)


@pytest.mark.parametrize("arch,seed", [("1x10x9-c5k3-p2-6", 0), ("2x9x9-c4k5s2p2-c6k3p1-p2-7", 1),
                                       ("1x8x8-c3k3p1-20-5", 2)])
def test_conv_network_kernel_equals_torch_paths(arch, seed):
    """A whole conv network (unfolded receptive fields, padding, stride, pooling, dense head): the compiled
    kernel and the torch algorithms give the same spike times in every layer and the same gradients."""
    from training.net import SpikingNet

    print(f"arch {arch} seed {seed}")
    rng = np.random.default_rng(seed)
    results = []
    for path in ("auto", "torch"):
        net = SpikingNet(arch, seed=seed).double()
        x = torch.tensor(rng.integers(0, 40, (6, *net.input_shape)), dtype=torch.float64)
        x[x > 31] = T_END + 1
        net.calibrate(x)
        times = net(x, out_window=1000, path=path)
        weights = torch.tensor(np.random.default_rng(seed + 100).normal(size=times[-1].shape))
        (times[-1] * weights * (times[-1] <= 1000)).sum().backward()
        results.append(([t.detach() for t in times], [p.grad for p in net.parameters()]))
        rng = np.random.default_rng(seed)
    (ta, ga), (tb, gb) = results
    fired = [float((t <= T_END).float().mean()) for t in ta]
    assert all(0.05 < f for f in fired), fired
    for a, b in zip(ta, tb, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)
    assert any(g.abs().sum() > 0 for g in ga)
    for a, b in zip(ga, gb, strict=True):
        torch.testing.assert_close(a, b)
