"""The chunk transport (verif/chunk_sim.py): the host of a chunk of images executed inside the simulation gives,
image for image, the same spike times, horizons, cycles, decisions and flit counts as the cocotb transport
(Python acting on every clock edge), and every spike time equals the golden model's; with and without early
exit, on 1x1 and 2x2 meshes (Icarus in the default suite, Verilator in the ``slow`` one)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import model
from host.plan import plan_mesh
from verif import chunk_sim
from verif.mesh_verify import verify
from verif.scoreboard import compare
from yoso.cli import main as yoso

needs_icarus = pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog (iverilog) not installed")


def case(arch, seed, n, time_bits=4):
    """A random network and ``n`` images of input spike times (30 % silent inputs)."""
    net = model.random_network(arch, seed=seed, time_bits=time_bits)
    rng = np.random.default_rng(seed)
    t = rng.integers(0, net.t_end + 1, size=(n, net.n_inputs))
    t[rng.random(t.shape) < 0.3] = net.no_spike
    return net, t


def both(net, plan, inputs, *, sim, early_exit, chunk=None):
    """verify() through the chunk and the cocotb transports; returns their (summary, arrays)."""
    out = {}
    for transport in ("chunk", "cocotb"):
        arrays: dict = {}
        s = verify(net, plan, inputs, sim=sim, transport=transport, early_exit=early_exit, arrays=arrays,
                   chunk=chunk or len(inputs))
        out[transport] = (s, arrays)
    return out


def assert_identical(out, net, inputs):
    (sc, a), (so, b) = out["chunk"], out["cocotb"]
    for s in (sc, so):
        assert (s["mismatches"], s["protocol_errors"]) == (0, 0), s
        assert s["predictions_equal_golden"]
    assert a["cfg_cycles"] == b["cfg_cycles"]
    for key in ("cycles", "decided", "flits"):
        assert np.array_equal(a[key], b[key]), (key, a[key], b[key])
    golden = model.run(net, inputs)
    for n, (x, y) in enumerate(zip(a["layers"] + a["horizons"], b["layers"] + b["horizons"], strict=True)):
        assert (x is None) == (y is None) and (x is None or np.array_equal(x, y)), n
    # every neuron against the golden model (a silent neuron is fine past its horizon: early exit)
    score = compare(a["layers"], [g.reshape(len(inputs), -1) for g in golden.times], net.no_spike,
                    horizons=a["horizons"])
    assert score and score.compared == len(inputs) * sum(int(np.prod(layer.out_shape)) for layer in net.layers)


def test_image_words_equal_image_steps(seed):
    """The vectorised stimulus words are MeshPlan.image_steps, word for word and step for step."""
    for arch, mesh, k in (("6-7-3", (2, 2), 0), ("9-5", (1, 1), 1), ("5-6-4-2", (3, 2), 2)):
        net, inputs = case(arch, seed + k, 3)
        inputs[0, :2] = [0, net.t_end]  # both ends of the time range
        plan = plan_mesh(net, *mesh, neurons=4 if mesh != (1, 1) else 8, lanes=2, window=1)
        for t in inputs:
            steps, words = chunk_sim.image_words(plan, t)
            groups = plan.image_steps(t)
            assert words.tolist() == [w for _, g in groups for w in g]
            assert steps.tolist() == [s for s, g in groups for _ in g]


def test_config_words_cached(seed):
    """config_words is plan.config_flits() as 64-bit limbs (least significant first), computed or read from its
    cache."""
    net, _ = case("6-7-3", seed + 5, 1)
    plan = plan_mesh(net, 2, 2, neurons=4, lanes=2, window=1)
    for _ in range(2):
        words = chunk_sim.config_words(plan)
        assert [sum(int(v) << (64 * j) for j, v in enumerate(row)) for row in words] == plan.config_flits()


def test_testbench_fields_from_layouts():
    """The testbench reads the flit fields where the layouts put them (no second copy of the positions)."""
    net, _ = case("6-7-3", 1, 1)
    plan = plan_mesh(net, 2, 2, neurons=4, lanes=2, window=1)
    tb = chunk_sim.testbench(plan.pe, plan.noc)
    g = chunk_sim._Geometry.of(plan.pe, plan.noc)
    off, width = g.flit_field("kind")
    assert f"f[{off + width - 1}:{off}] == 3" in tb  # FlitKind.DONE
    off, width = g.event_field("time")
    assert f"f[{off + width - 1}:{off}] == t_end" in tb


@needs_icarus
@pytest.mark.parametrize("arch,mesh,neurons,early_exit", [
    ("6-7-3", (2, 2), 4, False), ("6-7-3", (2, 2), 4, True), ("9-6", (1, 1), 8, False), ("9-6", (1, 1), 8, True)])
def test_chunk_equals_cocotb_icarus(arch, mesh, neurons, early_exit, seed):
    net, inputs = case(arch, seed + 10, 4)
    plan = plan_mesh(net, *mesh, neurons=neurons, lanes=2, window=1)
    out = both(net, plan, inputs, sim="icarus", early_exit=early_exit)
    assert_identical(out, net, inputs)
    if early_exit:
        assert (out["chunk"][1]["decided"] >= 0).any()  # the abort path ran


@needs_icarus
def test_chunks_and_window(seed):
    """Several chunks (each configures the mesh again) and a run-ahead window of 3: same per-image results."""
    net, inputs = case("6-7-3", seed + 20, 5)
    plan = plan_mesh(net, 2, 2, neurons=4, lanes=2, window=3)
    assert_identical(both(net, plan, inputs, sim="icarus", early_exit=True, chunk=2), net, inputs)


@needs_icarus
def test_wide_flits(seed):
    """Flits wider than 64 bits (16-bit weights: a WEIGHT word carries 4 x 16 bits): the configuration travels as
    64-bit limbs, events below bit 64; same results as the cocotb transport and the golden model."""
    net = model.random_network("6-5-3", seed=seed + 30, time_bits=4, weight_bits=16)
    rng = np.random.default_rng(seed + 30)
    inputs = rng.integers(0, net.t_end + 1, size=(3, net.n_inputs))
    plan = plan_mesh(net, 2, 1, neurons=8, lanes=4, window=1)
    assert chunk_sim._Geometry.of(plan.pe, plan.noc).flit_bits > 64
    assert_identical(both(net, plan, inputs, sim="icarus", early_exit=False), net, inputs)


@needs_icarus
def test_cli_transport_chunk(tmp_path, capsys, seed):
    net, inputs = case("6-5-3", seed + 2, 2)
    model.save(net, tmp_path / "net.npz")
    np.save(tmp_path / "in.npy", inputs)
    argv = ["verify", "--net", str(tmp_path / "net.npz"), "--mesh", "2x1", "--input-times",
            str(tmp_path / "in.npy"), "--neurons", "8", "--lanes", "2", "--json"]
    assert yoso([*argv, "--transport", "chunk"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["transport"] == "chunk" and out["mismatches"] == 0 and out["spikes_compared"] == 2 * (5 + 3)
    assert yoso([*argv, "--transport", "fast"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--transport" in err and "'fast'" in err
    assert yoso([*argv, "--transport", "chunk", "--profile"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("yoso verify: error: --profile:")


def test_chunk_refuses_host_stalls():
    net, inputs = case("6-7-3", 1, 1)
    plan = plan_mesh(net, 2, 2, neurons=4, lanes=2, window=1)
    with pytest.raises(ValueError, match="transport: chunk"):
        verify(net, plan, inputs, transport="chunk", idle=0.1)
    with pytest.raises(ValueError, match="transport: 'fast'"):
        verify(net, plan, inputs, transport="fast")


@pytest.mark.slow
@pytest.mark.parametrize("early_exit", [False, True])
def test_chunk_equals_cocotb_verilator(early_exit, seed):
    """A bigger random network on 4x3 under Verilator: the chunk transport equals the cocotb one (Verilator)
    and the golden model, and its Icarus build gives the same cycles."""
    rng = np.random.default_rng(seed)
    sizes = [int(rng.integers(8, 20)), int(rng.integers(10, 24)), int(rng.integers(6, 16)), int(rng.integers(3, 8))]
    net, inputs = case(sizes, seed, 12, time_bits=5)
    plan = plan_mesh(net, 4, 3, neurons=8, lanes=2, window=2)
    out = both(net, plan, inputs, sim="verilator", early_exit=early_exit, chunk=6)
    assert_identical(out, net, inputs)
    arrays: dict = {}
    verify(net, plan, inputs, sim="icarus", transport="chunk", early_exit=early_exit, arrays=arrays)
    assert np.array_equal(arrays["cycles"], out["chunk"][1]["cycles"])
