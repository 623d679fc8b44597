"""Run a mapped network on the mesh in the Amaranth simulator (small meshes and networks; cocotb does the big
runs). The host side is the same as in cocotb: config flits, then per image the image flits, while the host
port is drained; the next image starts once every node sent DONE."""

from __future__ import annotations

import random

import numpy as np
from amaranth.sim import Simulator

from rtl.mapping import ImageResult, Mapping
from rtl.mesh import Mesh

__all__ = ["run_images", "compare"]


def run_images(mapping: Mapping, inputs: np.ndarray, *, seed: int | None = None, idle: float = 0.0,
               stall: float = 0.0, max_cycles: int = 2_000_000):
    """Configure the mesh, run every row of ``inputs`` (input spike times); return (list of ImageResult,
    host flits per image). With ``idle``/``stall`` > 0 the host inserts random idle cycles on injection and
    random backpressure on collection (seeded by ``seed``)."""
    rng = random.Random(seed)
    dut = Mesh(mapping.pe, mapping.noc)
    n_nodes = len(mapping.placements)
    is_last = mapping.is_last_host_flit
    cfg = mapping.config_flits()
    images = [mapping.image_steps(t) for t in np.asarray(inputs)]
    window = mapping.window
    got: list[list[int]] = []
    cycles: list[int] = []
    state = {"cycle": 0, "done": 0, "cur": [], "last_end": {}}

    async def put(ctx, word):
        while idle and rng.random() < idle:
            await ctx.tick()
        ctx.set(dut.host_i.valid, 1)
        ctx.set(dut.host_i.payload.as_value(), word)
        await ctx.tick().until(dut.host_i.ready)
        ctx.set(dut.host_i.valid, 0)

    async def host(ctx):
        for w in cfg:
            await put(ctx, w)
        for groups in images:
            state["done"], state["cur"] = 0, []
            state["last_end"] = {p.node: -1 for p in mapping.placements}
            start = state["cycle"]
            for step, flits in groups:
                # Run-ahead window (docs/noc.md): step s waits for every PE's STEP_END(s - window).
                while window is not None and min(state["last_end"].values()) < step - window:
                    await ctx.tick()
                for w in flits:
                    await put(ctx, w)
            while state["done"] < n_nodes + mapping.n_reporting:
                await ctx.tick()
                if state["cycle"] > max_cycles:
                    raise AssertionError(f"image {len(got)}: {state['done']} of {n_nodes} DONE after "
                                         f"{max_cycles} cycles (deadlock?)")
            cycles.append(state["cycle"] - start)
            got.append(state["cur"])

    async def collect(ctx):
        while True:
            ready = int(not (stall and rng.random() < stall))
            ctx.set(dut.host_o.ready, ready)
            _, _, valid, word = await ctx.tick().sample(dut.host_o.valid, dut.host_o.payload.as_value())
            state["cycle"] += 1
            if valid and ready:
                state["cur"].append(word)
                state["done"] += is_last(word)
                se = mapping.step_end_of(word)
                if se is not None:
                    state["last_end"][se[0]] = se[1]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.add_process(collect)
    sim.run()
    results = [ImageResult(times=mapping.decode(f), cycles=c) for f, c in zip(got, cycles, strict=True)]
    return results, got


def compare(mapping: Mapping, results, golden) -> tuple[int, int, str | None]:
    """(spikes compared, mismatching neurons, first mismatch message) over all images and layers."""
    compared, bad, first = 0, 0, None
    for b, r in enumerate(results):
        for n, t in enumerate(r.times):
            if t is None:
                continue
            want = np.asarray(golden.times[n][b]).reshape(-1)
            compared += want.size
            diff = np.flatnonzero(t != want)
            bad += diff.size
            if diff.size and first is None:
                j = int(diff[0])
                first = f"image {b} layer {n} neuron {j}: mesh {int(t[j])}, golden model {int(want[j])}"
    return compared, bad, first
