"""The framed host protocol of the board tops: constants, CRC-8 and byte layouts shared by the gateware
(:mod:`fpga.engine`), the host driver (:mod:`fpga.driver`) and docs/fpga.md.

Everything here is about bytes on the serial line; the CRC is amaranth.lib.crc's CRC-8/SMBUS, whose software
form the host uses and whose hardware form (``Processor``) the engine uses.

Request (host -> board)::

    SYNC_REQ  CMD  LEN_LO  LEN_HI  PAYLOAD[LEN]  CRC

Response (board -> host), exactly one per request frame that reached the CRC byte (or was cut short by a
length error)::

    SYNC_RESP  CMD  STATUS  LEN_LO  LEN_HI  PAYLOAD[LEN]  CRC

``CRC`` is CRC-8 (polynomial 0x07, initial value 0, no reflection, no final XOR; "CRC-8/SMBUS") over every
byte after the sync byte. Multi-byte fields are little-endian.
"""

from __future__ import annotations

import enum
import math

from amaranth.lib.crc import catalog

__all__ = [
    "SYNC_REQ", "SYNC_RESP", "VERSION", "MAX_PAYLOAD", "Cmd", "Status", "crc8", "request", "response",
    "ProtocolLayout", "NO_PREDICTION", "CRC8",
]

SYNC_REQ = 0xA5
SYNC_RESP = 0x5A
#: Protocol version reported by INFO (2: the mesh RUN carries the run-ahead window and early exit; 3: WEIGHTS
#: carries groups of ``cfg_weights`` weights, one PE configuration word each; INFO reports ``cfg_weights``).
VERSION = 3
#: Largest request payload in bytes (the board's frame buffer; one 512-byte block RAM).
MAX_PAYLOAD = 512
#: Prediction field value when every output neuron is silent.
NO_PREDICTION = 0xFFFF


class Cmd(enum.IntEnum):
    """Request commands."""

    #: Empty payload. Response: the accelerator geometry (see :class:`ProtocolLayout.info_fields`).
    INFO = 0x01
    #: Payload: whole configuration words (``cfg_bytes`` each), written to the accelerator's ``cfg`` stream.
    CFG = 0x02
    #: Payload: ``row`` (2 bytes), ``neuron`` (2 bytes, a multiple of ``cfg_weights``), then weight groups
    #: (``weight_bytes`` each: ``cfg_weights`` two's complement ``weight_bits`` fields, the first in the low
    #: bits): group ``k`` goes to input ``row``, neurons ``neuron + k * cfg_weights ..`` (bulk weight loading,
    #: one PE configuration word per group).
    WEIGHTS = 0x03
    #: Payload: input words (``in_bytes`` each: a spike, or a whole flit for a mesh), appended to the
    #: board's input buffer. Spike times must not decrease (across frames too) until the next RUN.
    SPIKES = 0x04
    #: Payload: ``t_end`` (2 bytes); for a mesh also ``completions`` (2), ``pred_node`` (2), ``pe_nodes`` (2),
    #: ``window`` (2) and ``early_exit`` (2). One PE: START, then every step 0..t_end with its buffered spikes
    #: and a STEP_END, then wait for the PE's STEP_END(t_end). Mesh: replay the buffered flits (a flit of step s
    #: only once every PE node 0 .. pe_nodes - 1 has sent STEP_END(s - window); window 0: no gating), then
    #: wait for ``completions`` DONE / STEP_END(t_end) flits; spikes from nodes ``y * width + x >= pred_node``
    #: count for the prediction; with ``early_exit`` != 0 the run ends (the mesh is aborted) as soon as every
    #: output-layer node has closed the step of the earliest output spike. Empties the input buffer.
    #: Response: the result.
    RUN = 0x05
    #: Empty payload. Response: the result of the last RUN again (after a corrupted response).
    RESULT = 0x06


class Status(enum.IntEnum):
    """Response status codes."""

    OK = 0x00
    #: The request's CRC byte did not match; the request was not executed.
    BAD_CRC = 0x01
    #: Unknown command byte.
    BAD_CMD = 0x02
    #: LEN above MAX_PAYLOAD or not a whole number of words for the command.
    BAD_LENGTH = 0x03
    #: SPIKES: a spike time is earlier than the previous buffered one. The input buffer is emptied.
    ORDER = 0x04
    #: SPIKES: the input buffer is full. The input buffer is emptied.
    INPUT_FULL = 0x05
    #: RUN: a buffered spike time is later than ``t_end`` or ``t_end`` is outside 1..2**time_bits-2.
    RANGE = 0x06
    #: RUN / RESULT: more output spikes than the output buffer holds; the extra ones were dropped.
    OUTPUT_FULL = 0x07
    #: A received byte was lost (the host sent while the board was busy) or had a framing error.
    LINK = 0x08


