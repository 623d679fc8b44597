# amaranth: UnusedElaboratable=no
"""Router against its routing function in the Amaranth simulator: random traffic from all five ports under
random backpressure; every flit arrives exactly once, at the port XY routing names, in per-source order."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from rtl.noc_layouts import FlitKind, NocConfig, Port
from rtl.router import Router
from verif.router_traffic import SEQ_BITS, check_delivery, make_traffic, run_traffic


def run_router(cfg, x, y, seed, *, per_port=40, p_idle=0.3, p_stall=0.3, max_cycles=20000):
    rng = random.Random(seed)
    dut = Router(cfg, x=x, y=y)
    traffic = make_traffic(rng, cfg, per_port)
    received, cycles = run_traffic(dut, traffic, rng, p_idle=p_idle, p_stall=p_stall, max_cycles=max_cycles,
                                   label=f"seed {seed}: ")
    check_delivery(traffic, received, x, y)
    return cycles


@pytest.mark.parametrize("x,y", [(1, 1), (0, 0), (2, 1)])
def test_random_traffic_backpressure(x, y, seed):
    run_router(NocConfig(width=3, height=2, payload_bits=16), x, y, seed + 10 * x + y)


def test_saturation_ends(seed):
    """All inputs always valid, all outputs always ready: every output moves one flit per cycle."""
    cfg = NocConfig(width=3, height=3, payload_bits=16)
    cycles = run_router(cfg, 1, 1, seed, per_port=60, p_idle=0.0, p_stall=0.0)
    # 300 flits through 5 outputs; random destinations make some outputs busier than others.
    assert cycles < 300, cycles


def test_saturation_backpressure_shallow_fifo(seed):
    cfg = NocConfig(width=2, height=2, payload_bits=16, fifo_depth=2)
    run_router(cfg, 1, 0, seed + 1, per_port=40, p_idle=0.0, p_stall=0.7)


def test_round_robin_is_fair():
    """Four inputs all aimed at the local port, always valid: grants rotate, so each source gets every
    fourth slot of the output (no source waits more than three other flits)."""
    cfg = NocConfig(width=3, height=3, payload_bits=16)
    dut = Router(cfg, x=1, y=1)
    order = []
    srcs = [Port.NORTH, Port.EAST, Port.SOUTH, Port.WEST]

    def driver(p):
        async def tb(ctx):
            port = dut.port_i(p)
            for seq in range(10):
                ctx.set(port.valid, 1)
                ctx.set(port.payload, {"x": 1, "y": 1, "host": 0, "src_x": 0, "src_y": 0, "kind": FlitKind.EVENT,
                                       "payload": (int(p) << SEQ_BITS) | seq})
                await ctx.tick().until(port.ready)
            ctx.set(port.valid, 0)
        return tb

    async def sink(ctx):
        ctx.set(dut.local_o.ready, 1)
        for _ in range(400):
            if len(order) == 40:
                break
            _, _, valid, payload = await ctx.tick().sample(dut.local_o.valid, dut.local_o.payload)
            if valid:
                order.append(payload.payload >> SEQ_BITS)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for p in srcs:
        sim.add_testbench(driver(p))
    sim.add_testbench(sink)
    sim.run()
    assert len(order) == 40, order
    for k in range(4, 36):
        assert len(set(order[k:k + 4])) == 4, order


def test_bad_parameters():
    cfg = NocConfig(width=2, height=2, payload_bits=8)
    with pytest.raises(ValueError, match="x: must be in 0..1"):
        Router(cfg, x=2, y=0)
    with pytest.raises(TypeError, match="config"):
        Router(None, x=0, y=0)
    with pytest.raises(ValueError, match="fifo_depth"):
        NocConfig(width=2, height=2, payload_bits=8, fifo_depth=1)
