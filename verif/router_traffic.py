"""Random router traffic, its Amaranth-simulator run and its checker, shared by the router tests (Amaranth
simulator and cocotb) and the coverage sweep (verif/coverage.py).

A flit's payload names its source port and sequence number (``port << SEQ_BITS | seq``), so the checker can
tell that every flit arrived exactly once, unchanged, at the port XY routing names, in per-source order.
"""

from __future__ import annotations

import random

from amaranth.sim import Simulator

from rtl.noc_layouts import FlitKind, NocConfig, Port
from rtl.router import route

__all__ = ["SEQ_BITS", "make_traffic", "run_traffic", "check_delivery"]

SEQ_BITS = 12


def make_traffic(rng: random.Random, cfg: NocConfig, per_port: int) -> dict[Port, list[dict]]:
    """``per_port`` random flits per input port (random destination anywhere in the mesh; host-bound with
    probability 1/2 when the destination is (0, 0))."""
    traffic = {}
    for p in Port:
        flits = []
        for seq in range(per_port):
            dx, dy = rng.randrange(cfg.width), rng.randrange(cfg.height)
            host = int(dx == 0 and dy == 0 and rng.random() < 0.5)
            flits.append({"x": dx, "y": dy, "host": host, "src_x": 0, "src_y": 0, "kind": FlitKind.EVENT,
                          "payload": (int(p) << SEQ_BITS) | seq})
        traffic[p] = flits
    return traffic


def run_traffic(dut, traffic: dict, rng: random.Random, *, p_idle: float, p_stall: float, max_cycles: int = 20000,
                simulator=Simulator, label: str = "") -> tuple[dict, int]:
    """Drive ``traffic`` into the router ``dut`` from all five ports (idle cycles with probability ``p_idle``)
    under random backpressure (``p_stall``) in the Amaranth simulator (``simulator``: the class, for a
    monitoring subclass); returns (``received`` for :func:`check_delivery`, cycles until the last flit left).
    Raises AssertionError after ``max_cycles`` without the last flit (deadlock)."""
    received = {p: [] for p in Port}
    total = sum(len(f) for f in traffic.values())
    state = {"cycles": 0}

    def driver(p):
        prng = random.Random(rng.randrange(1 << 30))

        async def tb(ctx):
            port = dut.port_i(p)
            for flit in traffic[p]:
                while prng.random() < p_idle:
                    await ctx.tick()
                ctx.set(port.valid, 1)
                ctx.set(port.payload, flit)
                await ctx.tick().until(port.ready)
                ctx.set(port.valid, 0)
        return tb

    def sink(p):
        prng = random.Random(rng.randrange(1 << 30))

        async def proc(ctx):
            port = dut.port_o(p)
            while True:
                ready = int(prng.random() >= p_stall)
                ctx.set(port.ready, ready)
                _, _, valid, payload = await ctx.tick().sample(port.valid, port.payload)
                if valid and ready:
                    received[p].append((payload.x, payload.y, payload.host, payload.payload))
        return proc

    async def watchdog(ctx):
        while sum(len(v) for v in received.values()) < total:
            await ctx.tick()
            state["cycles"] += 1
            assert state["cycles"] < max_cycles, f"{label}no progress after {max_cycles} cycles (deadlock?)"
        await ctx.tick().repeat(20)  # late duplicates would show up here

    sim = simulator(dut)
    sim.add_clock(1e-8)
    for p in Port:
        sim.add_testbench(driver(p))
        sim.add_process(sink(p))
    sim.add_testbench(watchdog)
    sim.run()
    return received, state["cycles"]


def check_delivery(traffic: dict, received: dict, x: int, y: int) -> None:
    """``received[port]``: (x, y, host, payload) of each flit that left by ``port``, in order. Raises
    AssertionError on a lost, duplicated, corrupted, misrouted or reordered flit."""
    seen = {}
    for out, flits in received.items():
        out = Port(out)
        last_seq = {}
        for fx, fy, fh, payload in flits:
            src, seq = payload >> SEQ_BITS, payload & ((1 << SEQ_BITS) - 1)
            sent = traffic[Port(src)][seq]
            assert (fx, fy, fh) == (sent["x"], sent["y"], sent["host"]), f"flit {src}/{seq} corrupted"
            assert route(x, y, fx, fy, fh) == out, f"flit {src}/{seq} left by {out.name}"
            assert (src, seq) not in seen, f"flit {src}/{seq} duplicated"
            seen[(src, seq)] = out
            assert seq > last_seq.get(src, -1), f"flit {src}/{seq} overtook a flit of the same source"
            last_seq[src] = seq
    total = sum(len(f) for f in traffic.values())
    assert len(seen) == total, f"{total - len(seen)} of {total} flits lost"
