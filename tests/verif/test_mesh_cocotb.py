"""The generated mesh Verilog under cocotb (Icarus): random networks bit-exact against the golden model in
every layer, under host idle cycles and backpressure; reset in the middle of an inference, then a fresh run
gives the golden results; `yoso verify` end to end."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import model
from host.plan import plan_mesh
from verif.mesh_verify import verify
from yoso.cli import main as yoso

pytestmark = pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog (iverilog) not installed")


def net_and_inputs(tmp_path, arch, seed, n, time_bits=4):
    net = model.random_network(arch, seed=seed, time_bits=time_bits)
    path = tmp_path / "net.npz"
    model.save(net, path)
    rng = np.random.default_rng(seed)
    t = rng.integers(0, net.t_end + 1, size=(n, net.n_inputs))
    t[rng.random(t.shape) < 0.3] = net.no_spike
    return net, str(path), t


def run(net, mesh, inputs, *, neurons, lanes, window=1, **kwargs):
    """verify() on the plan of ``net`` on a ``mesh`` (W, H)."""
    return verify(net, plan_mesh(net, *mesh, neurons=neurons, lanes=lanes, window=window), inputs, **kwargs)


@pytest.mark.parametrize("arch,mesh,neurons,lanes", [("6-7-3", (2, 2), 4, 2), ("5-6-4-2", (3, 2), 2, 1)])
def test_random_network_stalls(tmp_path, arch, mesh, neurons, lanes, seed):
    net, path, inputs = net_and_inputs(tmp_path, arch, seed, 3)
    s = run(net, mesh, inputs, neurons=neurons, lanes=lanes, seed=seed, idle=0.3, stall=0.3)
    assert s["spikes_compared"] == 3 * sum(int(np.prod(layer.out_shape)) for layer in net.layers)
    assert (s["mismatches"], s["protocol_errors"]) == (0, 0), s
    assert s["predictions_equal_golden"]


def test_conv_pool_network(random_conv_network, seed):
    """conv2d -> 2x2 maxpool2d (in the conv PEs' STORE) -> dense on 2x2 under cocotb: every pooled and dense
    spike time equals model.run's; the conv times under the pool never leave their PEs and are not compared."""
    rng = np.random.default_rng(seed)
    net = random_conv_network(rng, (1, 5, 5), [("conv", 2, 3, 1, 1), ("pool", 2, 2), ("dense", 3)])
    inputs = rng.integers(0, net.t_end + 1, size=(3, net.n_inputs))
    inputs[rng.random(inputs.shape) < 0.3] = net.no_spike
    s = run(net, (2, 2), inputs, neurons=16, lanes=2, seed=seed, idle=0.3, stall=0.3)
    assert s["spikes_compared"] == 3 * (2 * 2 * 2 + 3)
    assert s["mismatches"] == 0 and s["protocol_errors"] == 0, s
    assert s["predictions_equal_golden"]


def test_conv_mode_fmnist_shape_cut_smaller(random_conv_network, seed):
    """The shape of networks/fmnist-conv.npz (conv5 -> pool2 -> conv -> pool2 -> dense 10) cut to 1x12x12-c4k5-p2-
    c8k3-p2-10 so that it runs in CI: both conv layers in the PEs' conv mode (weight-shared kernel slices, 4 + 1
    PEs) and the output PE on 3x2, under cocotb with host idle cycles and backpressure; every pooled and dense
    spike time equals model.run's. (The full network needs 177 PEs of 64 neurons: too slow for Icarus in CI.)"""
    rng = np.random.default_rng(seed + 11)
    net = random_conv_network(rng, (1, 12, 12), [("conv", 4, 5, 1, 0), ("pool", 2, 2), ("conv", 8, 3, 1, 0),
                                                 ("pool", 2, 2), ("dense", 10)])
    plan = plan_mesh(net, 3, 2, neurons=64, lanes=4, window=1)
    assert [len(plan.layer_slices(n)) for n in range(3)] == [4, 1, 1] and plan.convs[0] and plan.convs[1]
    inputs = rng.integers(0, net.t_end + 1, size=(2, net.n_inputs))
    inputs[rng.random(inputs.shape) < 0.3] = net.no_spike
    s = verify(net, plan, inputs, seed=seed, idle=0.2, stall=0.2)
    assert s["spikes_compared"] == 2 * (4 * 4 * 4 + 8 + 10)
    assert s["mismatches"] == 0 and s["protocol_errors"] == 0, s
    assert s["predictions_equal_golden"]


def test_reset_mid_inference(tmp_path, seed):
    """Reset 60 cycles into the first image (events in flight in routers, NIs and PEs), reconfigure, run:
    every spike time still equals the golden model's."""
    net, path, inputs = net_and_inputs(tmp_path, "6-7-3", seed + 1, 2)
    s = run(net, (2, 2), inputs, neurons=4, lanes=2, seed=seed, reset_after=60)
    assert (s["mismatches"], s["protocol_errors"]) == (0, 0), s


def test_early_exit_stalls(tmp_path, seed):
    """Early exit under host idle cycles and backpressure: each image is aborted once its prediction is decided
    (flits still in flight everywhere), and the next image runs from START on the same configuration: every
    spike time the host saw, and every prediction, equal the golden model's."""
    net, path, inputs = net_and_inputs(tmp_path, "6-7-3", seed + 4, 4)
    s = run(net, (2, 2), inputs, neurons=4, lanes=2, seed=seed, idle=0.3, stall=0.3, early_exit=True)
    assert (s["mismatches"], s["protocol_errors"]) == (0, 0), s
    assert s["predictions_equal_golden"]


def test_early_exit_saves_cycles(tmp_path):
    """A network whose outputs fire early: every image is decided before t_end, the run takes fewer cycles
    than the same images without early exit, and the results still equal the golden model's."""
    rng = np.random.default_rng(7)
    w1 = rng.integers(-2, 6, size=(8, 6))
    w2 = rng.integers(0, 6, size=(6, 3))
    net = model.Network.build(input_shape=(8,), layers=[
        model.Dense(weight=w1, threshold=np.full(6, 6)), model.Dense(weight=w2, threshold=np.full(3, 4))],
        time_bits=5)
    path = tmp_path / "net.npz"
    model.save(net, path)
    inputs = rng.integers(0, 6, size=(3, 8))
    golden = model.run(net, inputs)
    assert (golden.times[-1].min(axis=1) < net.t_end - 10).all()  # the premise: decided well before t_end
    full = run(net, (2, 2), inputs, neurons=4, lanes=2)
    early = run(net, (2, 2), inputs, neurons=4, lanes=2, early_exit=True)
    for s in (full, early):
        assert (s["mismatches"], s["protocol_errors"]) == (0, 0), s
        assert s["predictions_equal_golden"]
    assert early["early_exit_images"] == 3
    assert early["decision_step_mean"] == pytest.approx(golden.times[-1].min(axis=1).mean())
    assert early["cycles_per_image"] < full["cycles_per_image"]
    assert early["sops_until_decision_per_image"] <= full["sops_per_image"]


def test_profile_counts(tmp_path, seed):
    """--profile: the host-port categories cover every cycle of an image and agree with the flit counts; every
    used PE is seen taking input and issuing word reads."""
    net, path, inputs = net_and_inputs(tmp_path, "6-7-3", seed + 3, 2)
    s = run(net, (2, 2), inputs, neurons=4, lanes=2, seed=seed, profile=True)
    assert (s["mismatches"], s["protocol_errors"]) == (0, 0), s
    p = s["profile_per_image"]
    host = sum(p.get(f"host_in_{k}", 0) for k in ("sent", "blocked", "gated", "idle"))
    assert host == pytest.approx(s["cycles_per_image"], abs=0.5)
    assert p["host_in_sent"] == pytest.approx(s["host_flits_in_per_image"], abs=0.1)
    assert p["host_out"] == pytest.approx(s["host_flits_out_per_image"], abs=0.1)
    for x, y in ((0, 0), (1, 0), (0, 1)):
        assert p[f"pe{x}_{y}_in"] > 0 and p[f"pe{x}_{y}_load"] > 0, p


def test_cli_verify_json(tmp_path, capsys, seed):
    _, path, inputs = net_and_inputs(tmp_path, "6-5-3", seed + 2, 2)
    np.save(tmp_path / "in.npy", inputs)
    rc = yoso(["verify", "--net", path, "--mesh", "2x1", "--input-times", str(tmp_path / "in.npy"),
               "--neurons", "8", "--lanes", "2", "--json", "--chunk", "1", "--jobs", "2"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out["images"] == 2 and out["mismatches"] == 0 and out["spikes_compared"] == 2 * (5 + 3)
    assert out["cycles_per_image"] > out["lower_bound_per_image"] > 0


def test_cli_verify_does_not_fit(tmp_path, capsys):
    _, path, inputs = net_and_inputs(tmp_path, "6-9-3", 0, 1)
    np.save(tmp_path / "in.npy", inputs)
    rc = yoso(["verify", "--net", path, "--mesh", "1x2", "--input-times", str(tmp_path / "in.npy"),
               "--neurons", "4", "--lanes", "2"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "the network needs 4 PEs of at most 4 neurons" in err and "the mesh has 2" in err


@pytest.mark.slow
@pytest.mark.parametrize("k", range(6))
def test_many_seeds(tmp_path, k, seed):
    seed += 100 * k
    rng = np.random.default_rng(seed)
    sizes = [int(rng.integers(3, 12)) for _ in range(int(rng.integers(2, 5)))]
    net, path, inputs = net_and_inputs(tmp_path, sizes, seed, 4, time_bits=int(rng.integers(3, 6)))
    neurons = 4 if sum(sizes[1:]) <= 4 * 12 - 3 * len(sizes) else 8  # fits 4x3 nodes either way
    s = run(net, (4, 3), inputs, neurons=neurons, lanes=2, seed=seed, idle=0.2 * (k % 3), stall=0.2 * (k % 4))
    assert (s["mismatches"], s["protocol_errors"]) == (0, 0), s
