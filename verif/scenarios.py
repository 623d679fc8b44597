"""Test scenarios for a PE: one random layer + inputs per (scenario, seed), with the golden model's answer.

Pure Python/numpy; the same cases drive the Amaranth-simulator tests (tests/rtl/) and the cocotb
testbenches (verif/cocotb_pe.py). ``make_case(cfg, scenario, seed)`` is deterministic in its arguments, so
any failure is replayed from the printed scenario and seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import model
from host.codec import PECodec
from rtl import layouts as L
from rtl.config import PEConfig

__all__ = ["SCENARIOS", "Case", "make_case", "golden_times", "merge_sources", "skewed_merge"]

#: Scenario name -> what it stresses.
SCENARIOS = {
    "random": "random layer sizes, weights, thresholds and input times",
    "exact_threshold": "thresholds equal to V at a first-crossing step (V == theta exactly)",
    "silent": "unreachable thresholds and negative weights: many silent neurons",
    "simultaneous": "every input spikes in the same step",
    "extreme_weights": "weights only -2**(B-1) and 2**(B-1)-1",
    "spike_at_t_end": "inputs late in the window, neurons firing at t_end",
    "all_silent": "no input spikes at all",
    "full_fifos": "output backpressure 90 %: every FIFO fills up",
    "multi_source": "2..max_sources senders merged with skew, the defer FIFO in use",
}


@dataclass(frozen=True)
class Case:
    scenario: str
    seed: int
    weight: np.ndarray            # (n_in, n_out) int64
    threshold: np.ndarray         # (n_out,)
    t_end: int
    inputs: list                  # per inference: input times (n_in,)
    streams: list                 # per inference: event words for the ``i`` port
    sources: int
    neuron_base: int
    idle: float                   # probability of an idle cycle before each input / cfg word
    stall: float                  # probability of refusing an output per cycle
    expected: list                # per inference: golden spike times (n_out,)

    def cfg_words(self, cfg: PEConfig) -> list:
        """Configuration words that load this case's layer and registers."""
        return PECodec(cfg).layer_cfg_words(self.weight, self.threshold, neuron_base=self.neuron_base,
                                            sources=self.sources, t_end=self.t_end)


def golden_times(cfg: PEConfig, weight, threshold, t_end: int, inputs) -> np.ndarray:
    """model.run on a one-layer dense network with the PE's widths: (len(inputs), n_out) spike times."""
    net = model.Network.build(input_shape=(weight.shape[0],),
                              layers=[model.Dense(weight=np.asarray(weight), threshold=np.asarray(threshold))],
                              time_bits=cfg.time_bits, t_end=t_end, weight_bits=cfg.weight_bits,
                              threshold_bits=cfg.threshold_bits,
                              encoding=model.Encoding(t_in_max=min(31, t_end)))
    return model.run(net, np.asarray(inputs, dtype=np.int64)).times[0]


def merge_sources(cfg: PEConfig, times, t_end: int, sources: int, rng, defer_depth: int) -> list:
    """Input events of one inference sent by ``sources`` senders (inputs dealt at random), each sender
    step-ordered, merged at random with senders up to one step ahead, never more early events than
    ``defer_depth`` (the PE's defer FIFO) outstanding."""
    codec = PECodec(cfg)
    owner = rng.integers(0, sources, size=len(times))
    per = []
    for s in range(sources):
        ev = []
        for t in range(t_end + 1):
            idx = [int(i) for i in rng.permutation(np.flatnonzero((times == t) & (owner == s)))]
            ev += [(t, codec.spike(i, t)) for i in idx]
            ev.append((t, codec.step_end(t)))
        per.append(ev)
    pos = [0] * sources
    out = [codec.start()]
    cur, ends, early = 0, 0, 0
    while any(p < len(e) for p, e in zip(pos, per, strict=True)):
        options = []
        for s in range(sources):
            if pos[s] < len(per[s]):
                t = per[s][pos[s]][0]
                if t <= cur or (t == cur + 1 and early < defer_depth):
                    options.append(s)
        s = int(rng.choice(options))
        t, word = per[s][pos[s]]
        pos[s] += 1
        out.append(word)
        if t > cur:
            early += 1
        elif codec.decode_event(word).kind == L.EventKind.STEP_END:
            ends += 1
            if ends == sources:
                cur, ends = cur + 1, 0
                # Parked events of the new step replay; their STEP_ENDs count now.
                ends = sum(1 for p, e in zip(pos, per, strict=True) for k in range(p)
                           if e[k][0] == cur and codec.decode_event(e[k][1]).kind == L.EventKind.STEP_END)
                early = 0
                if ends == sources:
                    raise AssertionError("merge: a whole step parked (cannot happen with one step of skew)")
    return out


