"""The board path of the mesh has what the simulation host has: RUN replays the image flits under the
run-ahead window (here under host backpressure, through the bit-level UART, a three-layer network on a 3x2
mesh, to completion, bit-exact), and early exit ends each image once its prediction is decided, exactly as
`yoso verify --early-exit` (host.runner under cocotb) and host.runner under the Amaranth simulator decide."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

import model
from fpga.driver import HostLink, infer_mesh, load_mesh
from fpga.sim import SimTransport
from fpga.top import LinkCore, UARTTop
from host.plan import plan_mesh
from host.pysim import run_images


def random_times(rng, net, n):
    t = rng.integers(0, net.t_end + 1, size=(n, net.n_inputs))
    t[rng.random(t.shape) < 0.3] = net.no_spike
    return t


def test_uart_mesh_window_under_backpressure_bit_exact(seed):
    """5-6-4-2 on 3x2 nodes (3 + 2 + 1 PEs, up to three sources per PE), window 1, the engine's input from
    the mesh refused on half the cycles: every image runs to completion and every neuron of every layer
    spikes when the golden model says. The PEs have the request stage, as every board build (fpga.boards.
    board_config)."""
    net = model.random_network("5-6-4-2", seed=seed, time_bits=4)
    plan = plan_mesh(net, 3, 2, neurons=2, lanes=1, window=1)
    plan = dataclasses.replace(plan, pe=dataclasses.replace(plan.pe, request_stage=True))
    assert [len(plan.layer_slices(n)) for n in range(3)] == [3, 2, 1]
    x = random_times(np.random.default_rng(seed), net, 2)
    ref = model.run(net, x)
    top = UARTTop(plan.pe, divisor=4, in_depth=max(len(plan.image_flits(t)) for t in x),
                  out_depth=sum(w.shape[1] for w in plan.weights), noc=plan.noc, host_stall_16ths=8)
    link = HostLink(SimTransport(top, timeout=400_000))
    load_mesh(link, plan)
    for b in range(len(x)):
        got = infer_mesh(link, plan, x[b])
        for n, want in enumerate(ref.times):
            np.testing.assert_array_equal(got.times[n], want[b].reshape(-1), err_msg=f"image {b}, layer {n}")
        assert got.prediction == ref.prediction[b]
        assert got.decided is None


def early_network():
    """Outputs that fire well before t_end (the premise of early exit)."""
    rng = np.random.default_rng(7)
    w1 = rng.integers(-2, 6, size=(8, 6))
    w2 = rng.integers(0, 6, size=(6, 3))
    net = model.Network.build(input_shape=(8,), layers=[
        model.Dense(weight=w1, threshold=np.full(6, 6)), model.Dense(weight=w2, threshold=np.full(3, 4))],
        time_bits=5)
    return net, rng.integers(0, 6, size=(3, 8))


def board_early_exit(net, plan, x):
    top = LinkCore(plan.pe, in_depth=max(len(plan.image_flits(t)) for t in x),
                   out_depth=sum(w.shape[1] for w in plan.weights), noc=plan.noc)
    link = HostLink(SimTransport(top, timeout=400_000))
    load_mesh(link, plan)
    full = [infer_mesh(link, plan, t) for t in x]
    early = [infer_mesh(link, plan, t, early_exit=True) for t in x]
    return full, early


def test_board_early_exit_matches_the_host_runner():
    net, x = early_network()
    plan = plan_mesh(net, 2, 2, neurons=4, lanes=2, window=1)
    ref = model.run(net, x)
    full, early = board_early_exit(net, plan, x)
    sim = run_images(plan, x, early_exit=True)
    for b, (f, e, s) in enumerate(zip(full, early, sim, strict=True)):
        assert e.decided is not None and e.decided == s.decided, f"image {b}"
        assert e.prediction == f.prediction == ref.prediction[b]
        assert e.total_cycles < f.total_cycles, f"image {b}: early exit saved no cycles"
        for n, got in enumerate(e.times):
            want = ref.times[n][b].reshape(-1)
            seen = got != net.no_spike
            np.testing.assert_array_equal(got[seen], want[seen], err_msg=f"image {b}, layer {n}")
        # every output spike up to the decision step is known
        out = ref.times[-1][b].reshape(-1)
        np.testing.assert_array_equal(e.times[-1][out <= e.decided], out[out <= e.decided])


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog (iverilog) not installed")
def test_board_early_exit_matches_yoso_verify():
    from verif.mesh_verify import verify

    net, x = early_network()
    plan = plan_mesh(net, 2, 2, neurons=4, lanes=2, window=1)
    _, early = board_early_exit(net, plan, x)
    s = verify(net, plan, x, early_exit=True)
    assert (s["mismatches"], s["protocol_errors"]) == (0, 0), s
    assert s["early_exit_images"] == sum(e.decided is not None for e in early) == len(x)
    assert s["decision_step_mean"] == pytest.approx(np.mean([e.decided for e in early]))


def test_board_mesh_conv_pool_bit_exact(random_conv_network, seed):
    """A conv2d -> 2x2 maxpool2d -> dense network through the board's RUN path (LinkCore, no UART): the
    pooled and dense times equal model.run's; the conv layer under the pool is not reported (None)."""
    rng = np.random.default_rng(seed)
    net = random_conv_network(rng, (1, 5, 5), [("conv", 2, 3, 1, 1), ("pool", 2, 2), ("dense", 3)])
    plan = plan_mesh(net, 2, 2, neurons=16, lanes=2, window=1)
    x = random_times(rng, net, 2)
    ref = model.run(net, x)
    top = LinkCore(plan.pe, in_depth=max(len(plan.image_flits(t)) for t in x),
                   out_depth=sum(plan.outputs(n) for n in range(plan.n_layers)), noc=plan.noc)
    link = HostLink(SimTransport(top, timeout=400_000))
    load_mesh(link, plan)
    for b in range(len(x)):
        got = infer_mesh(link, plan, x[b])
        assert got.times[0] is None
        for n in (1, 2):
            np.testing.assert_array_equal(got.times[n], ref.times[n][b].reshape(-1), err_msg=f"image {b}, layer {n}")
        assert got.prediction == ref.prediction[b]
