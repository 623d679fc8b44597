"""The memory interface: the PE's SRAMs and runtime registers, shared by the core and the ``cfg`` port."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import layouts as L
from .arith import times_const
from .config import PEConfig, bits_for
from .sram import SRAM

__all__ = ["MemoryInterface"]


class MemoryInterface(wiring.Component):
    """Owns the three SRAMs split by purpose and the runtime registers, and arbitrates their ports.

    SRAMs (all through :class:`rtl.sram.SRAM`, read latency 1):

    * weights: ``fan_in * words`` words of ``lanes`` signed ``weight_bits`` weights, address
      ``row * words + word``; used as a single-port SRAM (one read *or* one write per cycle), and built as
      one with ``config.weight_spram`` (rows of ``weight_pack`` words, iCE40 SPRAM); a ``cfg`` WEIGHT word
      writes ``cfg_weights`` lanes of one word;
    * thresholds: ``words`` words of ``lanes`` unsigned ``threshold_bits`` thresholds; single-port use;
    * neuron state: ``words`` words of ``lanes`` (S, V, fired); read by LOAD, written by STORE (dual-port).

    Arbitration: a core read of the weight SRAM (Op.SPIKE tokens) or threshold SRAM (Op.SWEEP tokens) wins
    over a ``cfg`` write to the same SRAM, which then waits (``cfg.ready`` low). Register writes never wait.

    Ports
    -----
    cfg : In(stream of layouts.cfg_layout)
        Configuration words from outside (register, weight or threshold writes).
    read_req : In(stream of layouts.read_request_layout)
        From LOAD: read the words of one token (weights only for SPIKE, thresholds only for SWEEP).
    read_resp : Out(stream of layouts.read_response_layout)
        To COMPUTE: the token with the words read, one cycle after the request at the earliest.
        Holds while not accepted.
    write_req : In(stream of layouts.write_request_layout)
        From STORE: one neuron-state word; always ready.
    neuron_base : Out(index_bits), unsigned register NEURON_BASE
    sources : Out(bits(max_sources)), unsigned register SOURCES
    t_end : Out(time_bits), unsigned register T_END (time steps)
    active : Out(bits(neurons)), unsigned register ACTIVE (neurons)
    pool_shift : Out(pool_shift_bits), unsigned register POOL_SHIFT (log2 of the neurons per pooling window)
    abort : In(1), drop the token in the read pipeline stage (PE.abort); registers and SRAMs are kept

    Weight stream only (``config.cfg_stream``, docs/pe.md "Weight stream"): a ``STREAM`` register write makes the
    next configuration words stream words, ``stream_weights`` weights each, collected in a buffer and written
    one whole weight SRAM word per cycle the core leaves the weight SRAM free; other words wait until the last
    word is written.

    Conv mode only (``config.conv``): the input map SRAM (``conv_inputs`` entries of layouts.input_map_layout,
    written by ``CfgTarget.INPUT_MAP`` words, read by LOAD through ``map_addr`` / ``map_en`` / ``map_data``
    with latency 1) and the conv registers (``kh``, ``kw``, ``stride``, ``pad``, ``tile_y0``, ``tile_x0``,
    ``tile_h``, ``tile_w``, ``ch_words``, ``pool_low``; layouts.conv_reg_widths, all init 0).
    """

    def __init__(self, config: PEConfig):
        self._cfg = config
        c = config
        super().__init__({
            "cfg": In(stream.Signature(L.cfg_layout(c))),
            "read_req": In(stream.Signature(L.read_request_layout(c))),
            "read_resp": Out(stream.Signature(L.read_response_layout(c))),
            "write_req": In(stream.Signature(L.write_request_layout(c))),
            "neuron_base": Out(c.index_bits),
            "sources": Out(c.sources_bits, init=1),
            "t_end": Out(c.time_bits, init=c.max_t_end),
            "active": Out(c.active_bits, init=c.neurons),
            "pool_shift": Out(c.pool_shift_bits),
            "abort": In(1),
            **({"map_addr": In(bits_for(c.conv_inputs - 1)), "map_en": In(1),
                "map_data": Out(L.input_map_layout(c)),
                **{name: Out(w) for name, w in L.conv_reg_widths(c).items()}} if c.conv else {}),
        })

    @property
    def config(self) -> PEConfig:
        return self._cfg

    def elaborate(self, platform):
        c = self._cfg
        m = Module()
        g = c.cfg_weights   # weights per WEIGHT word: the write granularity
        m.submodules.weights = wsram = SRAM(shape=L.weight_word_layout(c), depth=c.weight_words,
                                            granularity=None if g == c.lanes else g * c.weight_bits,
                                            single_port=c.weight_spram, pack=c.weight_pack,
                                            collision_free=not c.weight_spram)
        # Collision-free (rtl/sram.py): a configuration write of the weights or thresholds waits while the
        # core reads that SRAM (cfg.ready below); LOAD issues a SPIKE or SWEEP read of a state word only once
        # its write-back is done (its pending bit, rtl/load.py), and STORE is the only writer.
        m.submodules.thresholds = tsram = SRAM(shape=L.threshold_word_layout(c), depth=c.words,
                                               granularity=c.threshold_bits, collision_free=True)
        m.submodules.state = ssram = SRAM(shape=L.state_word_layout(c), depth=c.words, collision_free=True)

        # ---- core read path: a one-entry stream stage in front of the synchronous read ports ----
        req, resp = self.read_req, self.read_resp
        token = Signal(L.token_layout(c))
        m.d.comb += req.ready.eq(~resp.valid | resp.ready)
        accept = req.valid & req.ready
        op = req.payload.token.op
        core_weights = Signal()
        core_thresholds = Signal()
        m.d.comb += [
            core_weights.eq(accept & (op == L.Op.SPIKE)),
            core_thresholds.eq(accept & (op == L.Op.SWEEP)),
            wsram.r_en.eq(core_weights), wsram.r_addr.eq(req.payload.weight_addr),
            tsram.r_en.eq(core_thresholds), tsram.r_addr.eq(req.payload.token.word),
            # CLEAR and MARK do not use the state they pass on (COMPUTE writes 0 / STORE writes nothing back),
            # so they leave the state SRAM unread: a MARK may follow its sweep's last word while STORE writes
            # an earlier word back (the collision-free promise above).
            ssram.r_en.eq(accept & ((op == L.Op.SPIKE) | (op == L.Op.SWEEP))), ssram.r_addr.eq(req.payload.token.word),
        ]
        with m.If(accept):
            m.d.sync += [resp.valid.eq(1), token.eq(req.payload.token)]
        with m.Elif(resp.ready):
            m.d.sync += resp.valid.eq(0)
        with m.If(self.abort):
            m.d.sync += resp.valid.eq(0)
        m.d.comb += [
            resp.payload.token.eq(token),
            resp.payload.weights.eq(wsram.r_data),
            resp.payload.thresholds.eq(tsram.r_data),
            resp.payload.state.eq(ssram.r_data),
        ]

        # ---- core write path (STORE is the only writer of the state SRAM) ----
        wr = self.write_req
        m.d.comb += [
            wr.ready.eq(1),
            ssram.w_en.eq(wr.valid), ssram.w_addr.eq(wr.payload.addr), ssram.w_data.eq(wr.payload.state),
        ]

        # ---- configuration port: registers, and SRAM writes when the core leaves the port free ----
        cw = self.cfg.payload
        lane = cw.neuron[:c.lane_bits] if c.lane_bits else 0
        word = cw.neuron[c.lane_bits:]
        is_w = cw.target == L.CfgTarget.WEIGHT
        is_t = cw.target == L.CfgTarget.THRESHOLD
        word_ready = ~((is_w & core_weights) | (is_t & core_thresholds))
        stream_start = Signal()   # a STREAM register write (the switch below)
        if c.cfg_stream:
            busy, stream_ready, stream_write, stream_addr, stream_data = self._stream(m, core_weights, stream_start)
            m.d.comb += self.cfg.ready.eq(Mux(busy, stream_ready, word_ready))
            cfg_go = self.cfg.valid & self.cfg.ready & ~busy
        else:
            m.d.comb += self.cfg.ready.eq(word_ready)
            cfg_go = self.cfg.valid & self.cfg.ready
        m.d.comb += [
            wsram.w_addr.eq(times_const(cw.row, c.words) + word),
            wsram.w_data.eq(Cat(*[cw.data[:g * c.weight_bits]] * (c.lanes // g))),
            tsram.w_addr.eq(word),
            tsram.w_data.eq(Cat(*[cw.data[:c.threshold_bits]] * c.lanes)),
        ]
        with m.If(cfg_go & is_w):
            m.d.comb += wsram.w_en.eq(1 if g == c.lanes else 1 << (lane >> (g.bit_length() - 1)))
        with m.If(cfg_go & is_t):
            m.d.comb += tsram.w_en.eq(1 << lane)
        if c.cfg_stream:
            with m.If(stream_write):
                m.d.comb += [wsram.w_addr.eq(stream_addr), wsram.w_data.eq(stream_data),
                             wsram.w_en.eq((1 << (c.lanes // g)) - 1)]
        with m.If(cfg_go & (cw.target == L.CfgTarget.REG)):
            with m.Switch(cw.row):
                with m.Case(L.Reg.NEURON_BASE.value):
                    m.d.sync += self.neuron_base.eq(cw.data)
                with m.Case(L.Reg.SOURCES.value):
                    m.d.sync += self.sources.eq(cw.data)
                with m.Case(L.Reg.T_END.value):
                    m.d.sync += self.t_end.eq(cw.data)
                with m.Case(L.Reg.ACTIVE.value):
                    m.d.sync += self.active.eq(cw.data)
                with m.Case(L.Reg.POOL_SHIFT.value):
                    m.d.sync += self.pool_shift.eq(cw.data)
                if c.conv:
                    for reg, name in zip(L.CONV_REGS, L.conv_reg_widths(c), strict=True):
                        with m.Case(reg.value):
                            m.d.sync += getattr(self, name).eq(cw.data)
                if c.cfg_stream:
                    with m.Case(L.Reg.STREAM.value):
                        m.d.comb += stream_start.eq(1)
        if c.conv:
            m.submodules.input_map = msram = SRAM(shape=L.input_map_layout(c), depth=c.conv_inputs)
            m.d.comb += [
                msram.r_addr.eq(self.map_addr), msram.r_en.eq(self.map_en), self.map_data.eq(msram.r_data),
                msram.w_addr.eq(cw.row), msram.w_data.eq(cw.data[:L.input_map_layout(c).size]),
                msram.w_en.eq(cfg_go & (cw.target == L.CfgTarget.INPUT_MAP)),
            ]
        return m

    # ---- the weight stream (config.cfg_stream; docs/pe.md "Weight stream") ----
    def _stream(self, m: Module, core_weights, start):
        """The stream's gearbox: a buffer of up to ``2 * lanes - 1 + stream_weights`` weights, filled by whole
        stream words and emptied one whole weight SRAM word (``lanes`` weights) per cycle the core leaves the
        weight SRAM free. It takes a stream word while it holds fewer than ``2 * lanes`` weights, so that its
        ready depends on its registers only (not on the core's read in this cycle). ``start``: a STREAM register
        write (``cfg`` data: layouts.stream_reg_layout), which starts a stream of ``count`` words, ``row_words``
        per row, from address 0. Returns (busy: words still to write, so every configuration word waits or is
        a stream word; ready for a stream word; write a word now; its address; its data)."""
        c = self._cfg
        lanes, wb, k = c.lanes, c.weight_bits, c.stream_weights
        size = 2 * lanes - 1 + k
        left = Signal(c.stream_count_bits)                      # weight SRAM words still to write
        expect = Signal(range(c.weight_words * lanes + 1))      # weights still to take
        row_words = Signal(bits_for(c.words))
        col = Signal(range(c.words))                            # the next word's word in its row
        row_addr = Signal(c.weight_addr_bits)                   # address of word 0 of its row
        addr = Signal(c.weight_addr_bits)                       # the next word's address
        fill = Signal(range(size + 1))                          # weights in the buffer
        buf = Signal(size * wb)                                 # weight j in bits j*wb ..
        busy = left != 0
        write = Signal()
        m.d.comb += write.eq(busy & (fill >= lanes) & ~core_weights)
        after = Signal(range(size + 1))                         # weights kept after this cycle's write
        m.d.comb += after.eq(fill - Mux(write, lanes, 0))
        kept = Signal(size * wb)
        m.d.comb += kept.eq(Mux(write, buf >> (lanes * wb), buf))
        ready = Signal()
        m.d.comb += ready.eq((expect != 0) & (fill < 2 * lanes))
        take = self.cfg.valid & ready
        incoming = L.stream_word_layout(c)(self.cfg.payload.as_value()[:L.stream_word_layout(c).size])
        placed = Signal(size * wb)                              # kept, then the new word's weights
        with m.Switch(after):
            for a in range(2 * lanes):
                with m.Case(a):
                    m.d.comb += placed.eq(Cat(kept[:a * wb], incoming.as_value()))
        with m.If(take):
            m.d.sync += [buf.eq(placed), fill.eq(after + k), expect.eq(Mux(expect > k, expect - k, 0))]
        with m.Elif(write):
            m.d.sync += [buf.eq(kept), fill.eq(after)]
        with m.If(write):
            m.d.sync += left.eq(left - 1)
            with m.If(col + 1 == row_words):
                m.d.sync += [col.eq(0), row_addr.eq(row_addr + c.words), addr.eq(row_addr + c.words)]
            with m.Else():
                m.d.sync += [col.eq(col + 1), addr.eq(addr + 1)]
            with m.If(left == 1):
                m.d.sync += fill.eq(0)   # the last word is written: drop the last stream word's padding
        with m.If(start):   # only while not busy: no write or take in this cycle
            reg = L.stream_reg_layout(c)(self.cfg.payload.data[:L.stream_reg_layout(c).size])
            m.d.sync += [left.eq(reg.count), expect.eq(reg.count << c.lane_bits), row_words.eq(reg.row_words),
                         col.eq(0), row_addr.eq(0), addr.eq(0), fill.eq(0)]
        return busy, ready, write, addr, buf[:lanes * wb]
