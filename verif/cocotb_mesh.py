"""cocotb testbench of a generated mesh (launched by verif/mesh_verify.py).

``MESH_JOB`` (JSON): ``plan`` (a host.plan.MeshPlan saved as .npz: the plan is data, computed once by the
caller), ``inputs`` (.npy of input spike times, images x inputs), ``result`` (.npz written at the end),
``seed``, optional ``early_exit`` (true: abort each image once its prediction is decided,
host.runner.DecisionWatch), optional ``profile`` (true: count per image where the cycles go, see
:class:`Profile`), ``idle`` / ``stall`` (probabilities of an idle host cycle on injection and of host
backpressure), optional ``reset_after`` (cycles into the first image at which reset is asserted; the mesh is
then configured again and every image runs from the start).

The host is host.runner (configuration flits, then per image the image flits under the plan's run-ahead
window while the host port is drained, completion and early exit) over :class:`CocotbPort`. The result holds
every layer's spike times as the host decoded them, cycles per image and any protocol error per image.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from host.plan import MeshPlan
from host.runner import ImageRun, SendAll, result_arrays, transfer


class Profile:
    """Optional cycle accounting (``yoso verify --profile``): per image, counts of host-port cycles and, per
    node, of the PE's input / LOAD / output handshakes and stalls. Signals are sampled at each rising edge, as
    the host samples its own handshakes. Keys (per image, summed over the images of a chunk):

    ``host_in_<what>``: ``sent`` (host_i handshake), ``blocked`` (host_i valid, mesh not ready), ``gated`` (next
    word waits for the run-ahead window), ``idle`` (nothing left to send); ``host_out``: host_o handshakes.
    ``pe<x>_<y>_<what>``: ``in`` (event into the PE), ``in_blocked`` (event waiting, PE not ready),
    ``load`` (LOAD issues a word read), ``load_blocked`` (read request waiting), ``out`` (PE event taken by the
    NI), ``out_blocked`` (PE event waiting for the NI / router).
    """

    def __init__(self, dut, mp):
        self.nodes = [s.node for s in mp.slices]
        self.sig = {}
        for x, y in self.nodes:
            ni, pe = getattr(dut, f"ni_{x}_{y}"), getattr(dut, f"pe_{x}_{y}")
            self.sig[x, y] = (ni.pe_i__valid, ni.pe_i__ready, pe.load.req__valid, pe.load.req__ready,
                              ni.pe_o__valid, ni.pe_o__ready)
        self.counts: dict[str, int] = {}

    def add(self, key: str, n: int = 1):
        self.counts[key] = self.counts.get(key, 0) + n

    def sample(self):
        for (x, y), sigs in self.sig.items():
            iv, ir, lv, lr, ov, orr = (int(s.value) if s.value.is_resolvable else 0 for s in sigs)
            for name, v, r in (("in", iv, ir), ("load", lv, lr), ("out", ov, orr)):
                if v:
                    self.add(f"pe{x}_{y}_{name}" if r else f"pe{x}_{y}_{name}_blocked")


class CocotbPort:
    """The mesh's host port under cocotb as a host.runner port; samples ``profile`` every cycle."""

    def __init__(self, dut, profile: Profile | None = None):
        self.dut, self.profile = dut, profile

    async def reset(self):
        d = self.dut
        d.host_i__valid.value = 0
        d.host_o__ready.value = 0
        d.abort.value = 0
        d.rst.value = 1
        for _ in range(3):
            await RisingEdge(d.clk)
        d.rst.value = 0

    async def cycle(self, word, ready):
        d = self.dut
        d.host_i__valid.value = int(word is not None)
        if word is not None:
            d.host_i__payload.value = word
        d.host_o__ready.value = int(ready)
        await RisingEdge(d.clk)
        if self.profile is not None:
            self.profile.sample()
        sent = word is not None and bool(d.host_i__ready.value)
        got = None
        if ready and d.host_o__valid.value:
            raw = d.host_o__payload.value
            if not raw.is_resolvable:
                raise AssertionError(f"host_o payload {raw}")
            got = raw.to_unsigned()
        return sent, got

    async def abort(self):
        d = self.dut
        d.host_i__valid.value = 0
        d.host_o__ready.value = 0
        d.abort.value = 1
        await RisingEdge(d.clk)
        d.abort.value = 0

    def release(self):
        self.dut.host_i__valid.value = 0


@cocotb.test()
async def test_images(dut):
    job = json.loads(os.environ["MESH_JOB"])
    plan = MeshPlan.load(job["plan"])
    inputs = np.load(job["inputs"], allow_pickle=False)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    profile = Profile(dut, plan) if job.get("profile") else None
    port = CocotbPort(dut)
    rng = random.Random(job["seed"])
    opts = dict(rng=rng, idle=job["idle"], stall=job["stall"],
                max_cycles=int(os.environ.get("MESH_MAX_CYCLES", 5_000_000)))
    await port.reset()
    cfg = plan.config_flits()
    if job.get("reset_after") is not None:
        await transfer(port, SendAll(cfg), **opts)
        await transfer(port, ImageRun(plan, inputs[0]), abort_after=int(job["reset_after"]), **opts)
        await port.reset()
    cfg_cycles = await transfer(port, SendAll(cfg), **opts)
    dut._log.info(f"configured: {len(cfg)} flits in {cfg_cycles} cycles")
    n = len(inputs)
    results = []
    port.profile = profile  # PE activity is counted during images only, not during configuration
    for b, t in enumerate(inputs):
        run = ImageRun(plan, t, early_exit=bool(job.get("early_exit")))
        results.append(run.result(await transfer(port, run, counts=None if profile is None else profile.counts,
                                                 **opts)))
        if (b + 1) % 10 == 0 or b + 1 == n:
            dut._log.info(f"{b + 1} of {n} images, last {results[-1].cycles} cycles")
    out = result_arrays(plan, results, cfg_cycles)
    if profile is not None:
        out["profile"] = np.array(json.dumps(profile.counts))
    np.savez(job["result"], **out)
