"""Formal harness of the whole ``rtl.pe.PE``: output events are never dropped or duplicated.

Small configuration: 2 neurons of 1 lane, fan-in 2, 2-bit weights and times (t_end = 2), FIFOs of 2, one
source. The weight, threshold and state SRAMs start with arbitrary contents (every network at once); the
registers keep their reset values (no ``cfg`` traffic); input events are free (any kind, index, time, in
any cycle), ``o.ready`` is free (any backpressure). Asserted:

* ``pe_no_dup``: within one inference (from one output ``STEP_END(0)`` to the next) no neuron's ``SPIKE``
  leaves twice;
* ``pe_order``: output markers count up one step at a time from ``STEP_END(0)`` (none lost, none repeated)
  and every ``SPIKE`` carries the time of the step after the last marker;
* ``pe_conserve``: every output event the core decided -- one ``SPIKE`` per neuron COMPUTE found firing, one
  ``STEP_END`` per MARK and per START -- leaves ``o`` exactly once: the count of decided-but-not-delivered
  events never goes negative (nothing extra), is bounded by what the store and output FIFOs can hold, and is
  zero whenever they are empty (nothing lost).

``mutant="drop"`` puts a lossy stage behind ``o`` (every ``STEP_END(0)`` disappears) and ``mutant="dup"`` one
that shows every event twice, to show ``pe_conserve`` failing (markers are reachable within a short bound,
spikes only deeper).
"""

from __future__ import annotations

from amaranth.hdl import Assert, Assume, Cover, Fragment, Module, ResetSignal, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In

from rtl import layouts as L
from rtl.config import PEConfig
from rtl.pe import PE

__all__ = ["PEHarness", "SMALL_PE", "MODES"]

SMALL_PE = PEConfig(neurons=2, fan_in=2, lanes=1, weight_bits=2, time_bits=2, threshold_bits=2, fifo_depth=2,
                    defer_depth=2, max_sources=1)

MODES = ("no_dup", "order", "conserve")


class PEHarness(wiring.Component):
    def __init__(self, *, mode: str, config: PEConfig = SMALL_PE, mutant: str | None = None):
        if mode not in MODES:
            self._MustUse__silence = True  # a rejected instance is not an unused elaboratable
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        if mutant not in (None, "drop", "dup"):
            self._MustUse__silence = True  # a rejected instance is not an unused elaboratable
            raise ValueError(f"mutant: unknown {mutant!r}")
        self.mode, self.cfg, self.mutant = mode, config, mutant
        super().__init__({
            "i": In(stream.Signature(L.event_layout(config))),
            "o_ready": In(1),
        })

    def elaborate(self, platform):
        c = self.cfg
        m = Module()
        m.d.comb += Assume(~ResetSignal())
        dut = PE(c)
        frag = Fragment.get(dut, platform)
        m.submodules.dut = frag
        wiring.connect(m, wiring.flipped(self.i), dut.i)
        m.d.comb += [dut.cfg.valid.eq(0),
                     Assume(~self.i.valid | (self.i.payload.kind.as_value() <= L.EventKind.START.value))]

        # What the environment sees of o (through a mutant stage when asked).
        o = dut.o.payload
        is_spike = o.kind == L.EventKind.SPIKE
        valid = Signal()
        toggle = Signal()
        if self.mutant == "drop":
            lost = (o.kind == L.EventKind.STEP_END) & (o.time == 0)
            m.d.comb += [valid.eq(dut.o.valid & ~lost), dut.o.ready.eq(self.o_ready | lost)]
        elif self.mutant == "dup":
            # Each event is shown twice: the first handshake does not consume it.
            m.d.comb += [valid.eq(dut.o.valid), dut.o.ready.eq(self.o_ready & toggle)]
            with m.If(dut.o.valid & self.o_ready):
                m.d.sync += toggle.eq(~toggle)
        else:
            m.d.comb += [valid.eq(dut.o.valid), dut.o.ready.eq(self.o_ready)]
        seen = valid & self.o_ready
        spike = seen & is_spike
        marker = seen & (o.kind == L.EventKind.STEP_END)

        if self.mode == "no_dup":
            fired = Signal(c.neurons)
            with m.If(spike):
                m.d.comb += Assert(~fired.bit_select(o.index, 1))
                m.d.sync += fired.eq(fired | (1 << o.index))
            with m.If(marker & (o.time == 0)):
                m.d.sync += fired.eq(0)
            m.d.comb += Cover(spike & (fired != 0))
        elif self.mode == "order":
            have = Signal()
            last = Signal(c.time_bits)
            with m.If(spike):
                m.d.comb += Assert(have & (o.time == last + 1))
            with m.If(marker):
                m.d.comb += Assert((o.time == 0) | (have & (o.time == last + 1)))
                m.d.sync += [have.eq(1), last.eq(o.time)]
            m.d.comb += Cover(spike & (o.time == c.max_t_end))
        else:
            fs, fo = dut.fifos["store"], dut.fifos["out"]
            x = fs.i.payload
            decided = Signal(range(c.lanes + 2))
            with m.If(fs.i.valid & fs.i.ready):
                m.d.comb += decided.eq(sum(x.newly[j] for j in range(c.lanes))
                                       + (x.token.last & (x.token.op != L.Op.SPIKE)))
            owed = Signal(signed(8))
            m.d.sync += owed.eq(owed + decided - seen)
            m.d.comb += [
                Assert(owed >= fo.level),
                Assert(owed <= fs.level * (c.lanes + 1) + fo.level),
                Cover(spike),
            ]
            with m.If((fs.level == 0) & (fo.level == 0)):
                m.d.comb += Assert(owed == 0)
        return m
