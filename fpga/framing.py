"""The two ends of the framed host protocol (fpga/protocol.py, docs/fpga.md): the deframer turns received bytes
into one checked request at a time, the enframer turns a response header and its body bytes into a frame. Both
use the link's CRC-8 (``fpga.protocol.CRC8``, an ``amaranth.lib.crc`` Processor each); neither knows what the
commands mean (fpga/engine.py does)."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.sram import SRAM

from .protocol import CRC8, MAX_PAYLOAD, SYNC_REQ, SYNC_RESP, Status

__all__ = ["request_layout", "response_layout", "Deframer", "Enframer"]


def request_layout() -> data.StructLayout:
    """A received request: command byte, payload length, and the frame's own status (OK, or BAD_CRC /
    BAD_LENGTH / LINK: then the command is not executed)."""
    return data.StructLayout({"cmd": unsigned(8), "length": unsigned(16), "status": unsigned(8)})


def response_layout() -> data.StructLayout:
    """The header of a response; ``length`` body bytes follow on the enframer's ``body`` stream."""
    return data.StructLayout({"cmd": unsigned(8), "status": unsigned(8), "length": unsigned(16)})


class Deframer(wiring.Component):
    """Received bytes -> one request at a time, its payload in a frame buffer.

    Parameters
    ----------
    word_bytes : dict
        Command byte -> bytes per payload word (others: 1); a payload that is not whole words is BAD_LENGTH.
    timeout : int
        Cycles without a byte after which a partly received frame is dropped (resynchronisation).

    Ports
    -----
    rx : In(stream of unsigned(8)), always ready; rx_error : In(1), a receiver error (overrun, framing)
    req : Out(stream of request_layout), held until the request is served (its response sent); bytes that
        arrive meanwhile are lost, and the next request answers ``Status.LINK``
    frame_addr : In(range(MAX_PAYLOAD)), frame_en : In(1), frame_data : Out(8) — the frame buffer's read port
        (data one cycle after ``frame_en``)
    """

    def __init__(self, *, word_bytes: dict, timeout: int):
        self._word_bytes, self._timeout = dict(word_bytes), timeout
        super().__init__({"rx": In(stream.Signature(unsigned(8))), "rx_error": In(1),
                          "req": Out(stream.Signature(request_layout())),
                          "frame_addr": In(range(MAX_PAYLOAD)), "frame_en": In(1), "frame_data": Out(8)})

    def elaborate(self, platform):
        m = Module()
        # Collision-free (rtl/sram.py): bytes are written while a frame is received, and the controller reads
        # the buffer only while the request is delivered (DELIVER), when nothing is written.
        m.submodules.frame = frame = SRAM(shape=8, depth=MAX_PAYLOAD, collision_free=True)
        m.submodules.crc = crc = CRC8.create()
        m.d.comb += [frame.r_addr.eq(self.frame_addr), frame.r_en.eq(self.frame_en),
                     self.frame_data.eq(frame.r_data)]

        cmd, length, status = self.req.payload.cmd, self.req.payload.length, self.req.payload.status
        cmd_r, length_r, status_r = Signal(8), Signal(16), Signal(8)
        m.d.comb += [cmd.eq(cmd_r), length.eq(length_r), status.eq(status_r)]
        count = Signal(16)
        wpos = Signal(range(max([1, *self._word_bytes.values()]) + 1))
        lost = Signal()                # a byte was lost since the last request
        idle = Signal(range(self._timeout + 1))
        word_bytes = Signal.like(wpos)
        m.d.comb += word_bytes.eq(1)
        with m.Switch(cmd_r):
            for c, n in self._word_bytes.items():
                with m.Case(c):
                    m.d.comb += word_bytes.eq(n)

        m.d.comb += self.rx.ready.eq(1)
        byte, take = self.rx.payload, self.rx.valid

        def feed():
            m.d.comb += [crc.valid.eq(1), crc.data.eq(byte)]
            m.d.sync += idle.eq(0)

        def wait():
            with m.Elif(idle == self._timeout):
                m.next = "HUNT"
            with m.Else():
                m.d.sync += idle.eq(idle + 1)

        def deliver(code):
            m.d.sync += status_r.eq(code)
            m.next = "DELIVER"

        with m.FSM() as fsm:
            with m.State("HUNT"):
                with m.If(take & (byte == SYNC_REQ)):
                    m.d.comb += crc.start.eq(1)
                    m.d.sync += [count.eq(0), wpos.eq(0), idle.eq(0)]
                    m.next = "CMD"
            with m.State("CMD"):
                with m.If(take):
                    feed()
                    m.d.sync += cmd_r.eq(byte)
                    m.next = "LEN0"
                wait()
            with m.State("LEN0"):
                with m.If(take):
                    feed()
                    m.d.sync += length_r[:8].eq(byte)
                    m.next = "LEN1"
                wait()
            with m.State("LEN1"):
                with m.If(take):
                    feed()
                    m.d.sync += length_r[8:].eq(byte)
                    total = Cat(length_r[:8], byte)
                    with m.If(total > MAX_PAYLOAD):
                        deliver(Status.BAD_LENGTH)   # answered at once, the rest of the frame is not awaited
                    with m.Elif(total == 0):
                        m.next = "CRC"
                    with m.Else():
                        m.next = "PAYLOAD"
                wait()
            with m.State("PAYLOAD"):
                with m.If(take):
                    feed()
                    m.d.comb += [frame.w_en.eq(1), frame.w_addr.eq(count), frame.w_data.eq(byte)]
                    m.d.sync += [count.eq(count + 1), wpos.eq(wpos + 1)]
                    with m.If(wpos + 1 == word_bytes):
                        m.d.sync += wpos.eq(0)
                    with m.If(count + 1 == length_r):
                        m.next = "CRC"
                wait()
            with m.State("CRC"):
                with m.If(take):
                    m.d.sync += idle.eq(0)
                    with m.If(byte != crc.crc):
                        deliver(Status.BAD_CRC)
                    with m.Elif(lost):
                        m.d.sync += lost.eq(0)
                        deliver(Status.LINK)
                    with m.Elif(wpos != 0):
                        deliver(Status.BAD_LENGTH)
                    with m.Else():
                        deliver(Status.OK)
                wait()
            with m.State("DELIVER"):
                m.d.comb += self.req.valid.eq(1)
                with m.If(self.req.ready):
                    m.next = "HUNT"
        with m.If(self.rx_error | (take & fsm.ongoing("DELIVER"))):
            m.d.sync += lost.eq(1)
        return m


