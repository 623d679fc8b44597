"""The host runner over the Amaranth simulator: a mesh plan run on rtl/mesh.py in pysim (small meshes and
networks; cocotb does the big runs, the board the real ones). Used by the mesh tests and by ``yoso fpga`` for
the latency of one image."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
from amaranth.sim import Simulator

from rtl.mesh import Mesh

from .plan import MeshPlan
from .runner import ImageResult, ImageRun, SendAll, transfer

__all__ = ["PysimPort", "run_images"]


class PysimPort:
    """The host port of a simulated :class:`rtl.mesh.Mesh` as a runner port (see :mod:`host.runner`)."""

    def __init__(self, ctx, dut: Mesh):
        self.ctx, self.dut = ctx, dut
        self._i_payload = dut.host_i.payload.as_value()
        self._o_payload = dut.host_o.payload.as_value()

    async def cycle(self, word: int | None, ready: bool) -> tuple[bool, int | None]:
        ctx, d = self.ctx, self.dut
        ctx.set(d.host_i.valid, word is not None)
        if word is not None:
            ctx.set(self._i_payload, word)
        ctx.set(d.host_o.ready, ready)
        _, _, i_ready, o_valid, o_word = await ctx.tick().sample(d.host_i.ready, d.host_o.valid, self._o_payload)
        return bool(word is not None and i_ready), (int(o_word) if ready and o_valid else None)

    async def abort(self) -> None:
        ctx, d = self.ctx, self.dut
        ctx.set(d.host_i.valid, 0)
        ctx.set(d.host_o.ready, 0)
        ctx.set(d.abort, 1)
        await ctx.tick()
        ctx.set(d.abort, 0)

    def release(self) -> None:
        self.ctx.set(self.dut.host_i.valid, 0)


def run_images(plan: MeshPlan, inputs: np.ndarray, *, seed: int | None = None, idle: float = 0.0,
               stall: float = 0.0, early_exit: bool | Sequence[bool] = False,
               max_cycles: int = 2_000_000) -> list[ImageResult]:
    """Configure the mesh, run every row of ``inputs`` (input spike times) through it with the host runner;
    one :class:`ImageResult` per image. ``idle``/``stall``: random host idle cycles on injection and random
    backpressure on collection (seeded by ``seed``). ``early_exit``: for every image, or one flag per image."""
    rng = random.Random(seed)
    flags = [early_exit] * len(inputs) if isinstance(early_exit, bool) else list(early_exit)
    if len(flags) != len(inputs):
        raise ValueError(f"early_exit: {len(flags)} flags for {len(inputs)} images")
    dut = Mesh(plan.pe, plan.noc)
    results: list[ImageResult] = []

    async def host(ctx):
        port = PysimPort(ctx, dut)
        await transfer(port, SendAll(plan.config_flits()), rng=rng, idle=idle, stall=stall, max_cycles=max_cycles)
        for t, flag in zip(np.asarray(inputs), flags, strict=True):
            run = ImageRun(plan, t, early_exit=flag)
            cycles = await transfer(port, run, rng=rng, idle=idle, stall=stall, max_cycles=max_cycles)
            results.append(run.result(cycles))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.run()
    return results
