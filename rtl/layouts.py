"""Every event, configuration word, pipeline token and memory word of the PE, in one place.

Widths come from a :class:`rtl.config.PEConfig`, so the layouts are built by functions of the config.
Fields are listed LSB first (Amaranth struct order). docs/pe.md tables are generated from these
(``python -m rtl.layouts`` prints them; tests/rtl/test_layouts.py checks the document against them).
"""

from __future__ import annotations

from amaranth.hdl import signed, unsigned
from amaranth.lib import data, enum

from .config import PEConfig, bits_for

__all__ = [
    "EventKind", "CfgTarget", "Reg", "Op",
    "event_layout", "cfg_layout", "lane_state_layout", "state_word_layout", "token_layout",
    "read_request_layout", "read_response_layout", "compute_layout", "write_request_layout",
    "input_map_layout", "stream_reg_layout", "stream_word_layout", "CONV_REGS", "markdown_tables",
]


class EventKind(enum.Enum, shape=2):
    """Kind of an event on the PE's ``i`` and ``o`` streams."""

    SPIKE = 0      #: neuron/input ``index`` spiked at ``time``
    STEP_END = 1   #: the sender has emitted every spike of step ``time`` (``index`` unused, 0)
    START = 2      #: a new inference: clear all neuron state (``index`` and ``time`` unused, 0)


class CfgTarget(enum.Enum, shape=2):
    """What a configuration word writes."""

    REG = 0        #: runtime register number ``row`` (see :class:`Reg`) <- ``data``
    #: weights of input ``row`` to neurons ``neuron .. neuron + cfg_weights - 1`` (``neuron`` a multiple of
    #: ``PEConfig.cfg_weights`` = min(lanes, 4), lanes of one weight SRAM word) <- ``data``: ``cfg_weights``
    #: signed weight_bits fields, the first in the low bits
    WEIGHT = 1
    THRESHOLD = 2  #: threshold of neuron ``neuron`` <- ``data`` (unsigned, threshold_bits)
    INPUT_MAP = 3  #: conv mode: input map entry ``row`` (an input index) <- ``data`` (input_map_layout)


class Reg(enum.Enum, shape=4):
    """Runtime registers (CfgTarget.REG, number in the ``row`` field)."""

    NEURON_BASE = 0  #: index of neuron 0 in output SPIKE events (init 0)
    SOURCES = 1      #: STEP_END(t) markers that complete step t, 1..max_sources (init 1)
    T_END = 2        #: last time step at which a neuron may fire, 1..2**time_bits-2 (init 2**time_bits-2)
    ACTIVE = 3       #: neurons in use, 1..neurons (init neurons)
    POOL_SHIFT = 4   #: max-pooling: neuron n belongs to window n >> POOL_SHIFT, 0..neuron_bits (init 0: none)
    # conv mode only (PEConfig.conv_inputs > 0; docs/pe.md "Conv mode")
    KH = 5           #: kernel height, 0 = dense mode (init 0)
    KW = 6           #: kernel width
    STRIDE = 7       #: log2 of the stride (0: stride 1, 1: stride 2)
    PAD = 8          #: padding
    TILE_Y0 = 9      #: first output row of the PE's tile
    TILE_X0 = 10     #: first output column of the PE's tile
    TILE_H = 11      #: output rows of the tile
    TILE_W = 12      #: output columns of the tile
    CH_WORDS = 13    #: state words per output position (the PE's output channels / lanes, rounded up)
    POOL_LOW = 14    #: pooling window of neuron n: bits POOL_LOW .. POOL_LOW + POOL_SHIFT - 1 of n removed
    #: weight stream only (PEConfig.cfg_stream; docs/pe.md "Weight stream"): the next configuration words are
    #: stream words (stream_word_layout) that fill ``count`` weight SRAM words from address 0 (stream_reg_layout)
    STREAM = 15


