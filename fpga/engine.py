"""The protocol engine: executes the framed host protocol (:mod:`fpga.protocol`, docs/fpga.md) between a
byte stream (the UART) and an accelerator. Three parts, composed:

* :class:`fpga.framing.Deframer` — receives one request frame into its buffer and checks its CRC;
* :class:`CommandController` (here) — executes the commands: configuration words, the input buffer, RUN,
  output capture, the prediction (earliest spike, lowest index), the cycle count, the response body;
* :class:`fpga.framing.Enframer` — sends the response frame with its CRC;

and a back end for the accelerator (:mod:`fpga.backends`): :class:`~fpga.backends.PEBackend` (one PE, layers in
turn) or :class:`~fpga.backends.MeshBackend` (the mesh at its host port).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.config import PEConfig
from rtl.noc_layouts import NocConfig
from rtl.sram import SRAM

from .backends import MeshBackend, PEBackend
from .framing import Deframer, Enframer, request_layout, response_layout
from .protocol import MAX_PAYLOAD, NO_PREDICTION, Cmd, ProtocolLayout, Status

__all__ = ["ProtocolEngine", "CommandController"]


class CommandController(wiring.Component):
    """Executes checked requests for ``backend`` (see the module docstring).

    Ports
    -----
    req : In(stream of framing.request_layout); frame_addr, frame_en : Out, frame_data : In(8) — the
        deframer's request and frame buffer
    resp : Out(stream of framing.response_layout); body : Out(stream of unsigned(8)) — to the enframer
    busy : Out(1), a run is in progress
    and the back end's controller-side ports (fpga/backends.py), mirrored.
    """

    def __init__(self, backend, layout: ProtocolLayout):
        self._backend, self._layout = backend, layout
        ports = {"req": In(stream.Signature(request_layout())), "frame_addr": Out(range(MAX_PAYLOAD)),
                 "frame_en": Out(1), "frame_data": In(8), "resp": Out(stream.Signature(response_layout())),
                 "body": Out(stream.Signature(unsigned(8))), "busy": Out(1)}
        for name in ("cmd_cfg", "run", "words", "running", "finish", "spike", "counts") + \
                (("cmd_weight",) if backend.has_weights else ()):
            ports[name] = backend.signature.members[name].flip()
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        lay, be = self._layout, self._backend
        sbits = lay.spike_bits
        ib, tb = lay.index_bits, lay.time_bits
        acc_bytes = max(lay.cfg_bytes, lay.in_bytes, lay.spike_bytes, lay.weight_bytes, 2)
        run_bytes = 2 * (2 + len(be.run_params)) - 2   # t_end and the back end's parameters, 2 bytes each

        # Collision-free (rtl/sram.py): the input buffer is written by SPIKES and read by RUN (never both at
        # once); a captured spike is written at out_count, above every word the response reads.
        m.submodules.inbuf = inbuf = SRAM(shape=lay.in_word_bits, depth=lay.in_depth, collision_free=True)
        m.submodules.outbuf = outbuf = SRAM(shape=sbits, depth=lay.out_depth, collision_free=True)
        req = self.req.payload
        cmd, length = req.cmd, req.length

        # ---- word assembly from the frame buffer ----
        acc = Signal(8 * acc_bytes)
        ptr = Signal(range(MAX_PAYLOAD + 1))
        nread = Signal(range(acc_bytes + 1))
        # Payload words consumed, saturating where the commands stop telling words apart (WEIGHTS: the two
        # header words, then weight groups; RUN: t_end and the parameters, a length the request checked).
        count_top = max(2, len(be.run_params) + 1)
        count = Signal(range(count_top + 1))
        need = Signal(range(acc_bytes + 1))   # bytes of the next word
        with m.Switch(cmd):
            with m.Case(Cmd.CFG):
                m.d.comb += need.eq(lay.cfg_bytes)
            with m.Case(Cmd.WEIGHTS):   # header: row, neuron (2 bytes each), then weight groups
                m.d.comb += need.eq(Mux(count < 2, 2, lay.weight_bytes))
            with m.Case(Cmd.SPIKES):
                m.d.comb += need.eq(lay.in_bytes)
            with m.Default():
                m.d.comb += need.eq(2)

        def word(nbytes):
            """The little-endian word of the last ``nbytes`` bytes shifted into ``acc``."""
            return acc[8 * (acc_bytes - nbytes):]

        # ---- run state ----
        in_count = Signal(range(lay.in_depth + 1))
        last_time = Signal(tb)
        t_end = Signal(16)
        params = [Signal(16, name=p) for p in be.run_params]
        k = Signal(range(lay.in_depth + 1))
        running, done = Signal(), Signal()
        cycles = Signal(32)
        out_count = Signal(range(lay.out_depth + 1))
        out_full = Signal()
        have_best, best_index, best_time = Signal(), Signal(ib), Signal(tb)
        # As wide as the back end takes them (it keeps the low bits; the increment below is exact there).
        if be.has_weights:
            w = self.cmd_weight.payload
            w_row, w_neuron = Signal(w.row.shape()), Signal(w.neuron.shape())
        m.d.comb += [self.busy.eq(running), self.running.eq(running)]

        # ---- output capture (always on) ----
        with m.If(running):
            m.d.sync += cycles.eq(cycles + 1)
        with m.If(self.finish & running):
            m.d.sync += [running.eq(0), done.eq(1)]
        s_index, s_time = self.spike.payload[:ib], self.spike.payload[ib:ib + tb]
        with m.If(self.spike.valid):
            with m.If(out_count < lay.out_depth):
                m.d.comb += [outbuf.w_en.eq(1), outbuf.w_addr.eq(out_count), outbuf.w_data.eq(self.spike.payload)]
                m.d.sync += out_count.eq(out_count + 1)
            with m.Else():
                m.d.sync += out_full.eq(1)
            with m.If(self.counts & (~have_best | (s_time < best_time) |
                                     ((s_time == best_time) & (s_index < best_index)))):
                m.d.sync += [have_best.eq(1), best_index.eq(s_index), best_time.eq(s_time)]

        # ---- response ----
        status, resp_len = Signal(8), Signal(16)
        m.d.comb += [self.resp.payload.cmd.eq(cmd), self.resp.payload.status.eq(status),
                     self.resp.payload.length.eq(resp_len)]
        result_len = 8 + out_count * lay.spike_bytes
        result_status = Mux(out_full, Status.OUTPUT_FULL, Status.OK)

        def respond(code, nbytes=0):
            m.d.sync += [status.eq(code), resp_len.eq(nbytes)]
            m.next = "RESPOND"

        with m.FSM(name="controller"):
            with m.State("IDLE"):
                with m.If(self.req.valid):
                    m.d.sync += [ptr.eq(0), nread.eq(0), count.eq(0)]
                    with m.If(req.status != Status.OK):
                        respond(req.status)
                    with m.Else():
                        with m.Switch(cmd):
                            with m.Case(Cmd.INFO):
                                with m.If(length != 0):
                                    respond(Status.BAD_LENGTH)
                                with m.Else():
                                    respond(Status.OK, len(lay.info_payload()))
                            with m.Case(Cmd.RESULT):
                                with m.If(length != 0):
                                    respond(Status.BAD_LENGTH)
                                with m.Else():
                                    respond(result_status, result_len)
                            with m.Case(Cmd.CFG, Cmd.SPIKES):
                                m.next = "FETCH"
                            if be.has_weights:
                                with m.Case(Cmd.WEIGHTS):
                                    with m.If(length < 4):
                                        respond(Status.BAD_LENGTH)
                                    with m.Else():
                                        m.next = "FETCH"
                            with m.Case(Cmd.RUN):
                                with m.If(length != run_bytes):
                                    respond(Status.BAD_LENGTH)
                                with m.Else():
                                    m.next = "FETCH"
                            with m.Default():
                                respond(Status.BAD_CMD)

            # ---------------- read the payload word by word ----------------
            with m.State("FETCH"):
                with m.If(ptr == length):
                    with m.If(cmd == Cmd.RUN):
                        m.next = "RUN_START"
                    with m.Else():
                        respond(Status.OK)
                with m.Else():
                    m.d.comb += [self.frame_en.eq(1), self.frame_addr.eq(ptr)]
                    m.d.sync += ptr.eq(ptr + 1)
                    m.next = "FETCH_WAIT"
            with m.State("FETCH_WAIT"):
                m.d.sync += acc.eq(Cat(acc[8:], self.frame_data))
                with m.If(nread + 1 == need):
                    m.d.sync += nread.eq(0)
                    m.next = "DISPATCH"
                with m.Else():
                    m.d.sync += nread.eq(nread + 1)
                    m.next = "FETCH"
            with m.State("DISPATCH"):
                m.d.sync += count.eq(Mux(count == count_top, count, count + 1))
                with m.Switch(cmd):
                    with m.Case(Cmd.CFG):
                        m.next = "CFG_PUSH"
                    if be.has_weights:
                        with m.Case(Cmd.WEIGHTS):
                            with m.If(count == 0):
                                m.d.sync += w_row.eq(word(2))
                                m.next = "FETCH"
                            with m.Elif(count == 1):
                                m.d.sync += w_neuron.eq(word(2))
                                m.next = "FETCH"
                            with m.Else():
                                m.next = "WEIGHT_PUSH"
                    with m.Case(Cmd.SPIKES):
                        in_word = word(lay.in_bytes)[:lay.in_word_bits]
                        w_time = be.word_time(in_word)
                        with m.If((in_count != 0) & (w_time < last_time)):
                            m.d.sync += [in_count.eq(0), last_time.eq(0)]
                            respond(Status.ORDER)
                        with m.Elif(in_count == lay.in_depth):
                            m.d.sync += [in_count.eq(0), last_time.eq(0)]
                            respond(Status.INPUT_FULL)
                        with m.Else():
                            m.d.comb += [inbuf.w_en.eq(1), inbuf.w_addr.eq(in_count), inbuf.w_data.eq(in_word)]
                            m.d.sync += [in_count.eq(in_count + 1), last_time.eq(w_time)]
                            m.next = "FETCH"
                    with m.Case(Cmd.RUN):
                        # Words: t_end, then the back end's parameters in order.
                        with m.If(count == 0):
                            with m.If((word(2) < 1) | (word(2) > (1 << tb) - 2) |
                                      ((in_count != 0) & (last_time > word(2)))):
                                respond(Status.RANGE)
                            with m.Else():
                                m.d.sync += t_end.eq(word(2))
                                m.next = "FETCH"
                        for n, p in enumerate(params):
                            with m.If(count == n + 1):
                                m.d.sync += p.eq(word(2))
                                m.next = "FETCH"
            with m.State("CFG_PUSH"):
                m.d.comb += [self.cmd_cfg.valid.eq(1), self.cmd_cfg.payload.eq(word(lay.cfg_bytes)[:lay.cfg_bits])]
                with m.If(self.cmd_cfg.ready):
                    m.next = "FETCH"
            if be.has_weights:
                with m.State("WEIGHT_PUSH"):
                    m.d.comb += [self.cmd_weight.valid.eq(1), self.cmd_weight.payload.row.eq(w_row),
                                 self.cmd_weight.payload.neuron.eq(w_neuron),
                                 self.cmd_weight.payload.data.eq(word(lay.weight_bytes)[:lay.weight_word_bits])]
                    with m.If(self.cmd_weight.ready):
                        m.d.sync += w_neuron.eq(w_neuron + lay.cfg_weights)
                        m.next = "FETCH"

            # ---------------- RUN: the back end replays the input buffer ----------------
            with m.State("RUN_START"):
                m.d.comb += [self.run.valid.eq(1), self.run.payload.t_end.eq(t_end),
                             self.run.payload.n_words.eq(in_count)]
                for name, p in zip(be.run_params, params, strict=True):
                    m.d.comb += getattr(self.run.payload, name).eq(p)
                with m.If(self.run.ready):
                    m.d.sync += [out_count.eq(0), out_full.eq(0), have_best.eq(0), cycles.eq(1), done.eq(0),
                                 k.eq(0), running.eq(1)]
                    m.next = "RUN_READ"
            with m.State("RUN_READ"):
                with m.If(done | (k == in_count)):   # done: early exit drops the rest of the image
                    m.next = "RUN_WAIT"
                with m.Else():
                    m.d.comb += [inbuf.r_en.eq(1), inbuf.r_addr.eq(k)]
                    m.next = "RUN_FEED"
            with m.State("RUN_FEED"):
                # On acceptance the next word is read at once (one word per cycle while the back end keeps up).
                with m.If(done):
                    m.next = "RUN_WAIT"
                with m.Else():
                    m.d.comb += [self.words.valid.eq(1), self.words.payload.eq(inbuf.r_data)]
                    with m.If(self.words.ready):
                        m.d.sync += k.eq(k + 1)
                        with m.If(k + 1 != in_count):
                            m.d.comb += [inbuf.r_en.eq(1), inbuf.r_addr.eq(k + 1)]
                        with m.Else():
                            m.next = "RUN_READ"
            with m.State("RUN_WAIT"):
                with m.If(done):
                    m.d.sync += [in_count.eq(0), last_time.eq(0)]
                    respond(result_status, result_len)

            # ---------------- the response (the enframer sends it; the body comes from here) ----------------
            with m.State("RESPOND"):
                m.d.comb += self.resp.valid.eq(1)
                with m.If(self.resp.ready):
                    m.d.comb += self.req.ready.eq(1)
                    m.next = "IDLE"

        # Response body: INFO's geometry, or a result (8 header bytes, then the spike words).
        info = Array(Const(b, 8) for b in lay.info_payload())
        pred16, count16 = Signal(16), Signal(16)
        m.d.comb += [pred16.eq(Mux(have_best, best_index, NO_PREDICTION)), count16.eq(out_count)]
        result_hdr = Cat(cycles, pred16, count16)   # 8 bytes: the result_fields of fpga.protocol
        info_len = len(lay.info_payload())   # INFO's body length whenever the INFO state is entered
        b_count = Signal(range(max(info_len, 8)))
        spk = Signal(range(lay.out_depth + 1))
        spk_word = Signal(8 * lay.spike_bytes)
        spk_byte = Signal(range(lay.spike_bytes + 1))
        with m.FSM(name="body"):
            with m.State("START"):
                m.d.sync += [b_count.eq(0), spk.eq(0)]
                with m.If(self.resp.valid & (resp_len != 0)):
                    with m.If(cmd == Cmd.INFO):
                        m.next = "INFO"
                    with m.Else():
                        m.next = "HDR"
            with m.State("INFO"):
                m.d.comb += [self.body.valid.eq(1), self.body.payload.eq(info[b_count])]
                with m.If(self.body.ready):
                    m.d.sync += b_count.eq(b_count + 1)
                    with m.If(b_count == info_len - 1):
                        m.next = "END"
            with m.State("HDR"):
                m.d.comb += [self.body.valid.eq(1), self.body.payload.eq(result_hdr.word_select(b_count[:3], 8))]
                with m.If(self.body.ready):
                    m.d.sync += b_count.eq(b_count + 1)
                    with m.If(b_count == 7):
                        with m.If(out_count == 0):
                            m.next = "END"
                        with m.Else():
                            m.next = "SPK_READ"
            with m.State("SPK_READ"):
                m.d.comb += [outbuf.r_en.eq(1), outbuf.r_addr.eq(spk)]
                m.next = "SPK_LATCH"
            with m.State("SPK_LATCH"):
                m.d.sync += [spk_word.eq(outbuf.r_data), spk_byte.eq(0)]
                m.next = "SPK"
            with m.State("SPK"):
                m.d.comb += [self.body.valid.eq(1), self.body.payload.eq(spk_word[:8])]
                with m.If(self.body.ready):
                    m.d.sync += [spk_word.eq(spk_word >> 8), spk_byte.eq(spk_byte + 1)]
                    with m.If(spk_byte + 1 == lay.spike_bytes):
                        m.d.sync += spk.eq(spk + 1)
                        with m.If(spk + 1 == out_count):
                            m.next = "END"
                        with m.Else():
                            m.next = "SPK_READ"
            with m.State("END"):
                with m.If(~self.resp.valid | self.resp.ready):
                    m.next = "START"
        return m


class ProtocolEngine(wiring.Component):
    """Host protocol engine: deframer -> command controller -> enframer, with the back end of the accelerator.

    Parameters
    ----------
    config : PEConfig
        Geometry of the accelerator (event and configuration word layouts).
    in_depth : int
        Input words buffered for one RUN (one PE: at least the network's input count; mesh: an image's flits).
    out_depth : int
        Output spikes captured per RUN (at least the neurons that can fire in one run).
    timeout : int
        Cycles without a byte after which a partly received frame is dropped (resynchronisation).
    noc : NocConfig or None
        The mesh behind the engine (:class:`~fpga.backends.MeshBackend`); None: one PE
        (:class:`~fpga.backends.PEBackend`).

    Ports
    -----
    rx : In(stream of unsigned(8)), bytes from the host; always ready (a byte arriving while the engine is
        busy is counted as lost and the next request answers ``Status.LINK``)
    rx_error : In(1), a receiver error (overrun, framing) happened; same effect as a lost byte
    tx : Out(stream of unsigned(8)), bytes to the host
    busy : Out(1), a run is in progress (for a LED)
    and the back end's accelerator ports: one PE ``cfg``, ``i``, ``o``; a mesh ``host_i``, ``host_o``, ``abort``.
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
        self.backend = PEBackend(config) if noc is None else MeshBackend(config, noc)
        self._layout = self.backend.layout(in_depth=in_depth, out_depth=out_depth)
        if 8 + out_depth * self._layout.spike_bytes > 0xFFFF:
            raise ValueError(f"out_depth: {out_depth} spikes of {self._layout.spike_bytes} bytes exceed the 65535-byte "
                             "response")
        ports = {"rx": In(stream.Signature(unsigned(8))), "rx_error": In(1),
                 "tx": Out(stream.Signature(unsigned(8))), "busy": Out(1)}
        ports.update({name: self.backend.signature.members[name] for name in self.backend.accelerator_ports})
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
        lay, be = self._layout, self.backend
        word_bytes = {Cmd.CFG: lay.cfg_bytes, Cmd.WEIGHTS: lay.weight_bytes, Cmd.SPIKES: lay.in_bytes}
        m.submodules.deframer = rx = Deframer(word_bytes=word_bytes, timeout=self._timeout)
        m.submodules.controller = ctl = CommandController(be, lay)
        m.submodules.enframer = tx = Enframer()
        m.submodules.backend = be
        wiring.connect(m, wiring.flipped(self.rx), rx.rx)
        wiring.connect(m, rx.req, ctl.req)
        wiring.connect(m, ctl.resp, tx.resp)
        wiring.connect(m, ctl.body, tx.body)
        wiring.connect(m, tx.tx, wiring.flipped(self.tx))
        m.d.comb += [rx.rx_error.eq(self.rx_error), rx.frame_addr.eq(ctl.frame_addr), rx.frame_en.eq(ctl.frame_en),
                     ctl.frame_data.eq(rx.frame_data), self.busy.eq(ctl.busy)]
        for name in ("cmd_cfg", "run", "words") + (("cmd_weight",) if be.has_weights else ()):
            wiring.connect(m, getattr(ctl, name), getattr(be, name))
        wiring.connect(m, be.spike, ctl.spike)
        m.d.comb += [be.running.eq(ctl.running), ctl.finish.eq(be.finish), ctl.counts.eq(be.counts)]
        for name in be.accelerator_ports:
            port, mine = getattr(be, name), getattr(self, name)
            if name == "abort":
                m.d.comb += mine.eq(port)
            elif name in ("o", "host_o"):
                wiring.connect(m, wiring.flipped(mine), port)
            else:
                wiring.connect(m, port, wiring.flipped(mine))
        return m
