"""The protocol engine: executes the framed host protocol (:mod:`fpga.protocol`, docs/fpga.md) between a
byte stream (the UART) and the accelerator's ``cfg`` / ``i`` / ``o`` streams (rtl/pe.py protocol).

It buffers one request frame (checks its CRC before acting), keeps an input spike buffer that RUN replays at
full speed with the STEP_END markers of every step, and captures the output spikes, the prediction
(earliest spike, lowest index) and the cycle count of the run.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from rtl import layouts as L
from rtl.config import PEConfig
from rtl.noc_layouts import FlitKind, NocConfig, flit_layout
from rtl.sram import SRAM

from .protocol import CRC8, MAX_PAYLOAD, NO_PREDICTION, SYNC_REQ, SYNC_RESP, Cmd, ProtocolLayout, Status

__all__ = ["ProtocolEngine"]


class ProtocolEngine(wiring.Component):
    """Host protocol engine for one PE-protocol accelerator.

    Parameters
    ----------
    config : PEConfig
        Geometry of the accelerator (event and configuration word layouts).
    in_depth : int
        Input spikes buffered for one RUN (at least the network's input count).
    out_depth : int
        Output spikes captured per RUN (at least the neurons that can fire in one run).
    timeout : int
        Cycles without a byte after which a partly received frame is dropped (resynchronisation).

    Ports
    -----
    rx : In(stream of unsigned(8)), bytes from the host; always ready (a byte arriving while the engine is
        busy is counted as lost and the next request answers ``Status.LINK``)
    rx_error : In(1), a receiver error (overrun, framing) happened; same effect as a lost byte
    tx : Out(stream of unsigned(8)), bytes to the host
    cfg : Out(stream of layouts.cfg_layout), configuration words to the accelerator
    i : Out(stream of layouts.event_layout), input events to the accelerator
    o : In(stream of layouts.event_layout), output events of the accelerator (always accepted)
    host_i, host_o : (mesh, instead of cfg / i / o) the mesh's host port: flits out, flits in (always accepted)
    abort : Out(1), (mesh) high for one cycle when a run exits early: the mesh drops the inference
    busy : Out(1), a run is in progress (for a LED)

    With a mesh, RUN replays the buffered flits under the host's run-ahead window (a flit of step s waits until
    every PE node has sent STEP_END(s - window)) and, with early exit, ends the run once the prediction is
    decided (the earliest output spike's step is closed by every output-layer node), as host/runner.py does
    in simulation.
    """

    def __init__(self, config: PEConfig, *, in_depth: int, out_depth: int, timeout: int = 1 << 20,
                 noc: NocConfig | None = None):
        if not isinstance(config, PEConfig):
            raise TypeError(f"config: expected a PEConfig, got {type(config).__name__}")
        for name, v, hi in (("in_depth", in_depth, 1 << 16), ("out_depth", out_depth, 1 << 16),
                            ("timeout", timeout, 1 << 30)):
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
                raise ValueError(f"{name}: {v!r} is outside the allowed range 1..{hi}")
        self._config, self._timeout, self._noc = config, timeout, noc
        ports = {
            "rx": In(stream.Signature(unsigned(8))),
            "rx_error": In(1),
            "tx": Out(stream.Signature(unsigned(8))),
            "busy": Out(1),
        }
        if noc is None:
            self._layout = ProtocolLayout(index_bits=config.index_bits, time_bits=config.time_bits,
                                          cfg_bits=L.cfg_layout(config).size, weight_bits=config.weight_bits,
                                          in_depth=in_depth, out_depth=out_depth)
            ports.update({"cfg": Out(stream.Signature(L.cfg_layout(config))),
                          "i": Out(stream.Signature(L.event_layout(config))),
                          "o": In(stream.Signature(L.event_layout(config)))})
        else:
            flit = flit_layout(noc)
            self._layout = ProtocolLayout(index_bits=config.index_bits, time_bits=config.time_bits,
                                          cfg_bits=flit.size, weight_bits=config.weight_bits,
                                          in_depth=in_depth, out_depth=out_depth, node_bits=noc.x_bits + noc.y_bits,
                                          in_bits=flit.size)
            ports.update({"host_i": Out(stream.Signature(flit)), "host_o": In(stream.Signature(flit)),
                          "abort": Out(1)})
        if 8 + out_depth * self._layout.spike_bytes > 0xFFFF:
            raise ValueError(f"out_depth: {out_depth} spikes of {self._layout.spike_bytes} bytes exceed the 65535-byte "
                             "response")
        super().__init__(ports)

    @property
    def config(self) -> PEConfig:
        return self._config

    @property
    def noc(self) -> NocConfig | None:
        """The mesh behind the engine (None: one PE)."""
        return self._noc

    @property
    def layout(self) -> ProtocolLayout:
        """Byte sizes on the link (what INFO reports)."""
        return self._layout

    def elaborate(self, platform):
        m = Module()
        cfg, lay = self._config, self._layout
        ib, tb = cfg.index_bits, cfg.time_bits
        sbits = lay.spike_bits
        mesh = self._noc is not None
        acc_bytes = max(lay.cfg_bytes, lay.in_bytes, lay.spike_bytes, lay.weight_bytes, 2)
        # Where configuration words and input words go: the PE's cfg / i streams, or the mesh's host port.
        cfg_out = self.host_i if mesh else self.cfg
        in_out = self.host_i if mesh else self.i

        m.submodules.frame = frame = SRAM(shape=8, depth=MAX_PAYLOAD)
        m.submodules.inbuf = inbuf = SRAM(shape=lay.in_word_bits, depth=lay.in_depth)
        m.submodules.outbuf = outbuf = SRAM(shape=sbits, depth=lay.out_depth)

        # ---- request reception ----
        cmd = Signal(8)
        length = Signal(16)
        count = Signal(16)             # payload bytes received / consumed
        wpos = Signal(range(acc_bytes + 1))   # byte position inside a word while receiving
        # Request CRC: restarted at the sync byte, fed every byte after it up to the CRC byte.
        m.submodules.rx_crc = rx_crc = CRC8.create()
        crc = rx_crc.crc
        lost = Signal()                # a byte was lost since the last response
        idle = Signal(range(self._timeout + 1))
        status = Signal(8)

        m.d.comb += self.rx.ready.eq(1)
        rx_byte = self.rx.payload
        rx_take = self.rx.valid

        word_bytes = Signal(range(acc_bytes + 1))  # bytes per payload word of the current command
        with m.Switch(cmd):
            with m.Case(Cmd.CFG):
                m.d.comb += word_bytes.eq(lay.cfg_bytes)
            with m.Case(Cmd.WEIGHTS):
                m.d.comb += word_bytes.eq(lay.weight_bytes)
            with m.Case(Cmd.SPIKES):
                m.d.comb += word_bytes.eq(lay.in_bytes)
            with m.Default():
                m.d.comb += word_bytes.eq(1)

        # ---- word assembly from the frame buffer ----
        acc = Signal(8 * acc_bytes)
        ptr = Signal(range(MAX_PAYLOAD + 1))
        nread = Signal(range(acc_bytes + 1))

        def word(nbytes):
            """The little-endian word of the last ``nbytes`` bytes shifted into ``acc``."""
            return acc[8 * (acc_bytes - nbytes):]

        # ---- run state ----
        in_count = Signal(range(lay.in_depth + 1))
        last_time = Signal(tb)
        t_end = Signal(16)
        cur_t = Signal(tb + 1)
        k = Signal(range(lay.in_depth + 1))
        running = Signal()
        done = Signal()
        cycles = Signal(32)
        out_count = Signal(range(lay.out_depth + 1))
        out_full = Signal()
        have_best = Signal()
        best_index = Signal(ib)
        best_time = Signal(tb)
        w_row = Signal(16)
        w_neuron = Signal(16)
        completions = Signal(16)   # mesh: DONE / STEP_END(t_end) flits that end a run
        seen = Signal(16)
        pred_node = Signal(16)     # mesh: spikes from nodes y * width + x >= pred_node are output-layer spikes
        n_pe = Signal(16)          # mesh: PE nodes (node numbers 0 .. n_pe - 1, row-major)
        window = Signal(16)        # mesh: run-ahead window in steps (0: none)
        early = Signal()           # mesh: end the run once the prediction is decided
        abort = Signal()           # mesh: the early-exit abort pulse (registered)
        m.d.comb += self.busy.eq(running)

        # ---- response ----
        resp_len = Signal(16)
        # Response CRC: restarted at the sync byte, fed every byte sent after it up to the CRC byte.
        m.submodules.tx_crc = tx_crc_proc = CRC8.create()
        tx_crc = tx_crc_proc.crc

        def tx_crc_feed(byte):
            m.d.comb += [tx_crc_proc.valid.eq(1), tx_crc_proc.data.eq(byte)]
        spk = Signal(range(lay.out_depth + 1))
        spk_word = Signal(8 * lay.spike_bytes)
        spk_byte = Signal(range(lay.spike_bytes + 1))
        info = Array(Const(b, 8) for b in lay.info_payload())
        pred16 = Signal(16)
        count16 = Signal(16)
        m.d.comb += [pred16.eq(Mux(have_best, best_index, NO_PREDICTION)), count16.eq(out_count)]
        result_hdr = Cat(cycles, pred16, count16)   # 8 bytes: the result_fields of fpga.protocol

        if not mesh:
            m.d.comb += self.i.payload.as_value().eq(0)

        def emit_event(kind, index=0, time=0):
            m.d.comb += [self.i.valid.eq(1), self.i.payload.kind.eq(kind), self.i.payload.index.eq(index),
                         self.i.payload.time.eq(time)]

        # ---- output capture (always on) ----
        with m.If(running):
            m.d.sync += cycles.eq(cycles + 1)
        if mesh:
            f = self.host_o.payload
            o = L.event_layout(cfg)(f.payload[:L.event_layout(cfg).size])
            m.d.comb += self.host_o.ready.eq(1)
            o_valid = self.host_o.valid & (f.kind == FlitKind.EVENT)
            node = Cat(f.src_x, f.src_y)
            counts = (f.src_y * self._noc.width + f.src_x) >= pred_node
            ends = self.host_o.valid & ((f.kind == FlitKind.DONE) |
                                        ((f.kind == FlitKind.EVENT) & (o.kind == L.EventKind.STEP_END) &
                                         (o.time == t_end)))
            with m.If(ends & running):
                m.d.sync += seen.eq(seen + 1)
                with m.If(seen + 1 == completions):
                    m.d.sync += [running.eq(0), done.eq(1)]
            # The last step each node closed (STEP_END to the host), -1 before its STEP_END(0): the run-ahead
            # window gates the replay on the slowest PE node, early exit waits for the output-layer nodes.
            n_nodes = self._noc.n_nodes
            last_end = [Signal(signed(tb + 2), name=f"last_end_{n}", init=-1) for n in range(n_nodes)]
            node_no = f.src_y * self._noc.width + f.src_x
            with m.If(self.host_o.valid & (f.kind == FlitKind.EVENT) & (o.kind == L.EventKind.STEP_END)):
                for n in range(n_nodes):
                    with m.If(node_no == n):
                        m.d.sync += last_end[n].eq(o.time)
            top = Const((1 << tb) - 1, signed(tb + 2))
            floor, out_floor = top, top    # min of last_end over the PE nodes / the output-layer nodes
            for n in range(n_nodes):
                pe_node = n < n_pe
                floor = Mux(pe_node & (last_end[n] < floor), last_end[n], floor)
                out_floor = Mux(pe_node & (n >= pred_node) & (last_end[n] < out_floor), last_end[n], out_floor)
            m.d.sync += abort.eq(0)
            m.d.comb += self.abort.eq(abort)
            with m.If(running & early & have_best & (out_floor >= best_time)):
                m.d.sync += [running.eq(0), done.eq(1), abort.eq(1)]
        else:
            o = self.o.payload
            m.d.comb += self.o.ready.eq(1)
            o_valid = self.o.valid
            node = Const(0, 0)
            counts = Const(1)
            with m.If(o_valid & (o.kind == L.EventKind.STEP_END) & (o.time == t_end) & running):
                m.d.sync += [running.eq(0), done.eq(1)]
        with m.If(o_valid & (o.kind == L.EventKind.SPIKE)):
            with m.If(out_count < lay.out_depth):
                m.d.comb += [outbuf.w_en.eq(1), outbuf.w_addr.eq(out_count),
                             outbuf.w_data.eq(Cat(o.index, o.time, node))]
                m.d.sync += out_count.eq(out_count + 1)
            with m.Else():
                m.d.sync += out_full.eq(1)
            with m.If(counts & (~have_best | (o.time < best_time) |
                                ((o.time == best_time) & (o.index < best_index)))):
                m.d.sync += [have_best.eq(1), best_index.eq(o.index), best_time.eq(o.time)]

        with m.If(self.rx_error):
            m.d.sync += lost.eq(1)

        def respond(code):
            m.d.sync += status.eq(code)
            m.next = "SEND_SYNC"

        # FETCH reads frame[ptr]; FETCH_WAIT shifts it into acc; after ``need`` bytes, dispatch.
        need = Signal(range(acc_bytes + 1))
        with m.Switch(cmd):
            with m.Case(Cmd.WEIGHTS):
                # header: row, neuron (2 bytes each), then weights
                m.d.comb += need.eq(Array([Const(lay.weight_bytes), Const(2)])[count < 2])
            with m.Case(Cmd.RUN):
                m.d.comb += need.eq(2)
            with m.Default():
                m.d.comb += need.eq(word_bytes)
        with m.FSM(name="engine") as fsm:
            # ---------------- receive a request ----------------
            with m.State("HUNT"):
                with m.If(rx_take & (rx_byte == SYNC_REQ)):
                    m.d.comb += rx_crc.start.eq(1)
                    m.d.sync += [count.eq(0), wpos.eq(0), idle.eq(0)]
                    m.next = "CMD"
            for st, nxt in (("CMD", "LEN0"), ("LEN0", "LEN1")):
                with m.State(st):
                    with m.If(rx_take):
                        m.d.comb += [rx_crc.valid.eq(1), rx_crc.data.eq(rx_byte)]
                        m.d.sync += idle.eq(0)
                        if st == "CMD":
                            m.d.sync += cmd.eq(rx_byte)
                        else:
                            m.d.sync += length[:8].eq(rx_byte)
                        m.next = nxt
                    with m.Elif(idle == self._timeout):
                        m.next = "HUNT"
                    with m.Else():
                        m.d.sync += idle.eq(idle + 1)
            with m.State("LEN1"):
                with m.If(rx_take):
                    m.d.comb += [rx_crc.valid.eq(1), rx_crc.data.eq(rx_byte)]
                    m.d.sync += [idle.eq(0), length[8:].eq(rx_byte)]
                    with m.If(Cat(length[:8], rx_byte) > MAX_PAYLOAD):
                        m.d.sync += resp_len.eq(0)
                        respond(Status.BAD_LENGTH)
                    with m.Elif(Cat(length[:8], rx_byte) == 0):
                        m.next = "CRC"
                    with m.Else():
                        m.next = "PAYLOAD"
                with m.Elif(idle == self._timeout):
                    m.next = "HUNT"
                with m.Else():
                    m.d.sync += idle.eq(idle + 1)
            with m.State("PAYLOAD"):
                with m.If(rx_take):
                    m.d.comb += [frame.w_en.eq(1), frame.w_addr.eq(count), frame.w_data.eq(rx_byte)]
                    m.d.comb += [rx_crc.valid.eq(1), rx_crc.data.eq(rx_byte)]
                    m.d.sync += [idle.eq(0), count.eq(count + 1),
                                 wpos.eq(Array([wpos + 1, 0])[wpos + 1 == word_bytes])]
                    with m.If(count + 1 == length):
                        m.next = "CRC"
                with m.Elif(idle == self._timeout):
                    m.next = "HUNT"
                with m.Else():
                    m.d.sync += idle.eq(idle + 1)
            with m.State("CRC"):
                with m.If(rx_take):
                    m.d.sync += [resp_len.eq(0), ptr.eq(0), nread.eq(0), count.eq(0)]
                    with m.If(rx_byte != crc):
                        respond(Status.BAD_CRC)
                    with m.Elif(lost):
                        m.d.sync += lost.eq(0)
                        respond(Status.LINK)
                    with m.Elif(wpos != 0):
                        respond(Status.BAD_LENGTH)
                    with m.Else():
                        with m.Switch(cmd):
                            with m.Case(Cmd.INFO):
                                with m.If(length != 0):
                                    respond(Status.BAD_LENGTH)
                                with m.Else():
                                    m.d.sync += resp_len.eq(len(lay.info_payload()))
                                    respond(Status.OK)
                            with m.Case(Cmd.RESULT):
                                with m.If(length != 0):
                                    respond(Status.BAD_LENGTH)
                                with m.Else():
                                    m.d.sync += resp_len.eq(8 + out_count * lay.spike_bytes)
                                    respond(Array([Status.OK, Status.OUTPUT_FULL])[out_full])
                            with m.Case(Cmd.CFG, Cmd.SPIKES):
                                m.next = "FETCH"
                            with m.Case(Cmd.WEIGHTS):
                                with m.If(Const(mesh)):
                                    respond(Status.BAD_CMD)
                                with m.Elif(length < 4):
                                    respond(Status.BAD_LENGTH)
                                with m.Else():
                                    m.next = "FETCH"
                            with m.Case(Cmd.RUN):
                                with m.If(length != (12 if mesh else 2)):
                                    respond(Status.BAD_LENGTH)
                                with m.Else():
                                    m.next = "FETCH"
                            with m.Default():
                                respond(Status.BAD_CMD)
                with m.Elif(idle == self._timeout):
                    m.next = "HUNT"
                with m.Else():
                    m.d.sync += idle.eq(idle + 1)

            # ---------------- execute: read the payload word by word ----------------
            with m.State("FETCH"):
                with m.If(ptr == length):
                    with m.If(cmd == Cmd.RUN):
                        m.next = "RUN_START"
                    with m.Else():
                        respond(Status.OK)
                with m.Else():
                    m.d.comb += [frame.r_en.eq(1), frame.r_addr.eq(ptr)]
                    m.d.sync += ptr.eq(ptr + 1)
                    m.next = "FETCH_WAIT"
            with m.State("FETCH_WAIT"):
                m.d.sync += acc.eq(Cat(acc[8:], frame.r_data))
                with m.If(nread + 1 == need):
                    m.d.sync += nread.eq(0)
                    m.next = "DISPATCH"
                with m.Else():
                    m.d.sync += nread.eq(nread + 1)
                    m.next = "FETCH"
            with m.State("DISPATCH"):
                m.d.sync += count.eq(count + 1)   # words consumed
                with m.Switch(cmd):
                    with m.Case(Cmd.CFG):
                        m.next = "CFG_PUSH"
                    with m.Case(Cmd.WEIGHTS):   # one PE only (a mesh answers BAD_CMD before this)
                        with m.If(count == 0):
                            m.d.sync += w_row.eq(word(2))
                            m.next = "FETCH"
                        with m.Elif(count == 1):
                            m.d.sync += w_neuron.eq(word(2))
                            m.next = "FETCH"
                        with m.Else():
                            m.next = "FETCH" if mesh else "WEIGHT_PUSH"
                    with m.Case(Cmd.SPIKES):
                        # Mesh words are flits replayed as they are (no time order to check).
                        s_time = Const(0, tb) if mesh else word(lay.in_bytes)[ib:ib + tb]
                        with m.If((in_count != 0) & (s_time < last_time)):
                            m.d.sync += [in_count.eq(0), last_time.eq(0)]
                            respond(Status.ORDER)
                        with m.Elif(in_count == lay.in_depth):
                            m.d.sync += [in_count.eq(0), last_time.eq(0)]
                            respond(Status.INPUT_FULL)
                        with m.Else():
                            m.d.comb += [inbuf.w_en.eq(1), inbuf.w_addr.eq(in_count),
                                         inbuf.w_data.eq(word(lay.in_bytes)[:lay.in_word_bits])]
                            m.d.sync += [in_count.eq(in_count + 1), last_time.eq(s_time)]
                            m.next = "FETCH"
                    with m.Case(Cmd.RUN):
                        # Words: t_end, then (mesh) completions, pred_node, PE nodes, window, early exit.
                        with m.If(count == 1):
                            m.d.sync += completions.eq(word(2))
                            m.next = "FETCH"
                        with m.Elif(count == 2):
                            m.d.sync += pred_node.eq(word(2))
                            m.next = "FETCH"
                        with m.Elif(count == 3):
                            m.d.sync += n_pe.eq(word(2))
                            m.next = "FETCH"
                        with m.Elif(count == 4):
                            m.d.sync += window.eq(word(2))
                            m.next = "FETCH"
                        with m.Elif(count == 5):
                            m.d.sync += early.eq(word(2) != 0)
                            m.next = "FETCH"
                        with m.Elif((word(2) < 1) | (word(2) > cfg.max_t_end) |
                                    ((in_count != 0) & (last_time > word(2)))):
                            respond(Status.RANGE)
                        with m.Else():
                            m.d.sync += t_end.eq(word(2))
                            m.next = "FETCH"
            with m.State("CFG_PUSH"):
                m.d.comb += [cfg_out.valid.eq(1),
                             cfg_out.payload.as_value().eq(word(lay.cfg_bytes)[:lay.cfg_bits])]
                with m.If(cfg_out.ready):
                    m.next = "FETCH"
            if not mesh:
                with m.State("WEIGHT_PUSH"):
                    m.d.comb += [self.cfg.valid.eq(1), self.cfg.payload.target.eq(L.CfgTarget.WEIGHT),
                                 self.cfg.payload.row.eq(w_row), self.cfg.payload.neuron.eq(w_neuron),
                                 self.cfg.payload.data.eq(word(lay.weight_bytes)[:cfg.weight_bits])]
                    with m.If(self.cfg.ready):
                        m.d.sync += w_neuron.eq(w_neuron + 1)
                        m.next = "FETCH"

            # ---------------- RUN: replay the input buffer with every step's STEP_END ----------------
            with m.State("RUN_START"):
                m.d.sync += [out_count.eq(0), out_full.eq(0), have_best.eq(0), cycles.eq(0), done.eq(0),
                             k.eq(0), cur_t.eq(0), seen.eq(0)]
                if mesh:
                    # The buffered flits carry START, spikes and markers for every node.
                    m.d.sync += [running.eq(1), cycles.eq(1)]
                    m.d.sync += [e.eq(-1) for e in last_end]
                    m.next = "RUN_READ"
                else:
                    emit_event(L.EventKind.START)
                    with m.If(self.i.ready):
                        m.d.sync += [running.eq(1), cycles.eq(1)]
                        m.next = "RUN_READ"
            with m.State("RUN_READ"):
                with m.If(done if mesh else Const(0)):   # early exit: the rest of the image is dropped
                    m.next = "RUN_WAIT"
                with m.Elif(k == in_count):
                    m.next = "RUN_WAIT" if mesh else "RUN_TAIL"
                with m.Else():
                    m.d.comb += [inbuf.r_en.eq(1), inbuf.r_addr.eq(k)]
                    m.next = "RUN_SPIKE"
            with m.State("RUN_SPIKE"):
                # On acceptance the next word is read at once (one word per cycle while the receiver keeps up).
                def consume():
                    m.d.sync += k.eq(k + 1)
                    with m.If(k + 1 != in_count):
                        m.d.comb += [inbuf.r_en.eq(1), inbuf.r_addr.eq(k + 1)]
                    with m.Else():
                        m.next = "RUN_READ"

                if mesh:
                    fl = flit_layout(self._noc)(inbuf.r_data)
                    ev = L.event_layout(cfg)(fl.payload[:L.event_layout(cfg).size])
                    step_of = (fl.kind == FlitKind.EVENT) & (ev.kind != L.EventKind.START)  # STARTs never wait
                    go = (window == 0) | ~step_of | (ev.time <= floor + window)
                    with m.If(done):
                        m.next = "RUN_WAIT"
                    with m.Elif(go):
                        m.d.comb += [in_out.valid.eq(1), in_out.payload.as_value().eq(inbuf.r_data)]
                        with m.If(in_out.ready):
                            consume()
                else:
                    s_index, s_time = inbuf.r_data[:ib], inbuf.r_data[ib:ib + tb]
                    with m.If(s_time != cur_t):
                        emit_event(L.EventKind.STEP_END, time=cur_t)
                        with m.If(self.i.ready):
                            m.d.sync += cur_t.eq(cur_t + 1)
                    with m.Else():
                        emit_event(L.EventKind.SPIKE, index=s_index, time=s_time)
                        with m.If(self.i.ready):
                            consume()
            if not mesh:
                with m.State("RUN_TAIL"):
                    emit_event(L.EventKind.STEP_END, time=cur_t)
                    with m.If(self.i.ready):
                        m.d.sync += cur_t.eq(cur_t + 1)
                        with m.If(cur_t == t_end):
                            m.next = "RUN_WAIT"
            with m.State("RUN_WAIT"):
                with m.If(done):
                    m.d.sync += [in_count.eq(0), last_time.eq(0),
                                 resp_len.eq(8 + out_count * lay.spike_bytes)]
                    respond(Array([Status.OK, Status.OUTPUT_FULL])[out_full])

            # ---------------- send the response ----------------
            def send(byte, nxt, *, crc_in=True):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(byte)]
                with m.If(self.tx.ready):
                    if crc_in:
                        tx_crc_feed(byte)
                    m.next = nxt
                    return True

            with m.State("SEND_SYNC"):
                m.d.comb += tx_crc_proc.start.eq(1)
                m.d.sync += count.eq(0)
                send(Const(SYNC_RESP, 8), "SEND_CMD", crc_in=False)
            with m.State("SEND_CMD"):
                send(cmd, "SEND_STATUS")
            with m.State("SEND_STATUS"):
                send(status, "SEND_LEN0")
            with m.State("SEND_LEN0"):
                send(resp_len[:8], "SEND_LEN1")
            with m.State("SEND_LEN1"):
                with m.If(resp_len == 0):
                    send(resp_len[8:], "SEND_CRC")
                with m.Elif(cmd == Cmd.INFO):
                    send(resp_len[8:], "SEND_INFO")
                with m.Else():
                    send(resp_len[8:], "SEND_HDR")
            with m.State("SEND_INFO"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(info[count])]
                with m.If(self.tx.ready):
                    tx_crc_feed(info[count])
                    m.d.sync += count.eq(count + 1)
                    with m.If(count + 1 == resp_len):
                        m.next = "SEND_CRC"
            with m.State("SEND_HDR"):
                byte = result_hdr.word_select(count[:3], 8)
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(byte)]
                with m.If(self.tx.ready):
                    tx_crc_feed(byte)
                    m.d.sync += [count.eq(count + 1), spk.eq(0)]
                    with m.If(count == 7):
                        with m.If(out_count == 0):
                            m.next = "SEND_CRC"
                        with m.Else():
                            m.next = "SEND_SPK_READ"
            with m.State("SEND_SPK_READ"):
                m.d.comb += [outbuf.r_en.eq(1), outbuf.r_addr.eq(spk)]
                m.next = "SEND_SPK_LATCH"
            with m.State("SEND_SPK_LATCH"):
                m.d.sync += [spk_word.eq(outbuf.r_data), spk_byte.eq(0)]
                m.next = "SEND_SPK"
            with m.State("SEND_SPK"):
                byte = spk_word[:8]
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(byte)]
                with m.If(self.tx.ready):
                    tx_crc_feed(byte)
                    m.d.sync += [spk_word.eq(spk_word >> 8),
                                 spk_byte.eq(spk_byte + 1)]
                    with m.If(spk_byte + 1 == lay.spike_bytes):
                        m.d.sync += spk.eq(spk + 1)
                        with m.If(spk + 1 == out_count):
                            m.next = "SEND_CRC"
                        with m.Else():
                            m.next = "SEND_SPK_READ"
            with m.State("SEND_CRC"):
                send(tx_crc, "HUNT", crc_in=False)

        # Bytes that arrive while the engine executes or answers are lost.
        receiving = fsm.ongoing("HUNT") | fsm.ongoing("CMD") | fsm.ongoing("LEN0") | fsm.ongoing("LEN1") | \
            fsm.ongoing("PAYLOAD") | fsm.ongoing("CRC")
        with m.If(rx_take & ~receiving):
            m.d.sync += lost.eq(1)
        return m
