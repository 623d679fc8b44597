"""Host-side driver of a PE: the same word/event encoding for the Amaranth simulator and cocotb.

Pure Python (numpy + rtl.layouts): packs configuration words and input events into the integers that
travel on the ``cfg`` and ``i`` streams, and decodes the ``o`` stream into spike times, checking the
output protocol of docs/pe.md on the way.
"""

from __future__ import annotations

import numpy as np

from rtl import layouts as L
from rtl.config import PEConfig

__all__ = ["pack", "unpack", "layer_cfg_words", "input_events", "decode_output", "first_mismatch", "ProtocolError"]


class ProtocolError(AssertionError):
    """The PE's output stream broke the event protocol of docs/pe.md."""


def pack(layout, **fields) -> int:
    """The integer of a payload of ``layout`` with the given fields (enums by member or value)."""
    word = 0
    for name, value in fields.items():
        f = layout[name]
        value = int(value.value if hasattr(value, "value") else value)
        word |= (value & ((1 << f.width) - 1)) << f.offset
    return word


def unpack(layout, word: int) -> dict:
    """Field name -> unsigned integer of a packed payload."""
    return {name: (int(word) >> f.offset) & ((1 << f.width) - 1) for name, f in layout}


def layer_cfg_words(cfg: PEConfig, weight: np.ndarray, threshold: np.ndarray, *, neuron_base: int = 0,
                    sources: int = 1, t_end: int | None = None) -> list[int]:
    """Configuration words that load one layer slice (``weight`` (n_in, n), ``threshold`` (n,)) and set the
    registers. Every value is range-checked (output indices neuron_base + j must fit index_bits); a
    ValueError names the field and the limit."""
    weight = np.asarray(weight, dtype=np.int64)
    threshold = np.asarray(threshold, dtype=np.int64)
    n_in, n = weight.shape
    t_end = cfg.max_t_end if t_end is None else t_end
    checks = [("weight rows", n_in, 1, cfg.fan_in), ("neurons", n, 1, cfg.neurons),
              ("t_end", t_end, 1, cfg.max_t_end), ("sources", sources, 1, cfg.max_sources),
              ("neuron_base", neuron_base, 0, (1 << cfg.index_bits) - n)]
    for name, v, lo, hi in checks:
        if not lo <= v <= hi:
            raise ValueError(f"{name}: {v} is outside the allowed range {lo}..{hi} of this PE")
    wlo, whi = -(1 << (cfg.weight_bits - 1)), (1 << (cfg.weight_bits - 1)) - 1
    if weight.size and (weight.min() < wlo or weight.max() > whi):
        raise ValueError(f"weight: values must lie in {wlo}..{whi}")
    if threshold.shape != (n,) or threshold.min() < 1 or threshold.max() >= 1 << cfg.threshold_bits:
        raise ValueError(f"threshold: expected {n} values in 1..{(1 << cfg.threshold_bits) - 1}")
    lay = L.cfg_layout(cfg)
    words = [pack(lay, target=L.CfgTarget.REG, row=L.Reg.ACTIVE.value, data=n),
             pack(lay, target=L.CfgTarget.REG, row=L.Reg.NEURON_BASE.value, data=neuron_base),
             pack(lay, target=L.CfgTarget.REG, row=L.Reg.SOURCES.value, data=sources),
             pack(lay, target=L.CfgTarget.REG, row=L.Reg.T_END.value, data=t_end)]
    for j in range(n):
        words.append(pack(lay, target=L.CfgTarget.THRESHOLD, neuron=j, data=int(threshold[j])))
    for i in range(n_in):
        for j in range(n):
            words.append(pack(lay, target=L.CfgTarget.WEIGHT, row=i, neuron=j, data=int(weight[i, j])))
    return words


def input_events(cfg: PEConfig, times: np.ndarray, t_end: int, *, rng: np.random.Generator | None = None,
                 sources: int = 1) -> list[int]:
    """START, then per step t = 0..t_end the SPIKE(i, t) of every input i with ``times[i] == t`` (shuffled
    within the step when ``rng`` is given), then ``sources`` STEP_END(t) markers."""
    lay = L.event_layout(cfg)
    times = np.asarray(times, dtype=np.int64)
    events = [pack(lay, kind=L.EventKind.START)]
    order = np.argsort(times, kind="stable")
    by_t = {}
    for i in order:
        t = int(times[i])
        if t <= t_end:
            by_t.setdefault(t, []).append(int(i))
    for t in range(t_end + 1):
        idx = by_t.get(t, [])
        if rng is not None:
            idx = list(rng.permutation(idx))
        events += [pack(lay, kind=L.EventKind.SPIKE, index=i, time=t) for i in idx]
        events += [pack(lay, kind=L.EventKind.STEP_END, time=t)] * sources
    return events


def decode_output(cfg: PEConfig, words: list[int], n_out: int, t_end: int, *, neuron_base: int = 0) -> np.ndarray:
    """Spike times (n_out,) from one inference's output words; checks the protocol of docs/pe.md:
    STEP_END(0), then per t = 1..t_end the spikes at t (each neuron at most once, ascending index within a
    step is not required) and STEP_END(t); nothing else."""
    lay = L.event_layout(cfg)
    out = np.full(n_out, cfg.no_spike, dtype=np.int64)
    step = -1
    for k, w in enumerate(words):
        e = unpack(lay, w)
        kind = L.EventKind(e["kind"])
        if kind == L.EventKind.STEP_END:
            if e["time"] != step + 1:
                raise ProtocolError(f"output event {k}: STEP_END({e['time']}) after step {step}")
            step += 1
        elif kind == L.EventKind.SPIKE:
            j = e["index"] - neuron_base
            if e["time"] != step + 1 or step < 0:
                raise ProtocolError(f"output event {k}: SPIKE at {e['time']} while step {step + 1} is open")
            if not 0 <= j < n_out:
                raise ProtocolError(f"output event {k}: SPIKE of neuron index {e['index']} outside the layer")
            if out[j] != cfg.no_spike:
                raise ProtocolError(f"output event {k}: neuron {j} spikes twice ({out[j]} and {e['time']})")
            out[j] = e["time"]
        else:
            raise ProtocolError(f"output event {k}: unexpected {kind.name}")
    if step != t_end:
        raise ProtocolError(f"output ended after STEP_END({step}), expected STEP_END({t_end})")
    return out


def first_mismatch(got: np.ndarray, want: np.ndarray, no_spike: int) -> str | None:
    """None if equal, else a message naming the first differing neuron."""
    diff = np.flatnonzero(np.asarray(got) != np.asarray(want))
    if diff.size == 0:
        return None
    j = int(diff[0])

    def fmt(t):
        return "silent" if t == no_spike else f"t={t}"
    return (f"neuron {j}: PE {fmt(int(got[j]))}, golden model {fmt(int(want[j]))} "
            f"({diff.size} of {len(want)} neurons differ)")
