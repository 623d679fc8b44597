"""Mesh router: five ports, buffered inputs, XY routing, round-robin output arbitration.

Each input port writes into its own FIFO (``lib.fifo.SyncFIFOBuffered``). The flit at the head of an input
FIFO asks for exactly one output port, chosen by dimension-ordered (XY) routing: first along ``x`` (east/west)
until the column matches, then along ``y`` (south/north), then ``local`` (or ``west`` for host-bound flits at
router (0, 0)). Every output port owns a register stage; whenever it is empty or being emptied it takes the
next requesting input in round-robin order (the input after the last one served), so no input waits more than
four grants on a busy output. Output payloads are registered, so an output never changes while it is valid and
not ready, and no combinational path crosses a router.

XY routing is deadlock-free on a mesh (no turn from the y dimension back to x). Host-bound flits add one more
turn, north to west at (0, 0) into the host port; the set of turns used still contains no cycle (section
"Deadlock freedom" of docs/noc.md).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .noc_layouts import PORT_NAMES, NocConfig, Port, flit_layout

__all__ = ["Router", "route"]


def route(x: int, y: int, dst_x: int, dst_y: int, host: bool) -> Port:
    """Software form of the routing function (used by the tests and the mapper's hop counts)."""
    if dst_x > x:
        return Port.EAST
    if dst_x < x:
        return Port.WEST
    if dst_y > y:
        return Port.SOUTH
    if dst_y < y:
        return Port.NORTH
    return Port.WEST if host else Port.LOCAL


class Router(wiring.Component):
    """A 5-port mesh router at node (``x``, ``y``).

    Parameters
    ----------
    config : NocConfig
        Mesh parameters (flit layout, FIFO depth).
    x, y : int
        This router's column and row.

    Ports (one pair per :class:`Port`, named ``local``, ``north``, ``east``, ``south``, ``west``)
    -----
    ``<port>_i`` : In(stream.Signature(flit_layout(config)))
        Flits entering the router from that side.
    ``<port>_o`` : Out(stream.Signature(flit_layout(config)))
        Flits leaving the router to that side.
    """

    def __init__(self, config: NocConfig, *, x: int, y: int):
        if not isinstance(config, NocConfig):
            raise TypeError(f"config: expected a NocConfig, got {type(config).__name__}")
        if not (isinstance(x, int) and 0 <= x < config.width):
            raise ValueError(f"x: must be in 0..{config.width - 1}, got {x!r}")
        if not (isinstance(y, int) and 0 <= y < config.height):
            raise ValueError(f"y: must be in 0..{config.height - 1}, got {y!r}")
        self._config = config
        self._x = x
        self._y = y
        self._flit = flit_layout(config)
        members = {}
        for p in Port:
            members[f"{PORT_NAMES[p]}_i"] = In(stream.Signature(self._flit))
            members[f"{PORT_NAMES[p]}_o"] = Out(stream.Signature(self._flit))
        super().__init__(members)

    @property
    def config(self) -> NocConfig:
        return self._config

    @property
    def x(self) -> int:
        return self._x

    @property
    def y(self) -> int:
        return self._y

    def port_i(self, port: Port):
        return getattr(self, f"{PORT_NAMES[port]}_i")

    def port_o(self, port: Port):
        return getattr(self, f"{PORT_NAMES[port]}_o")

    def elaborate(self, platform):
        m = Module()
        n = len(Port)
        flit_bits = self._flit.size

        heads = []
        rdy = []
        pop = []
        req_port = []
        for p in Port:
            q = fifo.SyncFIFOBuffered(width=flit_bits, depth=self._config.fifo_depth)
            m.submodules[f"fifo_{PORT_NAMES[p]}"] = q
            i = self.port_i(p)
            m.d.comb += [q.w_data.eq(i.payload), q.w_en.eq(i.valid), i.ready.eq(q.w_rdy)]
            head = data.View(self._flit, q.r_data)
            want = Signal(range(n), name=f"route_{PORT_NAMES[p]}")
            with m.If(head.x > self._x):
                m.d.comb += want.eq(Port.EAST)
            with m.Elif(head.x < self._x):
                m.d.comb += want.eq(Port.WEST)
            with m.Elif(head.y > self._y):
                m.d.comb += want.eq(Port.SOUTH)
            with m.Elif(head.y < self._y):
                m.d.comb += want.eq(Port.NORTH)
            with m.Elif(head.host):
                m.d.comb += want.eq(Port.WEST)
            with m.Else():
                m.d.comb += want.eq(Port.LOCAL)
            heads.append(q.r_data)
            rdy.append(q.r_rdy)
            pop.append(q.r_en)
            req_port.append(want)

        for o in Port:
            out = self.port_o(o)
            req = [Signal(name=f"req_{PORT_NAMES[i]}_to_{PORT_NAMES[o]}") for i in Port]
            for i in Port:
                m.d.comb += req[i].eq(rdy[i] & (req_port[i] == o))
            # Index of the input served last on this output: the search starts just after it.
            last = Signal(range(n), init=n - 1, name=f"last_{PORT_NAMES[o]}")
            take = Signal(name=f"take_{PORT_NAMES[o]}")
            m.d.comb += take.eq(~out.valid | out.ready)
            with m.If(take):
                m.d.sync += out.valid.eq(0)
                with m.Switch(last):
                    for start in range(n):
                        with m.Case(start):
                            order = [(start + k) % n for k in range(1, n + 1)]
                            with m.If(req[order[0]]):
                                self._grant(m, out, heads, pop, last, order[0])
                            for i in order[1:]:
                                with m.Elif(req[i]):
                                    self._grant(m, out, heads, pop, last, i)
        return m

    @staticmethod
    def _grant(m, out, heads, pop, last, i):
        m.d.comb += pop[i].eq(1)
        m.d.sync += [out.payload.eq(heads[i]), out.valid.eq(1), last.eq(i)]
