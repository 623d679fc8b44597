"""Mesh in the Amaranth simulator: random networks on 1x1, 2x2 and 3x2 meshes, every neuron's spike time in
every layer compared with model.run, under random injection gaps and host backpressure."""

from __future__ import annotations

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
    compared, bad, first = compare_images(results, golden, net.no_spike)
    assert compared == 2 * sum(w.shape[1] for w in mp.weights)
    assert bad == 0, first


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
    compared, bad, first = compare_images(results, golden, net.no_spike)
    assert bad == 0, first
