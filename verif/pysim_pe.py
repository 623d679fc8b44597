"""Run a PE in the Amaranth simulator (pysim): the fast path for block and PE tests in tests/rtl/."""

from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator

from host.codec import PECodec
from rtl import layouts as L
from rtl.config import PEConfig
from rtl.pe import PE

__all__ = ["stream_put", "stream_get", "run_streams", "run_case", "accept_cycles"]


async def stream_put(ctx, port, payload, *, rng=None, idle=0.0):
    """Send one payload on a stream port, after random idle cycles (probability ``idle`` per cycle)."""
    while rng is not None and rng.random() < idle:
        await ctx.tick()
    ctx.set(port.valid, 1)
    ctx.set(port.payload.as_value() if hasattr(port.payload, "as_value") else port.payload, payload)
    await ctx.tick().until(port.ready)
    ctx.set(port.valid, 0)


async def stream_get(ctx, port, *, rng=None, stall=0.0) -> int:
    """Receive one payload from a stream port, refusing it (ready low) with probability ``stall`` per cycle."""
    value = port.payload.as_value() if hasattr(port.payload, "as_value") else port.payload
    while True:
        ready = not (rng is not None and rng.random() < stall)
        ctx.set(port.ready, ready)
        _, _, payload, valid = await ctx.tick().sample(value, port.valid)
        if ready and valid:
            ctx.set(port.ready, 0)
            return int(payload)


def accept_cycles(cfg: PEConfig, cfg_words, events) -> np.ndarray:
    """Configure a PE with ``cfg_words``, then offer ``events`` (event words) on ``i`` back to back with ``o``
    always ready; returns the cycle at which each event was accepted (the cycle models' probe)."""
    dut = PE(cfg)
    accepted, cycle = [], [0]

    async def count(ctx):
        async for _ in ctx.tick():
            cycle[0] += 1

    async def feed(ctx):
        for w in cfg_words:
            await stream_put(ctx, dut.cfg, w)
        ctx.set(dut.o.ready, 1)
        for e in events:
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload.as_value(), e)
            while not (await ctx.tick().sample(dut.i.ready))[2]:
                pass
            accepted.append(cycle[0])
        ctx.set(dut.i.valid, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(count)
    sim.add_testbench(feed)
    sim.run()
    return np.array(accepted)


def run_streams(cfg: PEConfig, cfg_words, streams, *, n_out: int, t_end: int, neuron_base: int = 0,
                seed: int = 0, idle: float = 0.0, stall: float = 0.0, max_cycles: int = 500_000):
    """Simulate a PE: send ``cfg_words`` on ``cfg``, then the inferences' event words ``streams`` on ``i``
    (random idle cycles with probability ``idle``), collect ``o`` under random backpressure (``stall``).

    Returns (list of output spike-time arrays, cycles). Raises host.codec.ProtocolError on a bad output stream.
    """
    rng = np.random.default_rng(seed)
    dut = PE(cfg)
    results = []
    cycles = [0]
    codec = PECodec(cfg)

    async def feeder(ctx):
        for w in cfg_words:
            await stream_put(ctx, dut.cfg, w, rng=rng, idle=idle)
        for events in streams:
            for e in events:
                await stream_put(ctx, dut.i, e, rng=rng, idle=idle)

    async def collector(ctx):
        for _ in streams:
            words = []
            while True:
                w = await stream_get(ctx, dut.o, rng=rng, stall=stall)
                words.append(w)
                e = codec.decode_event(w)
                if e.kind == L.EventKind.STEP_END and e.time == t_end:
                    break
            results.append(codec.decode_output(words, n_out, t_end, neuron_base=neuron_base))

    async def timer(ctx):
        async for _ in ctx.tick():
            cycles[0] += 1
            if cycles[0] > max_cycles:
                raise TimeoutError(f"PE did not finish within {max_cycles} cycles")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(feeder)
    sim.add_process(timer)
    sim.add_testbench(collector)
    sim.run()
    return results, cycles[0]


def run_case(cfg: PEConfig, case, *, seed: int | None = None):
    """Simulate one verif.scenarios.Case; returns (outputs, cycles)."""
    return run_streams(cfg, case.cfg_words(cfg), case.streams, n_out=case.weight.shape[1], t_end=case.t_end,
                       neuron_base=case.neuron_base, seed=case.seed if seed is None else seed, idle=case.idle,
                       stall=case.stall)