class Enframer(wiring.Component):
    """A response header and ``length`` body bytes -> SYNC_RESP, cmd, status, length, body, CRC on ``tx``.

    Ports
    -----
    resp : In(stream of response_layout), held by the sender for the whole response: it is taken (ready) in
        the cycle the CRC byte is sent
    body : In(stream of unsigned(8)), the body bytes, taken one per sent byte
    tx : Out(stream of unsigned(8))
    """

    def __init__(self):
        super().__init__({"resp": In(stream.Signature(response_layout())),
                          "body": In(stream.Signature(unsigned(8))), "tx": Out(stream.Signature(unsigned(8)))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = crc = CRC8.create()
        hdr = self.resp.payload
        count = Signal(16)

        def send(byte, nxt, *, crc_in=True):
            m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(byte)]
            with m.If(self.tx.ready):
                if crc_in:
                    m.d.comb += [crc.valid.eq(1), crc.data.eq(byte)]
                m.next = nxt

        with m.FSM():
            with m.State("SYNC"):
                with m.If(self.resp.valid):
                    m.d.comb += crc.start.eq(1)
                    m.d.sync += count.eq(0)
                    send(SYNC_RESP, "CMD", crc_in=False)
            with m.State("CMD"):
                send(hdr.cmd, "STATUS")
            with m.State("STATUS"):
                send(hdr.status, "LEN0")
            with m.State("LEN0"):
                send(hdr.length[:8], "LEN1")
            with m.State("LEN1"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(hdr.length[8:])]
                with m.If(self.tx.ready):
                    m.d.comb += [crc.valid.eq(1), crc.data.eq(hdr.length[8:])]
                    with m.If(hdr.length == 0):
                        m.next = "CRC"
                    with m.Else():
                        m.next = "BODY"
            with m.State("BODY"):
                m.d.comb += [self.tx.valid.eq(self.body.valid), self.tx.payload.eq(self.body.payload),
                             self.body.ready.eq(self.tx.ready)]
                with m.If(self.body.valid & self.tx.ready):
                    m.d.comb += [crc.valid.eq(1), crc.data.eq(self.body.payload)]
                    m.d.sync += count.eq(count + 1)
                    with m.If(count + 1 == hdr.length):
                        m.next = "CRC"
            with m.State("CRC"):
                send(crc.crc, "SYNC", crc_in=False)
                m.d.comb += self.resp.ready.eq(self.tx.ready)
        return m
