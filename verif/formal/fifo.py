"""Formal harness of ``rtl.fifo.StreamFIFO``: it behaves as a FIFO.

The environment drives ``i`` and ``o.ready`` freely and, with ``track``, may pick any one written entry
(symbolically: every entry is a candidate). The harness remembers its data and counts the entries ahead of
it; it asserts

* flow control: ``level`` stays in ``0..depth``, ``o.valid`` iff an entry is held, ``i.ready`` iff a slot
  is free, and ``level`` changes by exactly (written - read) each cycle (no loss, no duplication);
* order and data: when the tracked entry reaches the head it is offered with exactly its data, and it
  leaves after exactly the entries written before it (so every read returns the entry written at the
  same position: the FIFO property).

The invariant that makes k-induction close ties the tracked entry to the storage word it occupies
(``tap_memory``), together with the pointer/level invariants ``lib.fifo`` adds under ``platform="formal"``.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Assume, Cover, Fragment, Module, Mux, ResetSignal, Signal
from amaranth.lib import fifo as libfifo
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In

from rtl.fifo import StreamFIFO

from .core import tap_memory

__all__ = ["FifoHarness", "LossyFIFO"]


class LossyFIFO(StreamFIFO):
    """Mutant for the harness's own test: always ready, so a write into a full FIFO is lost."""

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = f = libfifo.SyncFIFO(width=len(self.i.payload), depth=self.depth)
        m.d.comb += [
            f.w_data.eq(self.i.payload), f.w_en.eq(self.i.valid), self.i.ready.eq(1),
            self.o.payload.eq(f.r_data), self.o.valid.eq(f.r_rdy), f.r_en.eq(self.o.ready),
            self.level.eq(f.level),
        ]
        return m


class FifoHarness(wiring.Component):
    """``StreamFIFO(width, depth)`` under a free environment; ``dut_class`` swaps in a mutant."""

    def __init__(self, *, width: int = 3, depth: int = 3, dut_class=StreamFIFO):
        self.width, self.depth, self.dut_class = width, depth, dut_class
        super().__init__({
            "i": In(stream.Signature(width)),
            "o_ready": In(1),
            "track": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.d.comb += Assume(~ResetSignal())
        d = self.depth
        dut = self.dut_class(self.width, depth=d)
        frag = Fragment.get(dut, platform)
        m.submodules.dut = frag
        m.d.comb += [dut.i.valid.eq(self.i.valid), dut.i.payload.eq(self.i.payload), self.i.ready.eq(dut.i.ready),
                     dut.o.ready.eq(self.o_ready)]

        wr = dut.i.valid & dut.i.ready
        rd = dut.o.valid & dut.o.ready

        # Flow control and the level counter.
        prev_level = Signal(range(d + 1), init=0)
        expect = Signal(range(d + 2))
        m.d.sync += prev_level.eq(dut.level)
        started = Signal()
        m.d.sync += started.eq(1)
        m.d.sync += expect.eq(dut.level + wr - rd)
        m.d.comb += [
            Assert(dut.level <= d),
            Assert(dut.o.valid == (dut.level != 0)),
            Assert(dut.i.ready == (dut.level != d)),
        ]
        with m.If(started):
            m.d.comb += Assert(dut.level == expect)

        # The tracked entry.
        inside = Signal()
        gone = Signal()
        data = Signal(self.width)
        ahead = Signal(range(d + 1))
        with m.If(wr & self.track & ~inside & ~gone):
            m.d.sync += [inside.eq(1), data.eq(dut.i.payload), ahead.eq(dut.level - rd)]
        with m.If(inside & rd):
            with m.If(ahead == 0):
                m.d.sync += [inside.eq(0), gone.eq(1)]
            with m.Else():
                m.d.sync += ahead.eq(ahead - 1)
        with m.If(inside):
            m.d.comb += Assert(ahead < dut.level)
            with m.If(ahead == 0):
                m.d.comb += Assert(dut.o.payload == data)
            # Induction strengthening: the tracked data sits in the storage word at consume + ahead.
            storage = frag.find_subfragment("fifo").find_subfragment("storage")
            consume = _find_signal(frag.find_subfragment("fifo"), "consume")
            slot = Signal(range(d))
            m.d.comb += slot.eq(Mux(consume + ahead >= d, consume + ahead - d, consume + ahead))
            m.d.comb += Assert(tap_memory(storage, slot) == data)
        m.d.comb += [
            Cover(inside & (dut.level == d) & (ahead == d - 1)),
            Cover(gone),
        ]
        return m


def _find_signal(fragment, name: str):
    """The signal called ``name`` assigned in ``fragment``'s own statements (not its subfragments)."""
    for stmts in fragment.statements.values():
        for stmt in stmts:
            for sig in stmt._lhs_signals():
                if sig.name == name:
                    return sig
    raise LookupError(f"no signal {name!r} assigned in {fragment!r}")
