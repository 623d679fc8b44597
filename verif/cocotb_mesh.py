"""cocotb testbench of a generated mesh (launched by verif/mesh_verify.py).

``MESH_JOB`` (JSON): ``net`` (network file), ``width``, ``height``, ``neurons``, ``lanes``, ``monitor``,
``inputs`` (.npy of input spike times, images x inputs), ``result`` (.npz written at the end), ``seed``,
``window`` (run-ahead window or null), optional ``early_exit`` (true: abort each image once its prediction
is decided, rtl.mapping.DecisionWatch), optional ``profile`` (true: count per image where the cycles go,
see :class:`Profile`), ``idle`` / ``stall`` (probabilities of an idle host cycle on
injection and of host backpressure), optional ``reset_after`` (cycles into the first image at which reset is
asserted; the mesh is then configured again and every image runs from the start).

The host loads the configuration flits, then per image injects START and the input layer's events while
draining the host port; an image is over when every node sent DONE and every reporting node its
STEP_END(t_end) (rtl.mapping.Mapping.is_last_host_flit). The result holds every layer's spike times as the
host decoded them, cycles per image and any protocol error per image.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

import model
from rtl.mapping import map_network
from verif.driver import ProtocolError


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
        self.nodes = [p.node for p in mp.placements]
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


class Host:
    def __init__(self, dut, rng: random.Random, idle: float, stall: float):
        self.dut, self.rng, self.idle, self.stall = dut, rng, idle, stall

    async def reset(self):
        d = self.dut
        d.host_i__valid.value = 0
        d.host_o__ready.value = 0
        d.abort.value = 0
        d.rst.value = 1
        for _ in range(3):
            await RisingEdge(d.clk)
        d.rst.value = 0

    async def transfer(self, words, *, finish=None, target: int = 0, abort_after: int | None = None,
                       max_cycles: int = int(os.environ.get("MESH_MAX_CYCLES", 5_000_000)), gate=None,
                       profile: Profile | None = None, watch=None):
        """Send ``words`` on host_i while collecting host_o; returns (received words, cycles). Ends when
        everything is sent and ``target`` received words satisfied ``finish``, or after ``abort_after``
        cycles. ``gate`` = (mapping, step of each word): a word of step s waits until every PE has sent
        STEP_END(s - mapping.window) to the host (the run-ahead window of docs/noc.md). ``watch``: a
        rtl.mapping.DecisionWatch; once it reports the prediction decided, the host raises ``abort`` for one
        cycle (counted) and the transfer ends (early exit)."""
        d, rng = self.dut, self.rng
        got, k, v, done, cycles = [], 0, 0, 0, 0
        n = len(words)
        if gate is not None:
            mp, steps = gate
            last_end = {p.node: -1 for p in mp.placements}
            allowed = mp.window - 1  # steps <= allowed may be sent now (every PE sent STEP_END(-1))
        else:
            steps, allowed = None, 0
        rdy = 1
        d.host_o__ready.value = 1
        while k < n or done < target:
            if k < n and (v or ((steps is None or steps[k] <= allowed)
                                and (not self.idle or rng.random() >= self.idle))):
                if not v:
                    d.host_i__payload.value = words[k]
                    v = 1
                    d.host_i__valid.value = 1
            elif v == 0:
                d.host_i__valid.value = 0
            if self.stall:
                rdy = int(rng.random() >= self.stall)
                d.host_o__ready.value = rdy
            await RisingEdge(d.clk)
            cycles += 1
            if profile is not None:
                profile.sample()
                if v:
                    profile.add("host_in_sent" if d.host_i__ready.value else "host_in_blocked")
                else:
                    profile.add("host_in_gated" if k < n and steps is not None and steps[k] > allowed
                                else "host_in_idle")
                if rdy and d.host_o__valid.value:
                    profile.add("host_out")
            if v and d.host_i__ready.value:
                k += 1
                v = 0
                if k == n:
                    d.host_i__valid.value = 0
            if rdy and d.host_o__valid.value:
                raw = d.host_o__payload.value
                if not raw.is_resolvable:
                    raise AssertionError(f"host_o payload {raw} at cycle {cycles}")
                w = raw.to_unsigned()
                got.append(w)
                if finish is not None and finish(w):
                    done += 1
                if watch is not None and watch.feed(w):
                    d.host_i__valid.value = 0
                    d.host_o__ready.value = 0
                    d.abort.value = 1
                    await RisingEdge(d.clk)
                    cycles += 1
                    d.abort.value = 0
                    break
                if steps is not None:
                    se = mp.step_end_of(w)
                    if se is not None:
                        last_end[se[0]] = se[1]
                        allowed = min(last_end.values()) + mp.window
            if abort_after is not None and cycles >= abort_after:
                break
            if cycles >= max_cycles:
                raise AssertionError(f"no end after {max_cycles} cycles: {k} of {n} flits sent, {done} of "
                                     f"{target} final flits received (deadlock?); last received "
                                     f"{[hex(g) for g in got[-12:]]}")
        d.host_i__valid.value = 0
        self.sent = k
        return got, cycles


@cocotb.test()
async def test_images(dut):
    job = json.loads(os.environ["MESH_JOB"])
    net = model.load(job["net"])
    mp = map_network(net, job["width"], job["height"], neurons=job["neurons"], lanes=job["lanes"],
                     monitor=job["monitor"], window=job["window"])
    inputs = np.load(job["inputs"], allow_pickle=False)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    host = Host(dut, random.Random(job["seed"]), job["idle"], job["stall"])
    await host.reset()
    cfg = mp.config_flits()
    target = len(mp.placements) + mp.n_reporting
    if job.get("reset_after") is not None:
        await host.transfer(cfg)
        await host.transfer(mp.image_flits(inputs[0]), finish=mp.is_last_host_flit, target=target,
                            abort_after=int(job["reset_after"]))
        await host.reset()
    _, cfg_cycles = await host.transfer(cfg)
    dut._log.info(f"configured: {len(cfg)} flits in {cfg_cycles} cycles")
    times = [np.full((len(inputs), w.shape[1]), net.no_spike, dtype=np.int64) for w in mp.weights]
    horizons = [np.full((len(inputs), w.shape[1]), -1, dtype=np.int64) for w in mp.weights]
    early = bool(job.get("early_exit"))
    decided = np.full(len(inputs), -1, dtype=np.int64)
    cycles = np.zeros(len(inputs), dtype=np.int64)
    flits_in = np.zeros(len(inputs), dtype=np.int64)
    flits_out = np.zeros(len(inputs), dtype=np.int64)
    errors = []
    profile = Profile(dut, mp) if job.get("profile") else None
    for b, t in enumerate(inputs):
        groups = mp.image_steps(t)
        words = [w for _, g in groups for w in g]
        gate = None if mp.window is None else (mp, [s for s, g in groups for _ in g])
        watch = mp.decision_watch() if early else None
        got, cycles[b] = await host.transfer(words, finish=mp.is_last_host_flit, target=target, gate=gate,
                                           profile=profile, watch=watch)
        flits_in[b], flits_out[b] = host.sent, len(got)
        if watch is not None and watch.step is not None:
            decided[b] = watch.step
        if (b + 1) % 10 == 0 or b + 1 == len(inputs):
            dut._log.info(f"{b + 1} of {len(inputs)} images, last {cycles[b]} cycles")
        try:
            layers, horizon = mp.decode_prefix(got, complete=decided[b] < 0)
            for n, layer in enumerate(layers):
                if layer is not None:
                    times[n][b], horizons[n][b] = layer, horizon[n]
        except ProtocolError as e:
            errors.append(f"image {b}: {e}")
    out = {f"layer{n}": t for n, t in enumerate(times)}
    out.update({f"horizon{n}": h for n, h in enumerate(horizons)})
    if profile is not None:
        out["profile"] = np.array(json.dumps(profile.counts))
    np.savez(job["result"], cycles=cycles, cfg_cycles=np.int64(cfg_cycles), flits_in=flits_in, flits_out=flits_out,
             decided=decided, errors=np.array(errors if errors else [""]), **out)
