"""Run a PE in the Amaranth simulator (pysim): the fast path for block and PE tests in tests/rtl/."""

from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator

from rtl.config import PEConfig
from rtl.pe import PE

from . import driver

__all__ = ["stream_put", "stream_get", "run_layer"]


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


def run_layer(cfg: PEConfig, weight, threshold, times_list, t_end: int, *, seed: int = 0, idle: float = 0.0,
              stall: float = 0.0, max_cycles: int = 200_000):
    """Configure a PE with one layer and run the inferences in ``times_list`` back to back.

    Returns (list of output spike-time arrays, cycles). Raises driver.ProtocolError on a bad output stream.
    """
    rng = np.random.default_rng(seed)
    weight = np.asarray(weight)
    n_out = weight.shape[1]
    dut = PE(cfg)
    cfg_words = driver.layer_cfg_words(cfg, weight, threshold, t_end=t_end)
    streams = [driver.input_events(cfg, t, t_end, rng=rng) for t in times_list]
    results = []
    cycles = [0]

    async def feeder(ctx):
        for w in cfg_words:
            await stream_put(ctx, dut.cfg, w, rng=rng, idle=idle)
        for events in streams:
            for e in events:
                await stream_put(ctx, dut.i, e, rng=rng, idle=idle)

    async def collector(ctx):
        lay_end = driver.L.EventKind.STEP_END.value
        for _ in streams:
            words = []
            while True:
                w = await stream_get(ctx, dut.o, rng=rng, stall=stall)
                words.append(w)
                e = driver.unpack(driver.L.event_layout(cfg), w)
                if e["kind"] == lay_end and e["time"] == t_end:
                    break
            results.append(driver.decode_output(cfg, words, n_out, t_end))

    async def timer(ctx):
        async for _ in ctx.tick():
            cycles[0] += 1
            if cycles[0] > max_cycles:
                raise TimeoutError(f"PE did not finish within {max_cycles} cycles")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(feeder, background=True)
    sim.add_process(timer)
    sim.add_testbench(collector)
    sim.run()
    return results, cycles[0]
