"""The one SRAM wrapper of the PE: every memory goes through :class:`SRAM`, which fixes the read latency."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import bits_for

__all__ = ["SRAM", "COLLISION_FREE"]

#: Attribute of the memory of an SRAM built with ``collision_free`` (a Yosys selection: ``a:yoso_collision_free``).
COLLISION_FREE = "yoso_collision_free"


class SRAM(wiring.Component):
    """A synchronous SRAM (one read port, one write port) around ``lib.memory.Memory``.

    By default the memory is simple dual-port: a read and a write may happen in the same cycle at different
    addresses. With ``single_port`` the two ports share one address (the write's while ``w_en`` is high),
    which is what single-port RAM blocks (iCE40 SPRAM) need; the user then never reads and writes in the same
    cycle. ``pack`` words share one physical row of ``pack * width`` bits (word ``a`` is slice ``a % pack`` of
    row ``a // pack``), so a narrow memory fills a RAM block of fixed width (SPRAM: 16 bits) instead of
    leaving part of it unused; a write then enables only its word's slices.

    Parameters
    ----------
    shape : shape-castable
        Word shape (a layout is allowed; the memory stores its bits).
    depth : int
        Number of words.
    granularity : int or None
        Bits per write-enable bit; ``None`` writes whole words.
    single_port : bool
        One address for reads and writes (reads and writes in the same cycle are not allowed).
    pack : int
        Words per physical row, a power of two (1: one word per row).
    comb_read : bool
        The read is combinational: ``r_data`` is the word at ``r_addr`` in the same cycle (``r_en`` is not used),
        and a write is visible from the next cycle on. FPGA tools build such a memory from LUT RAM (the ECP5's
        ``TRELLIS_DPR16X4``): for small, narrow memories read in the cycle that decides (STORE's pooling
        window bits, ``PEConfig.pool_ram``). Simple dual-port, one word per row.
    collision_free : bool
        The user never reads a row in the cycle it is written (simple dual-port only). The memory then
        carries the attribute :data:`COLLISION_FREE`, and the board builds let synthesis leave out the
        bypass that would give such a read the old word (``fpga.boards``; on the iCE40 about two flip-flops
        and one LUT per bit: 188 and 98 for the PE's 90-bit state word of 2 lanes); what a read returns in
        the cycle of a write to its row is not defined there. The
        regressions check the promise in simulation (tests/rtl/test_sram_collisions.py).

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

    def __init__(self, *, shape, depth: int, granularity: int | None = None, single_port: bool = False,
                 pack: int = 1, collision_free: bool = False, comb_read: bool = False):
        width = Shape.cast(shape).width
        if granularity is not None and (granularity < 1 or width % granularity):
            self._MustUse__silence = True  # a rejected instance is not an unused elaboratable
            raise ValueError(f"granularity: {granularity} does not divide the word width {width}")
        if pack < 1 or pack & (pack - 1):
            self._MustUse__silence = True
            raise ValueError(f"pack: {pack} is not a power of two")
        self._width, self._depth, self._granularity = width, depth, granularity
        if collision_free and single_port:
            self._MustUse__silence = True
            raise ValueError("collision_free: a single-port SRAM never reads and writes in one cycle")
        if comb_read and (single_port or pack != 1 or collision_free):
            self._MustUse__silence = True
            raise ValueError("comb_read: only for a simple dual-port SRAM of one word per row")
        self._single_port, self._pack, self._collision_free = single_port, pack, collision_free
        self._comb_read = comb_read
        n_en = 1 if granularity is None else width // granularity
        abits = bits_for(depth - 1)
        super().__init__({
            "r_addr": In(abits), "r_en": In(1), "r_data": Out(shape),
            "w_addr": In(abits), "w_en": In(n_en), "w_data": In(shape),
        })

    @property
    def collision_free(self) -> bool:
        return self._collision_free

    @property
    def pack(self) -> int:
        return self._pack

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def rows(self) -> int:
        """Physical rows: ``ceil(depth / pack)``."""
        return -(-self._depth // self._pack)

    def elaborate(self, platform):
        m = Module()
        width, pack = self._width, self._pack
        gran = self._granularity or width
        if self._single_port:
            # Ask the RAM inference for a "huge" RAM (iCE40 SPRAM), which Yosys uses only on request. SPRAM has
            # no initial contents: the iCE40 flow drops this memory's all-zero init (fpga.boards.place_and_route).
            mem = Memory(shape=width * pack, depth=self.rows, init=[], attrs={"ram_style": "huge"})
            m.submodules.mem = mem
        else:
            attrs = {COLLISION_FREE: 1} if self._collision_free else {}
            m.submodules.mem = mem = Memory(shape=width * pack, depth=self.rows, init=[], attrs=attrs)
        rd = mem.read_port(domain="comb" if self._comb_read else "sync")
        wr = mem.write_port(granularity=gran)
        shift = pack.bit_length() - 1
        r_row, w_row = self.r_addr[shift:], self.w_addr[shift:]
        we = Signal(len(wr.en))  # the row's write enables: the word's slices of its slot
        if pack == 1:
            m.d.comb += [self.r_data.eq(rd.data), we.eq(self.w_en)]
        else:
            slot = Signal(shift)  # the word of the row read last, kept with the read data
            with m.If(self.r_en):
                m.d.sync += slot.eq(self.r_addr[:shift])
            m.d.comb += [
                self.r_data.eq(rd.data.word_select(slot, width)),
                we.eq(self.w_en << (self.w_addr[:shift] * (width // gran))),
            ]
        m.d.comb += [wr.en.eq(we), wr.data.eq(Cat(*[self.w_data] * pack))]
        if self._single_port:
            # One address; a read never shares a cycle with a write (the user's guarantee). Gating the read
            # enable with the very write enables lets the RAM inference prove it and map the memory onto a
            # port that keeps its output during a write (SPRAM) without extra logic.
            addr = Signal.like(r_row)
            m.d.comb += [addr.eq(Mux(we.any(), w_row, r_row)), rd.addr.eq(addr), wr.addr.eq(addr),
                         rd.en.eq(self.r_en & ~we.any())]
        elif self._comb_read:
            m.d.comb += [rd.addr.eq(r_row), wr.addr.eq(w_row)]
        else:
            m.d.comb += [rd.addr.eq(r_row), wr.addr.eq(w_row), rd.en.eq(self.r_en)]
        return m
