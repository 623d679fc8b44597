"""Mesh in the Amaranth simulator: random networks on 1x1, 2x2 and 3x2 meshes, every neuron's spike time in
every layer compared with model.run, under random injection gaps and host backpressure; conv2d and max-pooling
(in the conv layer's PEs) networks too."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import model
from host.plan import plan_mesh
from host.pysim import run_images
from verif.scoreboard import compare_images


def random_inputs(rng, net, n):
    t = rng.integers(0, net.t_end + 1, size=(n, net.n_inputs))
    t[rng.random(t.shape) < 0.3] = net.no_spike
    return t


@pytest.mark.parametrize("arch,mesh,neurons,lanes", [
    ("5-4", (1, 1), 4, 2),        # one layer, one PE
    ("6-7-3", (2, 2), 4, 2),      # 2 + 1 PEs, two sources for the output PE
    ("5-6-4-2", (3, 2), 2, 1),    # 3 + 2 + 1 PEs on a non-square mesh, up to three sources per PE
])
def test_random_networks_bit_exact(arch, mesh, neurons, lanes, seed):
    seed += sum(mesh)
    rng = np.random.default_rng(seed)
    net = model.random_network(arch, seed=seed, time_bits=4)
    mp = plan_mesh(net, *mesh, neurons=neurons, lanes=lanes, window=1)
    inputs = random_inputs(rng, net, 2)
    golden = model.run(net, inputs)
    results = run_images(mp, inputs, seed=seed, idle=0.2, stall=0.2)
    score, errors = compare_images(results, golden, net.no_spike)
    assert not errors, errors
    assert score.compared == 2 * sum(w.shape[1] for w in mp.weights)
    assert score, score.first


def test_balanced_dense_bit_exact(seed):
    """balance on a network of dense layers: the spare nodes split the hidden layers with the most synapses per
    PE into smaller even shares (9-12-6-3 on 3x2, PEs of 8 neurons x 2 lanes: 2 + 1 + 1 PEs unbalanced, 3 + 2
    + 1 balanced, the output layer on one PE); bit-exact on every neuron of every layer under stalls."""
    seed += 41
    rng = np.random.default_rng(seed)
    net = model.random_network("9-12-6-3", seed=seed, time_bits=4)
    plain = plan_mesh(net, 3, 2, neurons=8, lanes=2, window=1)
    mp = plan_mesh(net, 3, 2, neurons=8, lanes=2, window=1, balance=True)
    assert [len(plain.layer_slices(n)) for n in range(3)] == [2, 1, 1]
    assert [len(mp.layer_slices(n)) for n in range(3)] == [3, 2, 1] and mp.pe.neurons == 4
    inputs = random_inputs(rng, net, 2)
    golden = model.run(net, inputs)
    results = run_images(mp, inputs, seed=seed, idle=0.2, stall=0.2)
    score, errors = compare_images(results, golden, net.no_spike)
    assert not errors, errors
    assert score.compared == 2 * (12 + 6 + 3)
    assert score, score.first


def exposed(plan, n_images):
    """Spike times the host sees per run: every neuron of every layer but a conv2d layer pooled in its PEs."""
    return n_images * sum(x for x in plan.by_net_layer(plan.outputs(n) for n in range(plan.n_layers)) if x)


def _exposed_net(net):
    """The same count from the network: every layer but a conv2d layer followed by a maxpool2d."""
    ls = net.layers
    return sum(int(np.prod(ls[n].out_shape)) for n in range(len(ls))
               if not (n + 1 < len(ls) and ls[n + 1].kind == "maxpool2d"))


@pytest.mark.parametrize("in_shape,spec,mesh,neurons,lanes", [
    # conv only (stride 2, padding 1), one PE
    ((1, 5, 5), [("conv", 2, 3, 2, 1)], (1, 1), 32, 4),
    # conv -> 2x2 pool -> dense: windows of 4 neurons (2 lanes), the conv layer on 2 PEs
    ((1, 5, 5), [("conv", 2, 3, 1, 1), ("pool", 2, 2), ("dense", 3)], (2, 2), 16, 2),
    # 2 input channels, pool stride 3 > kernel 2 (conv neurons in no window are left out), 4 lanes per window
    ((2, 6, 6), [("conv", 2, 2, 1, 0), ("pool", 2, 3), ("dense", 3)], (2, 2), 16, 4),
    # 3x3 pool: windows of 9 neurons padded to 16 (a window spans 4 words), padding 1
    ((1, 7, 7), [("conv", 1, 3, 1, 1), ("pool", 3, 3), ("dense", 2)], (2, 2), 32, 4),
])
def test_conv_pool_networks_bit_exact(in_shape, spec, mesh, neurons, lanes, seed, random_conv_network):
    """conv2d as its dense expansion, maxpool2d in the conv PEs' STORE (first spike of a window passes): every
    exposed neuron's time equals model.run's (the pooled times, not the conv times under them)."""
    seed += len(spec) + in_shape[1]
    rng = np.random.default_rng(seed)
    net = random_conv_network(rng, in_shape, spec)
    mp = plan_mesh(net, *mesh, neurons=neurons, lanes=lanes, window=1, conv_mode=False)
    inputs = random_inputs(rng, net, 2)
    golden = model.run(net, inputs)
    results = run_images(mp, inputs, seed=seed, idle=0.2, stall=0.2)
    score, errors = compare_images(results, golden, net.no_spike)
    assert not errors, errors
    assert score.compared == exposed(mp, 2)
    assert score, score.first
    pooled = [ml for ml in net.layers if ml.kind == "maxpool2d"]
    if pooled:
        # the case means something: some window had more than one conv neuron firing
        conv = golden.times[0].reshape(2, -1)
        assert (conv < net.no_spike).sum() > (golden.times[1] < net.no_spike).sum()


@pytest.mark.parametrize("in_shape,spec,mesh,neurons,lanes", [
    # conv mode, stride 2, padding 1, one PE (2 channels in 2 lanes x 9 positions)
    ((1, 5, 5), [("conv", 2, 3, 2, 1)], (1, 1), 32, 2),
    # conv -> 2x2 pool -> dense on 2x2: 3 conv-mode PEs of 2x4 positions x 2 lanes, pooled indices per tile
    ((1, 6, 6), [("conv", 2, 3, 1, 1), ("pool", 2, 2), ("dense", 3)], (2, 2), 32, 2),
    # conv (5x5, padding 2) -> pool -> conv (3 channels in 2 lanes: a padding lane) -> dense on 3x2 (2 + 1 + 1
    # PEs): the second conv layer reads the first one's tile outputs through its input map
    ((2, 8, 8), [("conv", 2, 5, 1, 2), ("pool", 2, 2), ("conv", 3, 3, 1, 1), ("dense", 2)], (3, 2), 64, 2),
])
def test_conv_mode_networks_bit_exact(in_shape, spec, mesh, neurons, lanes, seed, random_conv_network):
    """conv2d in the PEs' conv mode (weight-shared kernel slices, docs/pe.md "Conv mode"), max-pooling in STORE
    with the POOL_LOW rule: every exposed neuron of every layer equals model.run's under host stalls and
    backpressure."""
    seed += len(spec) + in_shape[1] + 7
    rng = np.random.default_rng(seed)
    net = random_conv_network(rng, in_shape, spec)
    mp = plan_mesh(net, *mesh, neurons=neurons, lanes=lanes, window=1)
    assert all(g is not None for g, (kind, *_) in zip(mp.convs, [x for x in spec if x[0] != "pool"], strict=True)
               if kind == "conv")
    inputs = random_inputs(rng, net, 2)
    golden = model.run(net, inputs)
    results = run_images(mp, inputs, seed=seed, idle=0.2, stall=0.2)
    score, errors = compare_images(results, golden, net.no_spike)
    assert not errors, errors
    assert score.compared == exposed(mp, 2) == 2 * _exposed_net(net)
    assert score, score.first


@pytest.mark.parametrize("in_shape,spec,mesh,neurons,lanes,balance", [
    # conv -> 2x2 pool -> dense (as a 1x1 conv of 8 channels, 3 outputs in 4 lanes) on 2x2
    ((1, 6, 6), [("conv", 2, 3, 1, 1), ("pool", 2, 2), ("dense", 3)], (2, 2), 64, 4, False),
    # conv -> pool -> conv -> dense -> dense on 3x2: the dense layers read conv tile outputs / each other
    # through their input maps
    ((2, 8, 8), [("conv", 2, 5, 1, 2), ("pool", 2, 2), ("conv", 3, 3, 1, 1), ("dense", 5), ("dense", 2)], (3, 2),
     64, 2, False),
    # the same on 3x3 with balance: the spare nodes split the layers with the most synapses per PE
    ((2, 8, 8), [("conv", 2, 5, 1, 2), ("pool", 2, 2), ("conv", 3, 3, 1, 1), ("dense", 5), ("dense", 2)], (3, 3),
     64, 2, True),
])
def test_compact_weights_bit_exact(in_shape, spec, mesh, neurons, lanes, balance, seed, random_conv_network):
    """compact_weights: every layer in conv mode (dense ones as 1x1 convolutions), the weight SRAM built with
    only the largest kernel slice's words: bit-exact on every neuron of every layer under stalls."""
    seed += len(spec) + in_shape[1] + 11
    rng = np.random.default_rng(seed)
    net = random_conv_network(rng, in_shape, spec)
    mp = plan_mesh(net, *mesh, neurons=neurons, lanes=lanes, window=1, compact_weights=True, balance=balance)
    if balance:
        assert len(mp.slices) > len(plan_mesh(net, *mesh, neurons=neurons, lanes=lanes, window=1,
                                              compact_weights=True).slices)
    assert all(g is not None for g in mp.convs)
    assert 0 < mp.pe.weight_depth == mp.pe.weight_words < mp.pe.fan_in * mp.pe.words
    inputs = random_inputs(rng, net, 2)
    golden = model.run(net, inputs)
    results = run_images(mp, inputs, seed=seed, idle=0.2, stall=0.2)
    score, errors = compare_images(results, golden, net.no_spike)
    assert not errors, errors
    assert score.compared == 2 * _exposed_net(net)
    assert score, score.first