def skewed_merge(cfg, times, t_end, sources, rng, skew):
    """Per-sender step-ordered streams merged at random, senders up to ``skew`` steps ahead of the slowest."""
    codec = PECodec(cfg)
    owner = rng.integers(0, sources, size=len(times))
    per = []
    for s in range(sources):
        ev = []
        for t in range(t_end + 1):
            ev += [(t, codec.spike(int(i), t)) for i in rng.permutation(np.flatnonzero((times == t) & (owner == s)))]
            ev.append((t, codec.step_end(t)))
        per.append(ev)
    pos = [0] * sources
    done = [-1] * sources  # last step whose STEP_END each sender has sent
    out = [codec.start()]
    while any(p < len(e) for p, e in zip(pos, per, strict=True)):
        slowest = min(done)
        options = [s for s in range(sources) if pos[s] < len(per[s]) and per[s][pos[s]][0] <= slowest + 1 + skew]
        s = int(rng.choice(options))
        t, word = per[s][pos[s]]
        pos[s] += 1
        out.append(word)
        if codec.decode_event(word).kind == L.EventKind.STEP_END:
            done[s] = t
    return out


def _random_inputs(rng, n_in: int, t_end: int, lo: int = 0, hi: int | None = None, p_silent: float = 0.3):
    hi = t_end if hi is None else hi
    t = rng.integers(lo, hi + 1, size=n_in)
    t[rng.random(n_in) < p_silent] = 2 ** 62  # placeholder for NO_SPIKE, fixed by the caller
    return t


def make_case(cfg: PEConfig, scenario: str, seed: int, *, n_inferences: int = 2) -> Case:
    """The deterministic test case ``(scenario, seed)`` for a PE with ``cfg``."""
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario: {scenario!r} is not one of {', '.join(SCENARIOS)}")
    rng = np.random.default_rng([seed, list(SCENARIOS).index(scenario)])
    B = cfg.weight_bits
    wlo, whi = -(1 << (B - 1)), (1 << (B - 1)) - 1
    tmax = (1 << cfg.threshold_bits) - 1
    n_in = int(rng.integers(1, cfg.fan_in + 1))
    n_out = int(rng.integers(1, cfg.neurons + 1))
    t_end = int(rng.integers(max(1, cfg.max_t_end // 2), cfg.max_t_end + 1))
    idle, stall = float(rng.uniform(0, 0.5)), float(rng.uniform(0, 0.5))
    sources = 1
    neuron_base = int(rng.integers(0, (1 << cfg.index_bits) - n_out + 1))
    # Weights biased positive so most neurons fire inside the window.
    weight = np.clip(rng.integers(wlo, whi + 1, size=(n_in, n_out)) + whi // 4, wlo, whi)
    inputs = []
    for _ in range(n_inferences):
        inputs.append(_random_inputs(rng, n_in, t_end, hi=max(0, t_end * 2 // 3)))
    drive = max(1, n_in * whi // 8)
    threshold = rng.integers(1, min(tmax, drive * max(2, t_end // 3)) + 1, size=n_out)

    if scenario == "exact_threshold":
        t_in = np.where(inputs[0] > t_end, cfg.no_spike, inputs[0])
        steps = np.arange(t_end + 1)
        v = (np.where(t_in[None, :] < steps[:, None], steps[:, None] - t_in[None, :], 0)) @ weight  # (t, n_out)
        for j in range(n_out):
            run_max = np.maximum.accumulate(np.concatenate([[0], v[:-1, j]]))
            records = np.flatnonzero((v[:, j] > run_max) & (v[:, j] >= 1) & (v[:, j] <= tmax))
            if records.size:
                threshold[j] = v[int(rng.choice(records)), j]
    elif scenario == "silent":
        weight = np.clip(weight - whi // 2, wlo, whi)
        threshold = np.where(rng.random(n_out) < 0.5, tmax, threshold)
    elif scenario == "simultaneous":
        t0 = int(rng.integers(0, t_end))
        inputs = [np.full(n_in, t0) for _ in range(n_inferences)]
    elif scenario == "extreme_weights":
        weight = np.where(rng.random((n_in, n_out)) < 0.6, whi, wlo)
    elif scenario == "spike_at_t_end":
        inputs = [_random_inputs(rng, n_in, t_end, lo=max(0, t_end - 3)) for _ in range(n_inferences)]
        # Thresholds reached exactly at t_end by the late inputs (where possible).
        t_in = np.where(inputs[0] > t_end, cfg.no_spike, inputs[0])
        v_end = np.where(t_in < t_end, t_end - t_in, 0) @ weight
        threshold = np.where((v_end >= 1) & (v_end <= tmax), v_end, threshold)
    elif scenario == "all_silent":
        inputs = [np.full(n_in, 2 ** 62) for _ in range(n_inferences)]
    elif scenario == "full_fifos":
        stall, idle = 0.9, 0.0
        threshold = np.maximum(1, threshold // 8)  # many output spikes
    elif scenario == "multi_source":
        sources = int(rng.integers(2, cfg.max_sources + 1))

    threshold = np.clip(threshold, 1, tmax).astype(np.int64)
    weight = weight.astype(np.int64)
    inputs = [np.where(t > t_end, cfg.no_spike, t).astype(np.int64) for t in inputs]
    if sources > 1:
        streams = [merge_sources(cfg, t, t_end, sources, rng, cfg.defer_depth) for t in inputs]
    else:
        streams = [PECodec(cfg).input_events(t, t_end, rng=rng) for t in inputs]
    expected = list(golden_times(cfg, weight, threshold, t_end, inputs))
    return Case(scenario=scenario, seed=seed, weight=weight, threshold=threshold, t_end=t_end, inputs=inputs,
                streams=streams, sources=sources, neuron_base=neuron_base, idle=idle, stall=stall,
                expected=expected)