class ProtocolLayout:
    """Byte sizes of the words on the link for one accelerator geometry (all derived, nothing stored twice).

    index_bits, time_bits : widths of a spike's index and time (the accelerator's event fields).
    cfg_bits : width of one configuration word.
    weight_bits : width of one weight.
    cfg_weights : weights per WEIGHTS entry (the PE's ``cfg_weights``: one configuration word each).
    in_depth, out_depth : spikes the input and output buffers hold.
    """

    def __init__(self, *, index_bits: int, time_bits: int, cfg_bits: int, weight_bits: int, in_depth: int,
                 out_depth: int, node_bits: int = 0, in_bits: int = 0, cfg_weights: int = 1):
        self.index_bits, self.time_bits, self.cfg_bits = index_bits, time_bits, cfg_bits
        self.weight_bits, self.in_depth, self.out_depth = weight_bits, in_depth, out_depth
        self.node_bits, self.in_bits, self.cfg_weights = node_bits, in_bits, cfg_weights

    @property
    def spike_bits(self) -> int:
        """An output spike on the link: ``index`` in the low ``index_bits`` bits, ``time`` above it, then
        (mesh only) the sending node ``src_x | src_y << x_bits`` in ``node_bits`` bits."""
        return self.index_bits + self.time_bits + self.node_bits

    @property
    def in_word_bits(self) -> int:
        """A SPIKES word: a spike (index, time) for one PE; a whole flit (``in_bits``) for a mesh."""
        return self.in_bits or self.index_bits + self.time_bits

    @property
    def in_bytes(self) -> int:
        return math.ceil(self.in_word_bits / 8)

    @property
    def spike_bytes(self) -> int:
        return math.ceil(self.spike_bits / 8)

    @property
    def cfg_bytes(self) -> int:
        return math.ceil(self.cfg_bits / 8)

    @property
    def weight_word_bits(self) -> int:
        """A WEIGHTS entry: ``cfg_weights`` weights."""
        return self.cfg_weights * self.weight_bits

    @property
    def weight_bytes(self) -> int:
        """Bytes of one WEIGHTS entry."""
        return math.ceil(self.weight_word_bits / 8)

    #: INFO response payload: (name, bytes) in order.
    info_fields = (("version", 1), ("index_bits", 1), ("time_bits", 1), ("cfg_bits", 1), ("weight_bits", 1),
                   ("in_depth", 2), ("out_depth", 2), ("node_bits", 1), ("in_bits", 1), ("cfg_weights", 1))

    def info_payload(self) -> bytes:
        values = {"version": VERSION, **vars(self)}
        return b"".join(values[name].to_bytes(n, "little") for name, n in self.info_fields)

    @classmethod
    def from_info(cls, payload: bytes) -> ProtocolLayout:
        values, pos = {}, 0
        for name, n in cls.info_fields:
            values[name] = int.from_bytes(payload[pos:pos + n], "little")
            pos += n
        if pos != len(payload):
            raise ValueError(f"INFO payload: expected {pos} bytes, got {len(payload)}")
        if values.pop("version") != VERSION:
            raise ValueError(f"INFO: protocol version {payload[0]}, this driver speaks {VERSION}")
        return cls(**values)

    #: RUN / RESULT response payload header: (name, bytes), then ``count`` spikes of ``spike_bytes``.
    result_fields = (("cycles", 4), ("prediction", 2), ("count", 2))

    def pack_spike(self, index: int, time: int) -> bytes:
        """An input spike of the one-PE protocol."""
        return (index | time << self.index_bits).to_bytes(self.in_bytes, "little")

    def unpack_spike(self, raw: bytes) -> tuple[int, int] | tuple[int, int, int]:
        """An output spike: (index, time), or (index, time, node) for a mesh."""
        word = int.from_bytes(raw, "little")
        index, time = word & ((1 << self.index_bits) - 1), word >> self.index_bits & ((1 << self.time_bits) - 1)
        if not self.node_bits:
            return index, time
        return index, time, word >> (self.index_bits + self.time_bits) & ((1 << self.node_bits) - 1)


#: The link's CRC: CRC-8/SMBUS (polynomial x^8 + x^2 + x + 1, MSB first, init 0, no final XOR), bytewise.
CRC8 = catalog.CRC8_SMBUS(data_width=8)


def crc8(data: bytes) -> int:
    """CRC-8/SMBUS of ``data`` (:data:`CRC8`)."""
    return CRC8.compute(data)


def request(cmd: int, payload: bytes = b"") -> bytes:
    """One request frame."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload: {len(payload)} bytes exceeds MAX_PAYLOAD={MAX_PAYLOAD}")
    body = bytes([cmd]) + len(payload).to_bytes(2, "little") + payload
    return bytes([SYNC_REQ]) + body + bytes([crc8(body)])


def response(cmd: int, status: int, payload: bytes = b"") -> bytes:
    """One response frame (what the board sends; used by tests and docs)."""
    body = bytes([cmd, status]) + len(payload).to_bytes(2, "little") + payload
    return bytes([SYNC_RESP]) + body + bytes([crc8(body)])
