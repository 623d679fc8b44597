"""cocotb testbench of the generated PE Verilog (loaded by the simulator; launched by verif/runner.py).

Configuration comes from the environment (set by the runner): ``PE_CONFIG`` (JSON of PEConfig fields),
``PE_SCENARIOS`` (comma-separated names of verif.scenarios.SCENARIOS), ``PE_SEEDS`` ("A-B" inclusive or
"A,B,C"), ``PE_RESULT`` (a JSON file the summary is written to). Every case is compared spike for spike with
model.run; the test fails after all seeds ran, naming the first mismatching scenario, seed and neuron.
"""

from __future__ import annotations

import json
import os
import random
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

import model
from host.codec import PECodec, ProtocolError
from rtl import layouts as L
from rtl.config import PEConfig
from verif.scenarios import SCENARIOS, make_case
from verif.scoreboard import first_mismatch
from verif.single_pe import layer_slices, pe_layers


def parse_seeds(text: str) -> list[int]:
    """"0-99" -> 0..99; "3,7" -> [3, 7]."""
    seeds = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        seeds += list(range(int(a), int(b) + 1)) if b else [int(a)]
    return seeds


class TB:
    """Owns the clock, reset and the stream drivers/monitor of one PE instance."""

    def __init__(self, dut, cfg: PEConfig):
        self.dut, self.cfg = dut, cfg
        self.codec = PECodec(cfg)
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())

    async def reset(self):
        d = self.dut
        for p in ("cfg", "i"):
            getattr(d, f"{p}__valid").value = 0
            getattr(d, f"{p}__payload").value = 0
        d.o__ready.value = 0
        d.rst.value = 1
        for _ in range(3):
            await RisingEdge(d.clk)
        d.rst.value = 0
        await RisingEdge(d.clk)

    async def send(self, port: str, words, rng: random.Random, idle: float):
        """Drive ``words`` on stream ``port`` (valid held until accepted), idle cycles with probability ``idle``."""
        valid = getattr(self.dut, f"{port}__valid")
        payload = getattr(self.dut, f"{port}__payload")
        ready = getattr(self.dut, f"{port}__ready")
        k, v = 0, 0
        while True:
            if k < len(words) and (v or rng.random() >= idle):
                v = 1
                payload.value = words[k]
            else:
                v = 0
            valid.value = v
            if k >= len(words):
                return
            await RisingEdge(self.dut.clk)
            if v and ready.value:
                k, v = k + 1, 0

    async def receive(self, t_end: int, n_inferences: int, rng: random.Random, stall: float, out: list):
        """Collect ``n_inferences`` output event lists (each ends with STEP_END(t_end)) under backpressure."""
        d = self.dut
        words = []
        while len(out) < n_inferences:
            r = int(rng.random() >= stall)
            d.o__ready.value = r
            await RisingEdge(d.clk)
            if r and d.o__valid.value:
                w = d.o__payload.value.to_unsigned()
                words.append(w)
                e = self.codec.decode_event(w)
                if e.kind == L.EventKind.STEP_END and e.time == t_end:
                    out.append(words)
                    words = []
        d.o__ready.value = 0

    async def run_case(self, case, *, max_cycles: int = int(os.environ.get("PE_MAX_CYCLES", "200000"))):
        """Configure the case's layer, run its inferences; returns (outputs as spike-time arrays, cycles)."""
        rng = random.Random(case.seed)
        start = cocotb.utils.get_sim_time("ns")
        await self.send("cfg", case.cfg_words(self.cfg), rng, case.idle)
        out: list = []
        rx = cocotb.start_soon(self.receive(case.t_end, len(case.streams), rng, case.stall, out))
        tx = cocotb.start_soon(self.send("i", [w for s in case.streams for w in s], rng, case.idle))
        cycles = 0
        while not (rx.done() and tx.done()):
            await RisingEdge(self.dut.clk)
            cycles += 1
            if cycles > max_cycles:
                self.dut._log.error("stuck: %d inferences received, input sender done: %s", len(out), tx.done())
                raise TimeoutError(f"scenario {case.scenario} seed {case.seed}: no end after {max_cycles} cycles")
        n_out = case.weight.shape[1]
        results = [self.codec.decode_output(w, n_out, case.t_end, neuron_base=case.neuron_base) for w in out]
        total = int((cocotb.utils.get_sim_time("ns") - start) // 10)
        return results, total


async def run_scenarios(dut, cfg: PEConfig, scenarios: list[str], seeds: list[int]) -> dict:
    """Every (scenario, seed): build the case, simulate, compare with the golden model."""
    tb = TB(dut, cfg)
    await tb.reset()
    summary = {s: {"seeds": 0, "mismatches": 0, "first": None} for s in scenarios}
    wall = time.perf_counter()
    cycles = 0
    for scenario in scenarios:
        for seed in seeds:
            case = make_case(cfg, scenario, seed)
            try:
                got, n = await tb.run_case(case)
                cycles += n
                msg = None
                for k, (g, w) in enumerate(zip(got, case.expected, strict=True)):
                    m = first_mismatch(g, w, cfg.no_spike)
                    if m:
                        msg = f"inference {k}: {m}"
                        break
            except ProtocolError as e:
                msg = f"protocol: {e}"
            s = summary[scenario]
            s["seeds"] += 1
            if msg:
                s["mismatches"] += 1
                s["first"] = s["first"] or f"seed {seed}: {msg}"
                dut._log.error("MISMATCH scenario %s seed %d: %s", scenario, seed, msg)
                await tb.reset()
    summary["_cycles"] = cycles
    summary["_wall_s"] = round(time.perf_counter() - wall, 2)
    return summary


@cocotb.test()
async def test_scenarios(dut):
    """All scenarios x seeds from the environment; fails on the first mismatch found (after running all)."""
    cfg = PEConfig(**json.loads(os.environ["PE_CONFIG"]))
    scenarios = os.environ.get("PE_SCENARIOS", ",".join(SCENARIOS)).split(",")
    seeds = parse_seeds(os.environ.get("PE_SEEDS", "0-1"))
    dut._log.info("scenarios %s seeds %s..%s (replay: PE_SEEDS=<seed> PE_SCENARIOS=<name>)", scenarios,
                  seeds[0], seeds[-1])
    summary = await run_scenarios(dut, cfg, scenarios, seeds)
    if os.environ.get("PE_RESULT"):
        with open(os.environ["PE_RESULT"], "w") as f:
            json.dump(summary, f, indent=1)
    bad = [f"{s}: {v['mismatches']}/{v['seeds']} ({v['first']})" for s, v in summary.items()
           if not s.startswith("_") and v["mismatches"]]
    assert not bad, "mismatches: " + "; ".join(bad)
    np.testing.assert_(summary["_cycles"] > 0)


async def run_network_layers(tb: TB, net, inputs: np.ndarray, rng: random.Random) -> tuple[dict, int]:
    """verif/single_pe.py in the simulator: every layer slice through the PE, all images per slice."""
    cfg, codec = tb.cfg, tb.codec
    t = inputs
    out, cycles = {}, 0
    for n, job in enumerate(pe_layers(net)):
        if job[0] == "pool":
            t = model.maxpool_times(t, job[1])
        else:
            _, weight, threshold = job
            times = np.full((len(t), weight.shape[1]), cfg.no_spike, dtype=np.int64)
            for start, stop in layer_slices(cfg, weight):
                words = codec.layer_cfg_words(weight[:, start:stop], threshold[start:stop], neuron_base=start,
                                              t_end=net.t_end)
                await tb.send("cfg", words, rng, 0.1)
                streams = [codec.input_events(x, net.t_end) for x in t]
                res: list = []
                rx = cocotb.start_soon(tb.receive(net.t_end, len(streams), rng, 0.1, res))
                await tb.send("i", [w for s in streams for w in s], rng, 0.1)
                await rx
                for b, words_out in enumerate(res):
                    times[b, start:stop] = codec.decode_output(words_out, stop - start, net.t_end,
                                                               neuron_base=start)
                cycles = int(cocotb.utils.get_sim_time("ns") // 10)
            t = times
        out[f"layer{n}"] = t
    return out, cycles


@cocotb.test()
async def test_network(dut):
    """verif/single_pe.py: run PE_NET on the input times in PE_INPUTS, write every layer to PE_RESULT."""
    cfg = PEConfig(**json.loads(os.environ["PE_CONFIG"]))
    net = model.load(os.environ["PE_NET"])
    inputs = np.load(os.environ["PE_INPUTS"])
    tb = TB(dut, cfg)
    await tb.reset()
    out, cycles = await run_network_layers(tb, net, inputs, random.Random(int(os.environ.get("PE_SEED", "0"))))
    np.savez(os.environ["PE_RESULT"], cycles=np.int64(cycles), **out)
