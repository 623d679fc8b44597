"""The one stream FIFO wrapper of the PE (around ``lib.fifo.SyncFIFO``, first-word fall-through)."""

from __future__ import annotations

from amaranth.hdl import Module, Shape
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

__all__ = ["StreamFIFO"]


class StreamFIFO(wiring.Component):
    """A synchronous FIFO between two ``lib.stream`` ports.

    Parameters
    ----------
    shape : shape-castable
        Payload shape (a ``data`` layout is kept as a view on both sides).
    depth : int
        Entries (>= 1). A payload written into an empty FIFO in cycle c is offered on ``o`` from cycle
        c + 1 (one cycle of latency; the storage is read combinationally, so ``o.payload`` comes straight
        from the FIFO memory).
    buffered : bool
        Use ``SyncFIFOBuffered``: a registered read that block RAM can implement, ``o.payload`` from a
        register, and one cycle more of latency (a payload written into an empty FIFO in cycle c is offered
        from cycle c + 2).

    Ports
    -----
    i : In(stream.Signature(shape))
    o : Out(stream.Signature(shape))
    level : Out(range(depth + 1)), entries held
    """

    def __init__(self, shape, *, depth: int, buffered: bool = False):
        if depth < 1:
            self._MustUse__silence = True  # a rejected instance is not an unused elaboratable
            raise ValueError(f"depth: {depth} is below the minimum 1")
        self._shape, self._depth, self._buffered = shape, depth, buffered
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
            "level": Out(range(depth + 1)),
        })

    @property
    def depth(self) -> int:
        return self._depth

    def elaborate(self, platform):
        m = Module()
        kind = SyncFIFOBuffered if self._buffered else SyncFIFO
        m.submodules.fifo = fifo = kind(width=Shape.cast(self._shape).width, depth=self._depth)
        m.d.comb += [
            fifo.w_data.eq(self.i.payload), fifo.w_en.eq(self.i.valid), self.i.ready.eq(fifo.w_rdy),
            self.o.payload.eq(fifo.r_data), self.o.valid.eq(fifo.r_rdy), fifo.r_en.eq(self.o.ready),
            self.level.eq(fifo.level),
        ]
        return m