class Op(enum.Enum, shape=2):
    """Operation of one pipeline token (one SRAM word of ``lanes`` neurons)."""

    CLEAR = 0  #: START: S = B = 0, not fired
    SPIKE = 1  #: input spike at time tau: S += w, B += w * tau (the weight row of the spiking input)
    SWEEP = 2  #: end of step t: fire where not fired and V[t + 1] = S * (t + 1) - B >= theta
    MARK = 3   #: end of a step's sweep: no state access; STORE emits STEP_END(t + 1)


def conv_reg_widths(cfg: PEConfig) -> dict[str, int]:
    """Width of each conv-mode register (name -> bits)."""
    return {"kh": cfg.kernel_bits, "kw": cfg.kernel_bits, "stride": 1, "pad": cfg.kernel_bits,
            "tile_y0": cfg.tile_bits, "tile_x0": cfg.tile_bits, "tile_h": cfg.tile_bits, "tile_w": cfg.tile_bits,
            "ch_words": cfg.word_bits + 1, "pool_low": cfg.pool_shift_bits}


#: The conv-mode registers in :func:`conv_reg_widths` order.
CONV_REGS = (Reg.KH, Reg.KW, Reg.STRIDE, Reg.PAD, Reg.TILE_Y0, Reg.TILE_X0, Reg.TILE_H, Reg.TILE_W, Reg.CH_WORDS,
             Reg.POOL_LOW)


def event_layout(cfg: PEConfig) -> data.StructLayout:
    """Payload of the ``i`` and ``o`` event streams."""
    return data.StructLayout({
        "kind": EventKind,
        "index": unsigned(cfg.index_bits),
        "time": unsigned(cfg.time_bits),
    })


def cfg_layout(cfg: PEConfig) -> data.StructLayout:
    """Payload of the ``cfg`` stream: one register, weight or threshold write."""
    return data.StructLayout({
        "target": CfgTarget,
        "row": unsigned(cfg.cfg_row_bits),
        "neuron": unsigned(cfg.neuron_bits),
        "data": unsigned(cfg.cfg_data_bits),
    })


def stream_reg_layout(cfg: PEConfig) -> data.StructLayout:
    """Data of the STREAM register (weight stream): ``count`` weight SRAM words to fill, in rows of ``row_words``
    words (row r, word w at address r * words + w, the dense layout; ``row_words = words`` fills addresses
    0 .. count - 1, the conv mode's compact kernel slice)."""
    return data.StructLayout({
        "count": unsigned(cfg.stream_count_bits),
        "row_words": unsigned(bits_for(cfg.words)),
    })


def stream_word_layout(cfg: PEConfig) -> data.ArrayLayout:
    """A configuration word of the weight stream: ``stream_weights`` weights in all its bits, the first in the low
    bits; they fill the stream's weight SRAM words lane by lane, word after word."""
    return data.ArrayLayout(signed(cfg.weight_bits), cfg.stream_weights)


def lane_state_layout(cfg: PEConfig) -> data.StructLayout:
    """State of one neuron in the neuron SRAM."""
    return data.StructLayout({
        "slope": signed(cfg.slope_bits),          # S: sum of the weights w_i of inputs that have spiked
        "offset": signed(cfg.potential_bits),     # B: sum of w_i * t_i over the same inputs; V[t] = S*t - B
        "fired": unsigned(1),                     # the neuron has spiked (single spike: ignore it)
    })


def state_word_layout(cfg: PEConfig) -> data.ArrayLayout:
    """One neuron SRAM word: ``lanes`` neuron states, lane j = neuron word * lanes + j."""
    return data.ArrayLayout(lane_state_layout(cfg), cfg.lanes)


def weight_word_layout(cfg: PEConfig) -> data.ArrayLayout:
    """One weight SRAM word (address row * words + word): the weights of ``lanes`` neurons."""
    return data.ArrayLayout(signed(cfg.weight_bits), cfg.lanes)


