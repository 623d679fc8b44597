"""The one codec between numpy and the stream ports: PE events, PE configuration words, mesh flits and network
interface words, all packed and unpacked through the Amaranth layouts of rtl/layouts.py and rtl/noc_layouts.py
(``Layout.const(...).as_bits()``, ``Layout.from_bits(...)``), and the one checked decoder of output event
streams (:class:`StreamCheck`, one set of protocol-error messages).

The same integers travel on the PE's ``cfg`` / ``i`` / ``o`` streams and the mesh's host port in the Amaranth
simulator, under cocotb and over the board link.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from amaranth.hdl import Shape
from amaranth.lib import data

from rtl import layouts as L
from rtl.config import PEConfig
from rtl.mesh import ni_value_bits
from rtl.noc_layouts import FlitKind, NiReg, NocConfig, flit_layout, ni_cfg_layout

__all__ = ["ProtocolError", "pack", "unpack", "Event", "PECodec", "HostFlit", "FlitCodec", "StreamCheck"]


class ProtocolError(Exception):
    """An output stream broke the event protocol of docs/pe.md / docs/noc.md (one line naming the event)."""


def _field_bits(shape) -> int:
    return Shape.cast(shape).width


def pack(layout: data.Layout, **fields) -> int:
    """The integer of a payload of ``layout`` with the given fields (enums by member or value; fields left out
    are 0). Every value must fit its field: a ValueError names the field otherwise (no silent truncation)."""
    init = {}
    for name, value in fields.items():
        shape = layout[name].shape
        v = int(value.value if hasattr(value, "value") else value)
        width = _field_bits(shape)
        if not 0 <= v < 1 << width:
            raise ValueError(f"{name}: {v} does not fit the {width}-bit field")
        # A nested layout (a token inside a pipeline word, a lane array) is given as its packed integer.
        init[name] = shape.from_bits(v) if isinstance(shape, data.Layout) else value
    return layout.const(init).as_bits()


def unpack(layout: data.Layout, word: int) -> data.Const:
    """A view of a packed payload: ``view.kind`` (enum member for enum fields), ``view.index`` (int) ..."""
    return layout.from_bits(int(word))


def _twos(value: int, bits: int) -> int:
    """Two's complement of a signed value in ``bits`` bits (weights travel in unsigned data fields)."""
    return int(value) & ((1 << bits) - 1)


class Event(NamedTuple):
    """A decoded PE event (``index`` and ``time`` as unsigned integers)."""

    kind: L.EventKind
    index: int
    time: int