def test_compact_weights_board_big_pe_bit_exact(seed, random_conv_network):
    """conv -> 2x2 pool -> dense on 2x2 with the PEs built as board builds make big conv PEs
    (fpga.boards.board_config): LOAD's pending FIFO (3 entries), the grouped sweep, the request stage, the fetch
    stage and STORE's window bits in LUT RAM; every neuron of every layer equals model.run's under host stalls
    and backpressure."""
    seed += 29
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    net = random_conv_network(rng, (1, 6, 6), [("conv", 2, 3, 1, 1), ("pool", 2, 2), ("dense", 3)])
    mp = plan_mesh(net, 2, 2, neurons=64, lanes=4, window=1, compact_weights=True)
    mp = dataclasses.replace(mp, pe=dataclasses.replace(mp.pe, pending_fifo=3, sweep_group=2, request_stage=True,
                                                        pool_ram=True, fetch_stage=True))
    inputs = random_inputs(rng, net, 2)
    golden = model.run(net, inputs)
    results = run_images(mp, inputs, seed=seed, idle=0.2, stall=0.2)
    score, errors = compare_images(results, golden, net.no_spike)
    assert not errors, errors
    assert score.compared == 2 * _exposed_net(net)
    assert score, score.first


@pytest.mark.slow
@pytest.mark.parametrize("k", range(12))
def test_conv_mode_many_seeds(k, seed, random_conv_network):
    """Random conv (-> 2x2 pool) (-> conv) (-> dense) networks in conv mode: kernels 1..5, strides 1..2, padding
    0..2, 1..3 channels, 1x1 / 2x2 / 3x2 meshes, random PE sizes, host stalls and backpressure."""
    seed += 1000 * k
    rng = np.random.default_rng(seed)
    c, h = int(rng.integers(1, 3)), int(rng.integers(5, 9))
    kernel = int(rng.integers(1, 6))
    padding = int(rng.integers(0, min(2, kernel) + 1))
    spec = [("conv", int(rng.integers(1, 4)), kernel, int(rng.integers(1, 3)), padding)]
    if k % 2:
        spec.append(("pool", 2, 2))
    if k % 3 == 0:
        spec.append(("conv", int(rng.integers(1, 3)), int(rng.integers(1, 3)), 1, int(rng.integers(0, 2))))
    if k % 4:
        spec.append(("dense", int(rng.integers(2, 4))))
    try:
        net = random_conv_network(rng, (c, h, h), spec, time_bits=int(rng.integers(3, 6)))
    except model.NetworkError:  # the kernel or pool does not fit the map
        net = random_conv_network(rng, (c, h, h), [("conv", 2, 3, 1, 1)], time_bits=4)
    mesh = [(1, 1), (2, 2), (3, 2)][k % 3]
    try:
        mp = plan_mesh(net, *mesh, neurons=int(rng.choice([16, 32, 64])), lanes=int(rng.choice([1, 2, 4])),
                       window=1, compact_weights=k % 5 == 1)
    except model.NetworkError:
        mp = plan_mesh(net, 4, 4, neurons=64, lanes=2, window=1)
    inputs = random_inputs(rng, net, 2)
    golden = model.run(net, inputs)
    results = run_images(mp, inputs, seed=seed, idle=0.3, stall=0.3, max_cycles=400_000)
    score, errors = compare_images(results, golden, net.no_spike)
    assert not errors and score, errors or score.first
    assert score.compared == 2 * _exposed_net(net)


