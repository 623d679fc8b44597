"""The one SRAM wrapper of the PE: every memory goes through :class:`SRAM`, which fixes the read latency."""

from __future__ import annotations

from amaranth.hdl import Module, Shape
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import bits_for

__all__ = ["SRAM"]


class SRAM(wiring.Component):
    """A simple dual-port synchronous SRAM (one read port, one write port) around ``lib.memory.Memory``.

    Parameters
    ----------
    shape : shape-castable
        Word shape (a layout is allowed; the memory stores its bits).
    depth : int
        Number of words.
    granularity : int or None
        Bits per write-enable bit; ``None`` writes whole words.

    Ports
    -----
    r_addr : In(bits(depth - 1)), unsigned word address
    r_en : In(1)
        Read enable. Data of the address presented with ``r_en`` high appears on ``r_data`` one cycle later
        (the read latency every user of this wrapper is built for) and then holds while ``r_en`` is low.
    r_data : Out(shape)
    w_addr : In(bits(depth - 1))
    w_en : In(width // granularity) (1 without granularity), one bit per written slice
    w_data : In(shape)
        A write is visible to a read issued in a later cycle (reads of the same cycle see the old word).
    """

    def __init__(self, *, shape, depth: int, granularity: int | None = None):
        width = Shape.cast(shape).width
        if granularity is not None and (granularity < 1 or width % granularity):
            self._MustUse__silence = True  # a rejected instance is not an unused elaboratable
            raise ValueError(f"granularity: {granularity} does not divide the word width {width}")
        self._width, self._depth, self._granularity = width, depth, granularity
        n_en = 1 if granularity is None else width // granularity
        abits = bits_for(depth - 1)
        super().__init__({
            "r_addr": In(abits), "r_en": In(1), "r_data": Out(shape),
            "w_addr": In(abits), "w_en": In(n_en), "w_data": In(shape),
        })

    @property
    def depth(self) -> int:
        return self._depth

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=self._width, depth=self._depth, init=[])
        rd = mem.read_port()
        wr = mem.write_port(granularity=self._granularity)
        m.d.comb += [
            rd.addr.eq(self.r_addr), rd.en.eq(self.r_en), self.r_data.eq(rd.data),
            wr.addr.eq(self.w_addr), wr.en.eq(self.w_en), wr.data.eq(self.w_data),
        ]
        return m