class PECodec:
    """Events and configuration words of a PE with ``cfg``.

    Raises
    ------
    ValueError
        A value outside the PE's range: one line naming the field and its limits.
    """

    def __init__(self, cfg: PEConfig):
        if not isinstance(cfg, PEConfig):
            raise TypeError(f"cfg: expected a PEConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.event_layout = L.event_layout(cfg)
        self.cfg_layout = L.cfg_layout(cfg)

    # ---- events ----
    def start(self) -> int:
        return pack(self.event_layout, kind=L.EventKind.START)

    def spike(self, index: int, time: int) -> int:
        return pack(self.event_layout, kind=L.EventKind.SPIKE, index=index, time=time)

    def step_end(self, time: int) -> int:
        return pack(self.event_layout, kind=L.EventKind.STEP_END, time=time)

    def decode_event(self, word: int) -> Event:
        e = unpack(self.event_layout, word)
        return Event(e.kind, int(e.index), int(e.time))

    def steps(self, times: np.ndarray, t_end: int, *, rng: np.random.Generator | None = None
              ) -> list[tuple[int, list[int]]]:
        """Per step t = 0..t_end: (t, the SPIKE words of every input ``i`` with ``times[i] == t``), inputs in
        index order (shuffled within the step when ``rng`` is given). Inputs after t_end never spike."""
        times = np.asarray(times, dtype=np.int64).reshape(-1)
        by_t: dict[int, list[int]] = {}
        for i in np.argsort(times, kind="stable"):
            if times[i] <= t_end:
                by_t.setdefault(int(times[i]), []).append(int(i))
        out = []
        for t in range(t_end + 1):
            idx = by_t.get(t, [])
            if rng is not None:
                idx = [int(i) for i in rng.permutation(idx)]
            out.append((t, [self.spike(i, t) for i in idx]))
        return out

    def input_events(self, times: np.ndarray, t_end: int, *, rng: np.random.Generator | None = None,
                     sources: int = 1) -> list[int]:
        """The ``i`` stream of one inference: START, then per step t = 0..t_end its SPIKEs (:meth:`steps`) and
        ``sources`` STEP_END(t) markers."""
        events = [self.start()]
        for t, spikes in self.steps(times, t_end, rng=rng):
            events += spikes + [self.step_end(t)] * sources
        return events

    # ---- configuration ----
    def reg(self, reg: L.Reg, value: int) -> int:
        return pack(self.cfg_layout, target=L.CfgTarget.REG, row=reg.value, data=value)

    def threshold(self, neuron: int, value: int) -> int:
        return pack(self.cfg_layout, target=L.CfgTarget.THRESHOLD, neuron=neuron, data=value)

    def weight_word(self, row: int, neuron: int, values) -> int:
        """One WEIGHT word: the weights ``values`` (at most ``cfg_weights``; missing ones get 0) of input ``row``
        to neurons ``neuron, neuron + 1, ...``; ``neuron`` must be a multiple of ``cfg_weights``."""
        cfg = self.cfg
        g = cfg.cfg_weights
        values = [int(v) for v in values]
        if neuron % g or not 1 <= len(values) <= g:
            raise ValueError(f"weight word: neuron {neuron} must be a multiple of cfg_weights = {g} and 1..{g} "
                             f"weights given, got {len(values)}")
        self._check_weight_range(min(values), max(values))
        data = 0
        for k, v in enumerate(values):
            data |= _twos(v, cfg.weight_bits) << (k * cfg.weight_bits)
        return pack(self.cfg_layout, target=L.CfgTarget.WEIGHT, row=row, neuron=neuron, data=data)

    def weight_matrix_words(self, weight: np.ndarray) -> list[int]:
        """The WEIGHT words of a weight matrix (rows = inputs, columns = neurons 0, 1, ...): one word per row
        and group of ``cfg_weights`` neurons (``ceil(columns / cfg_weights)`` words per row)."""
        weight = np.asarray(weight, dtype=np.int64)
        g = self.cfg.cfg_weights
        return [self.weight_word(i, j, weight[i, j:j + g]) for i in range(weight.shape[0])
                for j in range(0, weight.shape[1], g)]

    def weight_stream(self, words: np.ndarray, row_words: int) -> list[int]:
        """The weight stream (``PEConfig.cfg_stream``, docs/pe.md "Weight stream") that fills weight SRAM words
        ``words`` ((count, lanes) weights, in stream order) in rows of ``row_words`` words from address 0: the
        STREAM register write, then ``ceil(count * lanes / stream_weights)`` stream words (the last one padded
        with zeros, which the PE drops)."""
        cfg = self.cfg
        if not cfg.cfg_stream:
            raise ValueError("weight stream: this PE has no weight stream (PEConfig.cfg_stream = False)")
        words = np.asarray(words, dtype=np.int64).reshape(-1, cfg.lanes)
        count = words.shape[0]
        if not 1 <= count <= cfg.weight_words:
            raise ValueError(f"weight stream: {count} words is outside the allowed range 1..{cfg.weight_words} "
                             f"of this PE")
        if not 1 <= row_words <= cfg.words:
            raise ValueError(f"weight stream: {row_words} words per row is outside 1..{cfg.words} of this PE")
        self._check_weight_range(int(words.min()), int(words.max()))
        k, wb = cfg.stream_weights, cfg.weight_bits
        flat = words.reshape(-1) & ((1 << wb) - 1)
        flat = np.concatenate([flat, np.zeros(-len(flat) % k, dtype=np.int64)]).reshape(-1, k)
        stream = [sum(int(v) << (j * wb) for j, v in enumerate(row)) for row in flat]   # stream_word_layout
        head = pack(L.stream_reg_layout(cfg), count=count, row_words=row_words)
        return [self.reg(L.Reg.STREAM, head), *stream]

    def stream_body(self, words: list[int]) -> int:
        """How many words at the end of ``words`` (one PE's configuration words, as this codec makes them) are
        stream words: those after its STREAM register write, which the codec puts last (0 without the weight
        stream). Found from the front: every word before the STREAM write is an ordinary one."""
        if not self.cfg.cfg_stream:
            return 0
        mask = (1 << (2 + self.cfg.cfg_row_bits)) - 1
        stream = self.reg(L.Reg.STREAM, 0) & mask
        for k, w in enumerate(words):
            if w & mask == stream:
                return len(words) - 1 - k
        return 0

    def weight_matrix_stream(self, weight: np.ndarray) -> list[int]:
        """The weight stream of a weight matrix (rows = inputs, columns = neurons 0, 1, ...): rows of
        ``ceil(columns / lanes)`` weight SRAM words, the lanes past the last column 0."""
        weight = np.asarray(weight, dtype=np.int64)
        lanes = self.cfg.lanes
        n_in, n = weight.shape
        row_words = -(-n // lanes)
        padded = np.zeros((n_in, row_words * lanes), dtype=np.int64)
        padded[:, :n] = weight
        return self.weight_stream(padded.reshape(-1, lanes), row_words)

    def registers(self, *, active: int, neuron_base: int, sources: int, t_end: int, pool_shift: int = 0,
                  conv: dict | None = None, outputs: int | None = None) -> list[int]:
        """The runtime registers (docs/pe.md), range-checked. ``pool_shift``: max-pooling windows of
        2**pool_shift neurons (0: no pooling); output indices are neuron_base + (j >> pool_shift).
        A PE with the conv mode also gets its conv registers: ``conv`` (names of layouts.conv_reg_widths, e.g.
        ``{"kh": 5, ...}``; None: KH = 0, the dense mode); ``outputs``: output indices the PE emits (default
        from active and pool_shift)."""
        cfg = self.cfg
        checks = [("neurons", active, 1, cfg.neurons), ("t_end", t_end, 1, cfg.max_t_end),
                  ("sources", sources, 1, cfg.max_sources),
                  ("pool_shift", pool_shift, 0, cfg.neuron_bits if cfg.pooling else 0)]
        for name, v, lo, hi in checks:
            if not lo <= v <= hi:
                raise ValueError(f"{name}: {v} is outside the allowed range {lo}..{hi} of this PE")
        outputs = ((active - 1) >> pool_shift) + 1 if outputs is None else outputs
        top = (1 << cfg.index_bits) - outputs
        if not 0 <= neuron_base <= top:
            raise ValueError(f"neuron_base: {neuron_base} is outside the allowed range 0..{top} of this PE")
        words = [self.reg(L.Reg.ACTIVE, active), self.reg(L.Reg.NEURON_BASE, neuron_base),
                 self.reg(L.Reg.SOURCES, sources), self.reg(L.Reg.T_END, t_end),
                 self.reg(L.Reg.POOL_SHIFT, pool_shift)]
        if conv is not None and not cfg.conv:
            raise ValueError("conv: this PE has no conv mode (PEConfig.conv_inputs = 0)")
        if cfg.conv:
            conv = conv or {}
            widths = L.conv_reg_widths(cfg)
            unknown = set(conv) - set(widths)
            if unknown:
                raise ValueError(f"conv: unknown register(s) {sorted(unknown)}")
            for reg, name in zip(L.CONV_REGS, widths, strict=True):
                v = int(conv.get(name, 0))
                if not 0 <= v < 1 << widths[name]:
                    raise ValueError(f"conv {name}: {v} does not fit its {widths[name]}-bit register")
                words.append(self.reg(reg, v))
            low = int(conv.get("pool_low", 0))
            if pool_shift and 0 < low < cfg.lane_bits:
                # STORE reads a word's window bits as one aligned block of `lanes` windows (rtl/store.py); 0 is
                # the dense rule n >> pool_shift, which keeps a word's lanes in one block too
                raise ValueError(f"conv pool_low: {low} is between 0 and log2(lanes) = {cfg.lane_bits} with "
                                 f"pooling (pool_shift {pool_shift}); the lanes of a word must keep their own "
                                 f"windows")
        return words

    def input_map(self, index: int, row_base: int, y: int, x: int) -> int:
        """Conv mode: input map entry ``index`` <- (weight row of the channel, position y, x)."""
        cfg = self.cfg
        if not cfg.conv:
            raise ValueError("input map: this PE has no conv mode (PEConfig.conv_inputs = 0)")
        if not 0 <= index < cfg.conv_inputs:
            raise ValueError(f"input map: index {index} is outside 0..{cfg.conv_inputs - 1} of this PE")
        entry = pack(L.input_map_layout(cfg), row_base=row_base, y=y, x=x)
        return pack(self.cfg_layout, target=L.CfgTarget.INPUT_MAP, row=index, data=entry)

    def conv_cfg_words(self, kernel: np.ndarray, threshold: np.ndarray, entries, *, neuron_base: int,
                       sources: int, t_end: int, pool_shift: int, conv: dict, outputs: int) -> list[int]:
        """Configuration words of one conv-mode PE (docs/pe.md "Conv mode"): registers, ``threshold`` (one
        per neuron, ACTIVE = len(threshold)), the input map ``entries`` ((index, row_base, y, x) each) and the
        kernel slice ``kernel`` (rows C * KH * KW, columns the PE's output channels, a multiple of lanes), in
        this order (the weights last, so that a weight stream ends the list)."""
        kernel = np.asarray(kernel, dtype=np.int64)
        threshold = np.asarray(threshold, dtype=np.int64)
        n_rows, n_cols = kernel.shape
        if not 1 <= n_rows <= self.cfg.fan_in:
            raise ValueError(f"kernel rows: {n_rows} is outside the allowed range 1..{self.cfg.fan_in} of this PE")
        words = self.registers(active=len(threshold), neuron_base=neuron_base, sources=sources, t_end=t_end,
                               pool_shift=pool_shift, conv=conv, outputs=outputs)
        self.check_weights(kernel, threshold[:n_cols])
        if threshold.min() < 1 or threshold.max() >= 1 << self.cfg.threshold_bits:
            raise ValueError(f"threshold: expected values in 1..{(1 << self.cfg.threshold_bits) - 1}")
        words += [self.threshold(j, int(threshold[j])) for j in range(len(threshold))]
        # Conv mode addresses the kernel slice compactly: row r, word w at weight SRAM word a = r * CH_WORDS + w,
        # which the memory interface's dense formula row * (neurons / lanes) + word reaches with row = a // words.
        cfg, ch_words = self.cfg, int(conv.get("ch_words", 0))
        if n_cols != ch_words * cfg.lanes:
            raise ValueError(f"kernel columns: {n_cols} must be ch_words x lanes = {ch_words * cfg.lanes}")
        if n_rows * ch_words > cfg.weight_words:
            raise ValueError(f"kernel: {n_rows} rows x {ch_words} words need {n_rows * ch_words} weight SRAM words, "
                             f"the PE has {cfg.weight_words}")
        g = cfg.cfg_weights
        words += [self.input_map(*map(int, e)) for e in entries]
        if cfg.cfg_stream:   # the words at addresses 0 .. n_rows * ch_words - 1 in order
            words += self.weight_stream(kernel.reshape(-1, cfg.lanes), cfg.words)
        else:
            for r in range(n_rows):
                for w in range(ch_words):
                    a = r * ch_words + w
                    for j in range(0, cfg.lanes, g):
                        words.append(self.weight_word(a // cfg.words, a % cfg.words * cfg.lanes + j,
                                                      kernel[r, w * cfg.lanes + j:w * cfg.lanes + j + g]))
        return words

    def _check_weight_range(self, lo: int, hi: int) -> None:
        """ValueError unless ``lo .. hi`` (the smallest and largest weight given) fits signed weight_bits."""
        wlo, whi = -(1 << (self.cfg.weight_bits - 1)), (1 << (self.cfg.weight_bits - 1)) - 1
        if lo < wlo or hi > whi:
            raise ValueError(f"weight: values must lie in {wlo}..{whi}")

    def check_weights(self, weight: np.ndarray, threshold: np.ndarray) -> None:
        cfg = self.cfg
        n = weight.shape[1]
        if weight.size:
            self._check_weight_range(weight.min(), weight.max())
        if threshold.shape != (n,) or (n and (threshold.min() < 1 or threshold.max() >= 1 << cfg.threshold_bits)):
            raise ValueError(f"threshold: expected {n} values in 1..{(1 << cfg.threshold_bits) - 1}")

    def layer_cfg_words(self, weight: np.ndarray, threshold: np.ndarray, *, neuron_base: int = 0,
                        sources: int = 1, t_end: int | None = None, pool_shift: int = 0) -> list[int]:
        """Configuration words that load one layer slice (``weight`` (n_in, n), ``threshold`` (n,)) and set the
        registers (``pool_shift``: see :meth:`registers`). Every value is range-checked (output indices
        neuron_base + (j >> pool_shift) must fit index_bits); a ValueError names the field and the limit."""
        weight = np.asarray(weight, dtype=np.int64)
        threshold = np.asarray(threshold, dtype=np.int64)
        n_in, n = weight.shape
        t_end = self.cfg.max_t_end if t_end is None else t_end
        if not 1 <= n_in <= self.cfg.fan_in:
            raise ValueError(f"weight rows: {n_in} is outside the allowed range 1..{self.cfg.fan_in} of this PE")
        if n_in * self.cfg.words > self.cfg.weight_words:
            raise ValueError(f"weight rows: the dense mode needs {n_in} x {self.cfg.words} weight SRAM words, the PE "
                             f"has {self.cfg.weight_words} (weight_depth: a PE for conv-mode layers only)")
        words = self.registers(active=n, neuron_base=neuron_base, sources=sources, t_end=t_end,
                               pool_shift=pool_shift)
        self.check_weights(weight, threshold)
        words += [self.threshold(j, int(threshold[j])) for j in range(n)]
        words += self.weight_matrix_stream(weight) if self.cfg.cfg_stream else self.weight_matrix_words(weight)
        return words

    # ---- output ----
    def decode_output(self, words: list[int], n_out: int, t_end: int, *, neuron_base: int = 0) -> np.ndarray:
        """Spike times (n_out,) of one inference's ``o`` words, checked by :class:`StreamCheck`: STEP_END(0),
        then per t = 1..t_end the spikes at t (each neuron at most once) and STEP_END(t); nothing else."""
        out = np.full(n_out, self.cfg.no_spike, dtype=np.int64)
        check = StreamCheck(out, lo=neuron_base, no_spike=self.cfg.no_spike, name="output")
        for k, w in enumerate(words):
            check.event(self.decode_event(w), f"output event {k}")
        check.finish(t_end)
        return out


class HostFlit(NamedTuple):
    """A decoded flit: the sending node, the flit kind and, for EVENT flits, the PE event."""

    src: tuple[int, int]
    kind: FlitKind
    event: Event | None


class FlitCodec:
    """Flits of the mesh with ``noc`` carrying events and configuration words of PEs with ``pe``."""

    def __init__(self, pe: PEConfig, noc: NocConfig):
        self.pe, self.noc = PECodec(pe), noc
        self.flit_layout = flit_layout(noc)
        self.ni_layout = ni_cfg_layout(noc, ni_value_bits(pe))

    def flit(self, node: tuple[int, int], kind: FlitKind, payload: int, *, host: int = 0,
             src: tuple[int, int] = (0, 0)) -> int:
        return pack(self.flit_layout, x=node[0], y=node[1], host=host, src_x=src[0], src_y=src[1], kind=kind,
                    payload=payload)

    def event(self, node: tuple[int, int], word: int) -> int:
        return self.flit(node, FlitKind.EVENT, word)

    def ni_words(self, *, sources: int, t_end: int, dests) -> list[int]:
        """NI_CFG payloads: SOURCES, T_END and the destination table ``dests`` ((x, y, host) in order)."""
        lay = self.ni_layout
        return ([pack(lay, reg=NiReg.SOURCES, value=sources), pack(lay, reg=NiReg.T_END, value=t_end)]
                + [pack(lay, reg=NiReg.DEST, index=k, x=x, y=y, host=h) for k, (x, y, h) in enumerate(dests)])

    def decode(self, word: int) -> HostFlit:
        f = unpack(self.flit_layout, word)
        src = (int(f.src_x), int(f.src_y))
        kind = f.kind
        event = self.pe.decode_event(int(f.payload)) if kind == FlitKind.EVENT else None
        return HostFlit(src, kind, event)


class StreamCheck:
    """The checked decoder of one sender's output events (a PE's ``o`` stream, or the events one node sends to
    the host): STEP_END(0), STEP_END(1), ... in order, each SPIKE inside the open step, each neuron index in
    ``lo .. lo + len(out) - 1`` at most once. Spike times go to ``out[index - lo]`` (which starts silent).

    ``step`` is the last step closed (-1 before STEP_END(0)); a neuron still silent is known only to spike
    after it.
    """

    def __init__(self, out: np.ndarray, *, lo: int, no_spike: int, name: str):
        self.out, self.lo, self.no_spike, self.name = out, lo, no_spike, name
        self.step = -1

    def event(self, e: Event, where: str) -> None:
        if e.kind == L.EventKind.STEP_END:
            if e.time != self.step + 1:
                raise ProtocolError(f"{where}: {self.name} sent STEP_END({e.time}) after STEP_END({self.step})")
            self.step += 1
        elif e.kind == L.EventKind.SPIKE:
            if self.step < 0 or e.time != self.step + 1:
                raise ProtocolError(f"{where}: {self.name} sent a SPIKE at {e.time} while step {self.step + 1} "
                                    "is open")
            self.spike(e.index, e.time, where)
        else:
            raise ProtocolError(f"{where}: {self.name} sent an unexpected {e.kind.name}")

    def spike(self, index: int, time: int, where: str) -> None:
        """A spike of neuron ``index`` at ``time`` (the board's RUN result carries spikes without markers)."""
        j = index - self.lo
        if not 0 <= j < len(self.out):
            raise ProtocolError(f"{where}: {self.name} spiked neuron {index}, outside "
                                f"{self.lo}..{self.lo + len(self.out) - 1}")
        if self.out[j] != self.no_spike:
            raise ProtocolError(f"{where}: {self.name}: neuron {index} spiked twice ({self.out[j]} and {time})")
        self.out[j] = time

    def finish(self, t_end: int) -> None:
        """The stream is complete: its last marker must be STEP_END(t_end)."""
        if self.step != t_end:
            raise ProtocolError(f"{self.name} ended after STEP_END({self.step}), expected STEP_END({t_end})")