@pytest.mark.slow
@pytest.mark.parametrize("k", range(12))
def test_conv_pool_many_seeds(k, seed, random_conv_network):
    """Random conv -> (pool) -> dense networks: kernels 1..4, strides 1..2, padding 0..2, pools 1..3 with
    stride >= kernel, 1x1 to 3x3 meshes, random PE sizes, host stalls and backpressure."""
    seed += 1000 * k
    rng = np.random.default_rng(seed)
    c, h = int(rng.integers(1, 3)), int(rng.integers(4, 8))
    kernel = int(rng.integers(1, min(4, h) + 1))
    padding = int(rng.integers(0, min(2, kernel) + 1))
    spec = [("conv", int(rng.integers(1, 3)), kernel, int(rng.integers(1, 3)), padding)]
    if k % 3:
        pk = int(rng.integers(1, 3))
        spec.append(("pool", pk, pk + int(rng.integers(0, 2))))
    if k % 4:
        spec.append(("dense", int(rng.integers(2, 5))))
    try:
        net = random_conv_network(rng, (c, h, h), spec, time_bits=int(rng.integers(3, 6)))
    except model.NetworkError:  # the pool does not fit the conv output
        net = random_conv_network(rng, (c, h, h), spec[:1], time_bits=4)
    try:
        mp = plan_mesh(net, *[(2, 2), (3, 2), (3, 3)][k % 3], neurons=int(rng.choice([8, 16, 32])),
                       lanes=int(rng.choice([1, 2, 4])), window=1)
    except model.NetworkError:
        mp = plan_mesh(net, 4, 4, neurons=64, lanes=4, window=1)
    inputs = random_inputs(rng, net, 2)
    golden = model.run(net, inputs)
    results = run_images(mp, inputs, seed=seed, idle=0.3, stall=0.3, max_cycles=200_000)
    score, errors = compare_images(results, golden, net.no_spike)
    assert not errors and score, errors or score.first
    assert score.compared == exposed(mp, 2)


