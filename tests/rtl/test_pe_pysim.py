"""The whole PE in the Amaranth simulator: every scenario of verif/scenarios.py bit-exact against model.run
under random idle cycles and backpressure, and the cycle model of docs/pe.md."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from amaranth.sim import Simulator

from host.codec import PECodec, pack, unpack
from rtl import layouts as L
from rtl.config import PEConfig
from rtl.pe import PE
from verif.pysim_pe import accept_cycles, run_case, run_streams, stream_get, stream_put
from verif.scenarios import SCENARIOS, golden_times, make_case, skewed_merge
from verif.scoreboard import first_mismatch

CONFIGS = {
    "lanes2": PEConfig(neurons=8, fan_in=12, lanes=2, time_bits=4, max_sources=3, defer_depth=4, fifo_depth=2),
    "lanes1": PEConfig(neurons=3, fan_in=9, lanes=1, weight_bits=4, time_bits=4, threshold_bits=8, max_sources=2),
}
CONFIGS |= {f"{name}_stage": dataclasses.replace(cfg, request_stage=True) for name, cfg in CONFIGS.items()}
CONFIGS["lanes2_bram"] = dataclasses.replace(CONFIGS["lanes2_stage"], defer_bram=True)  # registered defer read
CONFIGS["lanes2_grouped"] = dataclasses.replace(CONFIGS["lanes2_stage"], sweep_group=2)  # 4 words: 2 groups
# 3 words in groups of 2 and 1, no pooling hardware (as the one-PE board top is built)
CONFIGS["lanes1_grouped_nopool"] = dataclasses.replace(CONFIGS["lanes1"], sweep_group=2, pooling=False)
# the one-PE iCEBreaker build: request stage, grouped sweep, no pooling, the next event fetched in its own cycle,
# the compute stage, the registered defer read
CONFIGS["lanes1_board_ice40"] = dataclasses.replace(CONFIGS["lanes1_grouped_nopool"], request_stage=True,
                                                    fetch_stage=True, compute_stage=True, defer_bram=True)
# a ULX3S mesh PE: request stage, registered defer read, the registered input stage in front of LOAD
CONFIGS["lanes2_board_ecp5"] = dataclasses.replace(CONFIGS["lanes2_stage"], defer_bram=True, input_stage=True)
CONFIGS["lanes2_fetch"] = dataclasses.replace(CONFIGS["lanes2"], fetch_stage=True)
# request stage and the registered products of COMPUTE (as the iCEBreaker builds COMPUTE)
CONFIGS["lanes2_compute_stage"] = dataclasses.replace(CONFIGS["lanes2_stage"], compute_stage=True)
# the weight stream (the mesh planner's PEs): 3 weights per stream word at 2 lanes, 4 at 1 lane
CONFIGS["lanes2_stream"] = dataclasses.replace(CONFIGS["lanes2"], cfg_stream=True)
CONFIGS["lanes1_stream"] = dataclasses.replace(CONFIGS["lanes1"], cfg_stream=True)
# LOAD's pending FIFO (as board builds make PEs of many words, fpga.boards.board_config): 2 entries, fewer than
# the pipeline holds, on the request-stage PE; 3 with the grouped sweep, the registered input and defer reads,
# STORE's window bits in LUT RAM (pool_ram) and the fetch stage
CONFIGS["lanes2_fifo"] = dataclasses.replace(CONFIGS["lanes2_stage"], pending_fifo=2)
CONFIGS["lanes1_board_big"] = dataclasses.replace(CONFIGS["lanes1_stage"], pending_fifo=3, sweep_group=2,
                                                  defer_bram=True, input_stage=True, pool_ram=True, fetch_stage=True)
CONFIGS["lanes2_pool_ram"] = dataclasses.replace(CONFIGS["lanes2"], pool_ram=True)


@pytest.mark.parametrize("seed", [0])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("config", list(CONFIGS))
def test_pe_matches_golden_model(config, scenario, seed):
    cfg = CONFIGS[config]
    print(f"replay: config={config} scenario={scenario} seed={seed}")
    case = make_case(cfg, scenario, seed)
    got, _ = run_case(cfg, case)
    for k, (g, w) in enumerate(zip(got, case.expected, strict=True)):
        msg = first_mismatch(g, w, cfg.no_spike)
        assert msg is None, f"inference {k}: {msg}"


def cycles_between_events(cfg: PEConfig, events: list[int], n_cfg_neurons: int, weight: int = 0) -> np.ndarray:
    """Cycle numbers at which the PE accepted each event (o always ready, no idle input); every weight is
    ``weight`` and every threshold the largest (nothing fires)."""
    words = PECodec(cfg).layer_cfg_words(np.full((16, n_cfg_neurons), weight, dtype=np.int64),
                                   np.full(n_cfg_neurons, (1 << cfg.threshold_bits) - 1), t_end=cfg.max_t_end)
    return np.diff(accept_cycles(cfg, words, events))


def cycle_events(cfg: PEConfig) -> list[int]:
    """The cycle-model stimulus: START, 12 SPIKE events at t = 0 (inputs 0..11), STEP_END of steps 0..5."""
    lay = L.event_layout(cfg)
    events = [pack(lay, kind=L.EventKind.START)]
    events += [pack(lay, kind=L.EventKind.SPIKE, index=i % 16, time=0) for i in range(12)]
    return events + [pack(lay, kind=L.EventKind.STEP_END, time=t) for t in range(6)]


@pytest.mark.parametrize("neurons, lanes, stage", [(4, 4, False), (16, 4, False), (32, 4, False), (16, 1, False),
                                                   (64, 8, False), (4, 4, True), (16, 4, True), (32, 4, True)])
def test_cycle_model(neurons, lanes, stage):
    """docs/pe.md: a SPIKE event takes max(W, P) cycles (P = 5, or 6 with the request stage); a step sweeps only
    the rising words (a neuron in use, not fired, S > 0) and ends with a MARK: max(W + 1, P) cycles when every
    word is rising, 1 cycle when none is."""
    cfg = PEConfig(neurons=neurons, fan_in=16, lanes=lanes, time_bits=4, request_stage=stage)
    P = 6 if stage else 5
    assert cfg.pipeline_latency == P
    events = cycle_events(cfg)
    W = neurons // lanes
    rising = cycles_between_events(cfg, events, neurons, weight=1)
    assert list(rising[1:12]) == [max(W, P)] * 11      # SPIKE after SPIKE
    assert list(rising[14:]) == [max(W + 1, P)] * 4    # sweep of every word + MARK, after a step
    assert rising[13] - max(W + 1, P) in (0, 1)         # (the first, after a SPIKE, may wait one more cycle)
    quiet = cycles_between_events(cfg, events, neurons, weight=0)
    assert list(quiet[1:12]) == [max(W, P)] * 11
    assert list(quiet[14:]) == [1] * 4                  # no rising word: the MARK alone


@pytest.mark.parametrize("neurons, lanes, group", [(32, 1, 8), (30, 1, 8), (64, 4, 4), (16, 4, 2)])
def test_cycle_model_grouped_sweep(neurons, lanes, group):
    """docs/pe.md "Grouped sweep": with every word rising a sweep takes W cycles for the words, one per
    group it enters after the first, one that finds nothing left and one for the MARK, max(W + NG + 1, P) in
    all (NG = ceil(W / G) groups); a sweep with no rising word takes 3 (the empty group, the cycle that finds
    no later group, the MARK); SPIKE events are unchanged."""
    cfg = PEConfig(neurons=neurons, fan_in=16, lanes=lanes, time_bits=4, request_stage=True, sweep_group=group)
    P, W, NG = 6, neurons // lanes, cfg.sweep_groups
    assert NG == -(-W // group) > 1
    events = cycle_events(cfg)
    rising = cycles_between_events(cfg, events, neurons, weight=1)
    assert list(rising[1:12]) == [max(W, P)] * 11
    assert list(rising[14:]) == [max(W + NG + 1, P)] * 4
    quiet = cycles_between_events(cfg, events, neurons, weight=0)
    assert list(quiet[14:]) == [3] * 4


@pytest.mark.parametrize("neurons, lanes, stage", [(32, 1, True), (16, 4, True), (4, 4, True), (16, 2, False)])
def test_cycle_model_fetch_stage(neurons, lanes, stage):
    """PEConfig.fetch_stage: the next event is taken in a cycle of its own after an event's last word, so a
    SPIKE event takes max(W + 1, P) cycles; sweeps (their MARK still takes the next event) are unchanged."""
    cfg = PEConfig(neurons=neurons, fan_in=16, lanes=lanes, time_bits=4, request_stage=stage, fetch_stage=True)
    P, W = cfg.pipeline_latency, neurons // lanes
    events = cycle_events(cfg)
    rising = cycles_between_events(cfg, events, neurons, weight=1)
    assert list(rising[1:12]) == [max(W + 1, P)] * 11
    assert list(rising[14:]) == [max(W + 1, P)] * 4
    quiet = cycles_between_events(cfg, events, neurons, weight=0)
    assert list(quiet[1:12]) == [max(W + 1, P)] * 11
    assert list(quiet[14:]) == [1] * 4


@pytest.mark.parametrize("neurons, lanes, stage", [(32, 1, True), (16, 4, True), (4, 4, True), (16, 2, False)])
def test_cycle_model_compute_stage(neurons, lanes, stage):
    """PEConfig.compute_stage: one cycle more of pipeline latency (P = 6, or 7 with the request stage), the
    same throughput: a SPIKE event takes max(W, P) cycles, a sweep of every word max(W + 1, P)."""
    cfg = PEConfig(neurons=neurons, fan_in=16, lanes=lanes, time_bits=4, request_stage=stage, compute_stage=True)
    P, W = cfg.pipeline_latency, neurons // lanes
    assert P == 6 + stage
    events = cycle_events(cfg)
    rising = cycles_between_events(cfg, events, neurons, weight=1)
    assert list(rising[1:12]) == [max(W, P)] * 11
    assert list(rising[14:]) == [max(W + 1, P)] * 4
    quiet = cycles_between_events(cfg, events, neurons, weight=0)
    assert list(quiet[1:12]) == [max(W, P)] * 11
    assert list(quiet[14:]) == [1] * 4


@pytest.mark.parametrize("stage", [False, True])
def test_backpressure_fills_every_fifo(stage):
    """With ``o`` refused for a while every FIFO of the pipeline (the request stage too) becomes full, and the
    result stays exact."""
    cfg = PEConfig(neurons=16, fan_in=6, lanes=2, time_bits=4, fifo_depth=2, request_stage=stage)
    rng = np.random.default_rng(0)
    weight = rng.integers(20, 100, size=(6, 16))
    threshold = rng.integers(1, 200, size=16)
    t_end = cfg.max_t_end
    times = np.array([0, 0, 1, 2, cfg.no_spike, 3])
    want = golden_times(cfg, weight, threshold, t_end, [times])[0]
    dut = PE(cfg)
    sim = Simulator(dut)
    levels = {name: 0 for name in dut.fifos}
    out = []
    lay = L.event_layout(cfg)

    async def feed(ctx):
        for w in PECodec(cfg).layer_cfg_words(weight, threshold, t_end=t_end):
            await stream_put(ctx, dut.cfg, w)
        for e in PECodec(cfg).input_events(times, t_end):
            await stream_put(ctx, dut.i, e)

    async def drain(ctx):
        for _ in range(400):  # refuse everything at first
            await ctx.tick()
        words = []
        while True:
            words.append(await stream_get(ctx, dut.o))
            e = unpack(lay, words[-1])
            if e["kind"] == L.EventKind.STEP_END and e["time"] == t_end:
                break
        out.append(PECodec(cfg).decode_output(words, 16, t_end))

    names = list(dut.fifos)

    async def watch(ctx):
        async for _, _, *lv in ctx.tick().sample(*(dut.fifos[n].level for n in names)):
            for name, level in zip(names, lv, strict=True):
                levels[name] = max(levels[name], level)

    sim.add_clock(1e-8)
    sim.add_testbench(feed)
    sim.add_testbench(drain)
    sim.add_process(watch)
    sim.run()
    assert levels == {name: 2 for name in dut.fifos}
    assert ("request" in levels) == stage
    assert first_mismatch(out[0], want, cfg.no_spike) is None


@pytest.mark.parametrize("seed, bram", [(0, False), (1, False), (0, True)])
def test_senders_two_steps_ahead(seed, bram):
    """Several senders, some two steps ahead of the slowest (defer FIFO parks events again on replay):
    still bit-exact, with the defer FIFO's read combinational or registered. Merges that would overflow the
    defer FIFO are redrawn."""
    print(f"seed={seed} defer_bram={bram}")
    cfg = PEConfig(neurons=8, fan_in=10, lanes=2, time_bits=4, defer_depth=16, max_sources=3, defer_bram=bram)
    rng = np.random.default_rng(seed)
    t_end = cfg.max_t_end
    weight = rng.integers(-40, 100, size=(cfg.fan_in, cfg.neurons))
    threshold = rng.integers(1, 400, size=cfg.neurons)
    times = rng.integers(0, 8, size=cfg.fan_in)
    sources = 3
    streams = [skewed_merge(cfg, times, t_end, sources, rng, skew=2)]
    want = golden_times(cfg, weight, threshold, t_end, [times])[0]
    words = PECodec(cfg).layer_cfg_words(weight, threshold, sources=sources, t_end=t_end)
    got, _ = run_streams(cfg, words, streams, n_out=cfg.neurons, t_end=t_end, seed=seed, idle=0.2, stall=0.3)
    assert first_mismatch(got[0], want, cfg.no_spike) is None
