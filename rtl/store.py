"""STORE: writes neuron state back and emits output events (the third stage of the PE core)."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import layouts as L
from .config import PEConfig
from .sram import SRAM

__all__ = ["Store"]


class Store(wiring.Component):
    """Per token: one state-word write (none for ``MARK``), then one ``SPIKE`` event per newly fired lane
    (ascending lane), then, for the ``MARK`` that ends the sweep of step t, ``STEP_END(t + 1)``; after the
    last word of a ``CLEAR``, ``STEP_END(0)``.

    The output neuron index is ``neuron_base + (n >> pool_shift)`` for neuron ``n = word * lanes + lane``
    (modulo 2**index_bits). A token with nothing to emit takes one cycle; one with e emissions takes
    max(1, e) cycles when ``o`` is ready.

    **Max-pooling** (docs/spec.md section 5, docs/pe.md "Max-pooling"): neuron ``n`` belongs to pooling window
    ``n >> pool_shift``. STORE keeps one bit per window (``neurons`` bits, cleared by CLEAR tokens, i.e. at
    START, and by reset/abort): the first newly fired neuron of a window is emitted (as the window's index)
    and sets the bit; a neuron whose window bit is already set is dropped. Output spikes leave in step order,
    so the one that passes is the window's earliest, which is the pooled time. ``pool_shift = 0`` is no pooling
    (the window bits are ignored).

    Ports
    -----
    i : In(stream of layouts.compute_layout)
    write : Out(stream of layouts.write_request_layout), to the memory interface
    o : Out(stream of layouts.event_layout), output events
    done : Out(1), a state word is written this cycle (to LOAD's per-word write-back bookkeeping)
    done_word : Out(word_bits), the word written when ``done``
    done_rising : Out(1), the word written when ``done`` may still fire (compute_layout ``rising``)
    neuron_base : In(index_bits), register NEURON_BASE
    pool_shift : In(pool_shift_bits), register POOL_SHIFT (a window holds 2**pool_shift neurons)
    pool_low : In(pool_shift_bits), conv mode only: register POOL_LOW. Neuron ``n`` then belongs to window
        ``((n >> (pool_low + pool_shift)) << pool_low) | (n mod 2**pool_low)`` (bits pool_low ..
        pool_low + pool_shift - 1 removed; the low bits are the output channel, docs/pe.md "Conv mode");
        pool_low = 0 is the rule above. With pooling, pool_low is 0 or >= log2(lanes) (host.codec checks it):
        the lanes of a word then fall in one aligned block of ``lanes`` windows, which STORE reads at once.
    """

    def __init__(self, config: PEConfig):
        self._cfg = c = config
        super().__init__({
            "i": In(stream.Signature(L.compute_layout(c))),
            "write": Out(stream.Signature(L.write_request_layout(c))),
            "o": Out(stream.Signature(L.event_layout(c))),
            "done": Out(1),
            "done_word": Out(c.word_bits),
            "done_rising": Out(1),
            "neuron_base": In(c.index_bits),
            "pool_shift": In(c.pool_shift_bits),
            **({"pool_low": In(c.pool_shift_bits)} if c.conv else {}),
        })

    def elaborate(self, platform):
        c = self._cfg
        m = Module()
        x = self.i.payload
        written = Signal()
        emitted = Signal(c.lanes)
        end_sent = Signal()

        mark = x.token.op == L.Op.MARK
        m.d.comb += [
            self.write.valid.eq(self.i.valid & ~written & ~mark),
            self.write.payload.addr.eq(x.token.word),
            self.write.payload.state.eq(x.state),
            self.done.eq(self.write.valid & self.write.ready),
            self.done_word.eq(x.token.word),
            self.done_rising.eq(x.rising),
        ]
        write_ok = written | self.write.ready | mark

        # Pooling windows: lane j holds neuron n_j = word * lanes + j of window n_j >> pool_shift; a lane whose
        # window already passed a spike (``taken``, this inference) is dropped.
        # pool_shift = 0 is no pooling: the bits are then ignored, so STORE is exactly the unpooled one.
        # Without PEConfig.pooling there is no window state: POOL_SHIFT is 0 (host.codec), n is the output.
        ram = c.pooling and c.pool_ram
        windows = Signal(c.neurons) if c.pooling and not ram else None
        taken = Signal(c.lanes)
        pooling = self.pool_shift != 0

        def window(n):
            if not c.pooling:
                return n
            if not c.conv:
                return n >> self.pool_shift
            low = (1 << self.pool_low) - 1
            return (((n >> (self.pool_low + self.pool_shift)) << self.pool_low) | (n & low)).as_unsigned()

        if c.pooling:
            # A word's lanes lie in one aligned block of ``lanes`` windows (dense: n >> pool_shift of consecutive
            # n; conv mode: POOL_LOW 0, or >= log2 lanes keeping the lane bits, host.codec checks it), so one
            # multiplexer over ``words`` blocks reads them all, each lane then picks its bit of the block.
            block_addr = Signal(c.word_bits)
            m.d.comb += block_addr.eq(window(x.token.word * c.lanes) >> c.lane_bits)
            if ram:
                # PEConfig.pool_ram: the blocks as a words x lanes memory read combinationally (LUT RAM).
                m.submodules.windows = wmem = SRAM(shape=c.lanes, depth=c.words, comb_read=True)
                m.d.comb += wmem.r_addr.eq(block_addr)
                block = wmem.r_data
            else:
                block = windows.word_select(block_addr, c.lanes)
            for j in range(c.lanes):
                bit = window(x.token.word * c.lanes + j)[:c.lane_bits] if c.lanes > 1 else 0
                m.d.comb += taken[j].eq(pooling & block.bit_select(bit, 1))
        pending = Signal(c.lanes)
        m.d.comb += pending.eq(x.newly & ~emitted & ~taken)
        lowest = Signal(c.lanes)  # one-hot lowest pending lane
        m.d.comb += lowest.eq(pending & -pending)
        lane = Signal(max(1, c.lane_bits))  # never zero-width (lanes == 1)
        for j in reversed(range(c.lanes)):
            with m.If(pending[j]):
                m.d.comb += lane.eq(j)
        single = (pending & (pending - 1)) == 0
        need_end = x.token.last & (x.token.op != L.Op.SPIKE)
        end_time = Mux(x.token.op == L.Op.CLEAR, 0, x.token.time + 1)

        o = self.o.payload
        final_emit = Signal()
        with m.If(pending != 0):
            m.d.comb += [
                self.o.valid.eq(self.i.valid),
                o.kind.eq(L.EventKind.SPIKE),
                o.index.eq(self.neuron_base + window(x.token.word * c.lanes + lane)),
                o.time.eq(x.token.time + 1),
                final_emit.eq(single & ~need_end),
            ]
        with m.Elif(need_end & ~end_sent):
            m.d.comb += [
                self.o.valid.eq(self.i.valid),
                o.kind.eq(L.EventKind.STEP_END),
                o.time.eq(end_time),
                final_emit.eq(1),
            ]
        nothing_left = (pending == 0) & (~need_end | end_sent)
        emit = self.o.valid & self.o.ready
        finish = self.i.valid & write_ok & (nothing_left | (emit & final_emit))
        m.d.comb += self.i.ready.eq(finish)

        with m.If(finish):
            m.d.sync += [written.eq(0), emitted.eq(0), end_sent.eq(0)]
        with m.Elif(self.i.valid):
            with m.If(self.write.valid & self.write.ready):
                m.d.sync += written.eq(1)
            with m.If(emit):
                with m.If(pending != 0):
                    m.d.sync += emitted.eq(emitted | lowest)
                with m.Else():
                    m.d.sync += end_sent.eq(1)
        if ram:
            # An emitted lane sets its window's bit: the token's block, read this cycle, with that bit added (a
            # later lane of the token reads it back in the next cycle). A CLEAR token clears its word's block:
            # START's CLEARs reach every word in use, so every block a later token of the inference reads.
            m.d.comb += [wmem.w_addr.eq(block_addr),
                         wmem.w_data.eq(block | (1 << window(x.token.word * c.lanes + lane)[:c.lane_bits]
                                                 if c.lanes > 1 else 1))]
            with m.If(emit & (pending != 0)):
                m.d.comb += wmem.w_en.eq(1)
            with m.If(self.i.valid & self.i.ready & (x.token.op == L.Op.CLEAR)):
                m.d.comb += [wmem.w_en.eq(1), wmem.w_data.eq(0)]
        elif c.pooling:
            with m.If(emit & (pending != 0)):
                m.d.sync += windows.bit_select(window(x.token.word * c.lanes + lane), 1).eq(1)
            with m.If(self.i.valid & self.i.ready & (x.token.op == L.Op.CLEAR)):
                m.d.sync += windows.eq(0)
        return m
