"""Network-on-chip configuration and flit layouts: the one place that defines what travels on the mesh.

Coordinates: ``x`` grows to the east (columns ``0 .. width - 1``), ``y`` grows to the south (rows
``0 .. height - 1``). The host hangs off the west port of router (0, 0). ``docs/noc.md`` documents the layouts
below; its tables are generated from them (:func:`layout_table`).
"""

from __future__ import annotations

import enum as _enum
from dataclasses import dataclass

from amaranth.hdl import Shape, unsigned
from amaranth.lib import data, enum
from amaranth.utils import ceil_log2

__all__ = ["Port", "FlitKind", "NiReg", "NocConfig", "flit_layout", "ni_cfg_layout", "layout_table"]


class Port(_enum.IntEnum):
    """Router ports. ``LOCAL`` is the node's network interface; the others are neighbours."""

    LOCAL = 0
    NORTH = 1
    EAST = 2
    SOUTH = 3
    WEST = 4


#: Port name used in signal names (``north_i``, ``local_o`` ...).
PORT_NAMES = {p: p.name.lower() for p in Port}


class FlitKind(enum.Enum, shape=2):
    """What the payload of a flit is."""

    #: A PE event (``Event`` of the PE: SPIKE / STEP_END / START), delivered to the PE's event input.
    EVENT = 0
    #: A PE configuration word, delivered to the PE's ``cfg`` input (register and SRAM writes).
    PE_CFG = 1
    #: A network-interface configuration word (:func:`ni_cfg_layout`): a destination or a register.
    NI_CFG = 2
    #: Network interface -> host: the node's PE has received its whole input of the current inference
    #: (``sources`` markers ``STEP_END(t_end)``); the host starts the next inference after every node's DONE.
    DONE = 3


class NiReg(enum.Enum, shape=2):
    """What an ``NI_CFG`` word writes."""

    #: Destination-table entry ``index`` <- (``x``, ``y``, ``host``); the table length becomes ``index + 1``.
    DEST = 0
    #: STEP_END(t_end) markers that end an inference at this node (= the PE's SOURCES) <- ``value``.
    SOURCES = 1
    #: Last time step of an inference (= the PE's T_END) <- ``value``.
    T_END = 2


@dataclass(frozen=True)
class NocConfig:
    """Parameters of a mesh. Every width of the router, mesh and mapper derives from these.

    width, height : mesh size in nodes (each 1..64).
    payload_bits : bits of the widest payload the mesh carries (PE event or configuration word).
    fifo_depth : flits buffered at each router input (>= 2).
    max_dests : destination-table entries per network interface (destinations of one PE's output).
    """

    width: int
    height: int
    payload_bits: int
    fifo_depth: int = 4
    max_dests: int = 16

    def __post_init__(self):
        for name, lo, hi in (("width", 1, 64), ("height", 1, 64), ("payload_bits", 1, 4096),
                             ("fifo_depth", 2, 1024), ("max_dests", 1, 4096)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"NocConfig.{name}: expected an int, got {type(value).__name__}")
            if not lo <= value <= hi:
                raise ValueError(f"NocConfig.{name}: must be in {lo}..{hi}, got {value}")

    @property
    def x_bits(self) -> int:
        return max(1, ceil_log2(self.width))

    @property
    def y_bits(self) -> int:
        return max(1, ceil_log2(self.height))

    @property
    def n_nodes(self) -> int:
        return self.width * self.height


def flit_layout(cfg: NocConfig) -> data.StructLayout:
    """One flit = one whole packet (the mesh has no multi-flit packets).

    ``x``, ``y``: destination node. ``host``: deliver to the host instead of the node's PE (only with
    ``x = y = 0``; router (0, 0) sends it out of its west port). ``src_x``, ``src_y``: the sending node
    (the host uses (0, 0)); routers ignore them, the host uses them to tell the layers apart.
    ``kind``: :class:`FlitKind`. ``payload``: the PE event or configuration word, zero-extended.
    """
    return data.StructLayout({
        "x": unsigned(cfg.x_bits),
        "y": unsigned(cfg.y_bits),
        "host": unsigned(1),
        "src_x": unsigned(cfg.x_bits),
        "src_y": unsigned(cfg.y_bits),
        "kind": FlitKind,
        "payload": unsigned(cfg.payload_bits),
    })


def ni_cfg_layout(cfg: NocConfig, value_bits: int) -> data.StructLayout:
    """Payload of an ``NI_CFG`` flit (:class:`NiReg`). ``DEST``: destination-table entry ``index`` of the
    addressed node's network interface becomes (``x``, ``y``, ``host``) and the table length ``index + 1``
    (write entries in order 0, 1, ...). ``SOURCES`` / ``T_END``: the register <- ``value``."""
    return data.StructLayout({
        "reg": NiReg,
        "index": unsigned(max(1, ceil_log2(cfg.max_dests))),
        "x": unsigned(cfg.x_bits),
        "y": unsigned(cfg.y_bits),
        "host": unsigned(1),
        "value": unsigned(value_bits),
    })


def layout_table(layout: data.StructLayout) -> str:
    """A markdown table of a struct layout (field, bit offset, width), for docs/noc.md."""
    rows = ["| field | bits | width |", "|---|---|---|"]
    for name, field in layout:
        width = Shape.cast(field.shape).width
        rows.append(f"| `{name}` | {field.offset}..{field.offset + width - 1} | {width} |")
    return "\n".join(rows)