@pytest.mark.slow
@pytest.mark.parametrize("k", range(12))
def test_random_networks_many_seeds(k, seed):
    seed += 1000 * k
    rng = np.random.default_rng(seed)
    sizes = [int(rng.integers(2, 9)) for _ in range(int(rng.integers(2, 5)))]
    net = model.random_network(sizes, seed=seed, time_bits=int(rng.integers(3, 6)))
    mesh = [(1, 1), (2, 2), (3, 2), (2, 3), (4, 3)][k % 5]
    try:
        mp = plan_mesh(net, *mesh, neurons=int(rng.choice([2, 4])), lanes=int(rng.choice([1, 2])), window=1)
    except model.NetworkError:
        mp = plan_mesh(net, 4, 4, neurons=8, lanes=2, window=1)
    inputs = random_inputs(rng, net, 3)
    golden = model.run(net, inputs)
    results = run_images(mp, inputs, seed=seed, idle=0.3, stall=0.3, max_cycles=100_000)
    score, errors = compare_images(results, golden, net.no_spike)
    assert not errors and score, errors or score.first


class WorstStartOrder:
    """An image whose STARTs go first layer first, and the other layers' STARTs only after the host has seen
    every first-layer PE's STEP_END(0): every next-layer PE then gets markers before its own START."""

    def __init__(self, plan, times):
        from host.runner import ImageRun

        self.run = ImageRun(plan, times)
        n = len(plan.slices)
        by_layer = sorted(range(n), key=lambda k: plan.slices[k].layer)
        order = {s.node: k for k, s in enumerate(sorted(plan.slices, key=lambda s: -s.layer))}
        starts = self.run.words[:n]
        self.run.words[:n] = [starts[order[plan.slices[k].node]] for k in by_layer]
        self.hold_at = len(plan.layer_slices(0))
        self.first = {s.node for s in plan.layer_slices(0)}

    def _released(self):
        return self.first <= {f.src for f in self.run.flits
                              if f.event is not None and f.event.kind.name == "STEP_END" and f.event.time == 0}

    def offer(self):
        if self.run.k == self.hold_at and not self._released():
            return None
        return self.run.offer()

    def __getattr__(self, name):
        return getattr(self.run, name)


def test_start_guard_worst_start_order(seed):
    """START guard (rtl/load.py): markers that reach a PE before its START are kept and counted after it, so
    STARTs delivered in the worst order (first layer first, the rest after the first layer's STEP_END(0) came
    back) still give the golden spike times, image after image."""
    from amaranth.sim import Simulator

    from host.pysim import PysimPort
    from host.runner import SendAll, transfer
    from rtl.mesh import Mesh

    net = model.random_network("5-6-4-2", seed=seed, time_bits=4)
    plan = plan_mesh(net, 3, 2, neurons=2, lanes=1, window=1)
    inputs = random_inputs(np.random.default_rng(seed), net, 3)
    golden = model.run(net, inputs)
    dut = Mesh(plan.pe, plan.noc)
    results = []

    async def host(ctx):
        port = PysimPort(ctx, dut)
        await transfer(port, SendAll(plan.config_flits()), max_cycles=200_000)
        for t in inputs:
            job = WorstStartOrder(plan, t)
            cycles = await transfer(port, job, max_cycles=50_000)
            results.append(job.run.result(cycles))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.run()
    score, errors = compare_images(results, golden, net.no_spike)
    assert not errors, errors
    assert score.compared == 3 * sum(w.shape[1] for w in plan.weights)
    assert score, score.first