def input_map_layout(cfg: PEConfig) -> data.StructLayout:
    """One input map entry of the conv mode (address = input index): the weight row of the input's channel
    (c * KH * KW) and its position (y, x) in the layer's input map."""
    return data.StructLayout({
        "row_base": unsigned(cfg.row_bits),
        "y": unsigned(cfg.coord_bits),
        "x": unsigned(cfg.coord_bits),
    })


def threshold_word_layout(cfg: PEConfig) -> data.ArrayLayout:
    """One threshold SRAM word: the thresholds of ``lanes`` neurons."""
    return data.ArrayLayout(unsigned(cfg.threshold_bits), cfg.lanes)


def token_layout(cfg: PEConfig) -> data.StructLayout:
    """What travels with each word through LOAD -> COMPUTE -> STORE."""
    return data.StructLayout({
        "op": Op,
        "word": unsigned(cfg.word_bits),    # neuron / threshold SRAM address
        "time": unsigned(cfg.time_bits),    # SPIKE: the input's time; SWEEP / MARK: the step t being completed
        "last": unsigned(1),                # last word of this event (STORE then emits STEP_END)
    })


def read_request_layout(cfg: PEConfig) -> data.StructLayout:
    """LOAD -> memory interface: read the words of one token."""
    return data.StructLayout({
        "token": token_layout(cfg),
        "weight_addr": unsigned(cfg.weight_addr_bits),  # meaningful for Op.SPIKE only
    })


def read_response_layout(cfg: PEConfig) -> data.StructLayout:
    """Memory interface -> COMPUTE: the token and the words it read."""
    return data.StructLayout({
        "token": token_layout(cfg),
        "weights": weight_word_layout(cfg),
        "thresholds": threshold_word_layout(cfg),
        "state": state_word_layout(cfg),
    })


def compute_layout(cfg: PEConfig) -> data.StructLayout:
    """COMPUTE -> STORE: the updated state word, the lanes that fired in this sweep, and whether the word
    still has a lane that may fire (in use, not fired, S > 0: LOAD sweeps only such words)."""
    return data.StructLayout({
        "token": token_layout(cfg),
        "state": state_word_layout(cfg),
        "newly": unsigned(cfg.lanes),
        "rising": unsigned(1),
    })


def write_request_layout(cfg: PEConfig) -> data.StructLayout:
    """STORE -> memory interface: write one neuron SRAM word."""
    return data.StructLayout({
        "addr": unsigned(cfg.word_bits),
        "state": state_word_layout(cfg),
    })


def _rows(layout, prefix=""):
    """(name, lsb, width, signed) of every leaf field, LSB first."""
    rows = []
    for name, field in layout:
        shape = field.shape
        full = f"{prefix}{name}"
        if isinstance(shape, data.StructLayout):
            rows += [(n, field.offset + o, w, s) for n, o, w, s in _rows(shape, full + ".")]
        else:
            cast = shape.as_shape() if hasattr(shape, "as_shape") else shape
            cast = cast if not isinstance(cast, type) else cast.as_shape()
            rows.append((full, field.offset, field.width, getattr(cast, "signed", False)))
    return rows


def markdown_table(layout: data.StructLayout) -> str:
    """A markdown table of the fields of ``layout`` (bits LSB first)."""
    lines = ["| field | bits | width | signed |", "|---|---|---|---|"]
    for name, lsb, width, sgn in _rows(layout):
        lines.append(f"| `{name}` | {lsb + width - 1}..{lsb} | {width} | {'yes' if sgn else 'no'} |")
    return "\n".join(lines)


def markdown_tables(cfg: PEConfig) -> str:
    """The external layouts (event and configuration word) of ``cfg`` as markdown, as in docs/pe.md."""
    return (f"Event (`i`, `o` payload, {event_layout(cfg).size} bits):\n\n{markdown_table(event_layout(cfg))}\n\n"
            f"Configuration word (`cfg` payload, {cfg_layout(cfg).size} bits):\n\n"
            f"{markdown_table(cfg_layout(cfg))}\n")


if __name__ == "__main__":
    print(markdown_tables(PEConfig()))
