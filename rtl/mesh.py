"""The YOSO mesh: a W x H array of nodes (router + network interface + PE) and a host port.

Node (x, y)::

    neighbours ── Router(x, y) ──local── NetworkInterface ──i / cfg──> PE
                                                          <──o────────

The host port is the west side of router (0, 0): ``host_i`` injects flits (configuration, START and the
input layer's events), ``host_o`` returns every flit addressed to the host (output spikes, markers, DONE).
docs/noc.md describes the flits, the destination tables and the time synchronisation.
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, ResetInserter, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from . import layouts as L
from .config import PEConfig
from .noc_layouts import FlitKind, NiReg, NocConfig, flit_layout, ni_cfg_layout
from .pe import PE
from .router import Router

__all__ = ["NetworkInterface", "Mesh", "noc_config", "ni_value_bits", "done_layout"]


def ni_value_bits(pe: PEConfig) -> int:
    """Width of the ``value`` field of an NI register write (SOURCES or T_END)."""
    return max(pe.sources_bits, pe.time_bits)


def done_layout(noc: NocConfig) -> data.StructLayout:
    """Payload of a DONE flit: the node that finished (also in ``src_x``/``src_y``) — kept for readability."""
    return data.StructLayout({"x": noc.x_bits, "y": noc.y_bits})


def noc_config(pe: PEConfig, width: int, height: int, **kwargs) -> NocConfig:
    """The NocConfig of a ``width`` x ``height`` mesh of PEs with ``pe``: payloads wide enough for an event,
    a PE configuration word and an NI configuration word."""
    probe = NocConfig(width=width, height=height, payload_bits=1, **kwargs)
    bits = max(L.event_layout(pe).size, L.cfg_layout(pe).size, ni_cfg_layout(probe, ni_value_bits(pe)).size,
               done_layout(probe).size)
    return NocConfig(width=width, height=height, payload_bits=bits, **kwargs)


class NetworkInterface(wiring.Component):
    """Between a router's local port and a PE.

    Inbound (``noc_i``): ``EVENT`` flits go to the PE's event input, ``PE_CFG`` flits to its ``cfg`` input,
    ``NI_CFG`` flits write this interface's destination table and registers. Every ``STEP_END(t_end)``
    delivered to the PE is counted; the ``sources``-th means the PE has its whole input of this inference,
    and the interface sends one ``DONE`` flit to the host.

    Outbound (``noc_o``): every event of the PE's output is replicated, in table order, to each destination
    of the table (next-layer nodes and/or the host), one flit per cycle.

    Ports
    -----
    noc_i : In(stream of flit_layout(noc)); noc_o : Out(stream of flit_layout(noc))
    pe_i : Out(stream of layouts.event_layout(pe)); pe_cfg : Out(stream of layouts.cfg_layout(pe))
    pe_o : In(stream of layouts.event_layout(pe))
    abort : In(1), drop the inference in progress (marker count, pending DONE, replication index); the
        destination table and registers are kept
    """

    def __init__(self, pe: PEConfig, noc: NocConfig, *, x: int, y: int):
        if not isinstance(pe, PEConfig):
            raise TypeError(f"pe: expected a PEConfig, got {type(pe).__name__}")
        if not isinstance(noc, NocConfig):
            raise TypeError(f"noc: expected a NocConfig, got {type(noc).__name__}")
        need = noc_config(pe, noc.width, noc.height, fifo_depth=noc.fifo_depth, max_dests=noc.max_dests)
        if noc.payload_bits < need.payload_bits:
            raise ValueError(f"noc.payload_bits: {noc.payload_bits} is below the {need.payload_bits} bits this "
                             "PE's events and configuration words need")
        self._pe, self._noc, self._x, self._y = pe, noc, x, y
        self._flit = flit_layout(noc)
        super().__init__({
            "noc_i": In(stream.Signature(self._flit)),
            "noc_o": Out(stream.Signature(self._flit)),
            "pe_i": Out(stream.Signature(L.event_layout(pe))),
            "pe_cfg": Out(stream.Signature(L.cfg_layout(pe))),
            "pe_o": In(stream.Signature(L.event_layout(pe))),
            "abort": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        pe, noc = self._pe, self._noc
        ev_bits = L.event_layout(pe).size
        cfg_bits = L.cfg_layout(pe).size
        nil = ni_cfg_layout(noc, ni_value_bits(pe))

        dx = Array(Signal(noc.x_bits, name=f"dest{k}_x") for k in range(noc.max_dests))
        dy = Array(Signal(noc.y_bits, name=f"dest{k}_y") for k in range(noc.max_dests))
        dh = Array(Signal(name=f"dest{k}_host") for k in range(noc.max_dests))
        n_dests = Signal(range(noc.max_dests + 1))
        sources = Signal(pe.sources_bits, init=1)
        t_end = Signal(pe.time_bits, init=pe.max_t_end)
        markers = Signal(pe.sources_bits)
        done = Signal()

        # ---- inbound ----
        fin = self.noc_i.payload
        ev_in = data.View(L.event_layout(pe), fin.payload[:ev_bits])
        ncfg = data.View(nil, fin.payload[:nil.size])
        m.d.comb += [self.pe_i.payload.eq(fin.payload[:ev_bits]), self.pe_cfg.payload.eq(fin.payload[:cfg_bits])]
        with m.Switch(fin.kind):
            with m.Case(FlitKind.EVENT):
                m.d.comb += [self.pe_i.valid.eq(self.noc_i.valid), self.noc_i.ready.eq(self.pe_i.ready)]
                with m.If(self.noc_i.valid & self.pe_i.ready & (ev_in.kind == L.EventKind.STEP_END)
                          & (ev_in.time == t_end)):
                    with m.If(markers + 1 >= sources):
                        m.d.sync += markers.eq(0)  # DONE is raised at the end of elaborate
                    with m.Else():
                        m.d.sync += markers.eq(markers + 1)
            with m.Case(FlitKind.PE_CFG):
                m.d.comb += [self.pe_cfg.valid.eq(self.noc_i.valid), self.noc_i.ready.eq(self.pe_cfg.ready)]
            with m.Case(FlitKind.NI_CFG):
                m.d.comb += self.noc_i.ready.eq(1)
                with m.If(self.noc_i.valid):
                    with m.Switch(ncfg.reg):
                        with m.Case(NiReg.DEST):
                            m.d.sync += [dx[ncfg.index].eq(ncfg.x), dy[ncfg.index].eq(ncfg.y),
                                         dh[ncfg.index].eq(ncfg.host), n_dests.eq(ncfg.index + 1)]
                        with m.Case(NiReg.SOURCES):
                            m.d.sync += [sources.eq(ncfg.value), markers.eq(0)]
                        with m.Case(NiReg.T_END):
                            m.d.sync += t_end.eq(ncfg.value)
            with m.Default():
                m.d.comb += self.noc_i.ready.eq(1)  # DONE is never addressed to a node: drop it

        # ---- outbound: DONE first (rare), else the PE's events, one flit per destination ----
        out = self.noc_o.payload
        idx = Signal(range(noc.max_dests))
        # src is set inside both branches: a lone constant assignment becomes a bare ``always @*`` in the
        # Verilog, which Icarus never evaluates (the bits would stay X).
        with m.If(done):
            m.d.comb += [out.src_x.eq(self._x), out.src_y.eq(self._y),
                         out.x.eq(0), out.y.eq(0), out.host.eq(1), out.kind.eq(FlitKind.DONE),
                         out.payload.eq(self._x | (self._y << noc.x_bits)), self.noc_o.valid.eq(1)]
            with m.If(self.noc_o.ready):
                m.d.sync += done.eq(0)
        with m.Else():
            m.d.comb += [out.src_x.eq(self._x), out.src_y.eq(self._y),
                         out.x.eq(dx[idx]), out.y.eq(dy[idx]), out.host.eq(dh[idx]),
                         out.kind.eq(FlitKind.EVENT), out.payload.eq(self.pe_o.payload),
                         self.noc_o.valid.eq(self.pe_o.valid & (n_dests != 0))]
            with m.If(self.noc_o.valid & self.noc_o.ready):
                with m.If(idx + 1 >= n_dests):
                    m.d.sync += idx.eq(0)
                    m.d.comb += self.pe_o.ready.eq(1)
                with m.Else():
                    m.d.sync += idx.eq(idx + 1)
        # Set after the clear above so that a marker completing in the same cycle is not lost.
        with m.If(self.noc_i.valid & self.pe_i.ready & (fin.kind == FlitKind.EVENT)
                  & (ev_in.kind == L.EventKind.STEP_END) & (ev_in.time == t_end) & (markers + 1 >= sources)):
            m.d.sync += done.eq(1)
        with m.If(self.abort):
            m.d.sync += [markers.eq(0), done.eq(0), idx.eq(0)]
        return m


class Mesh(wiring.Component):
    """``noc.width`` x ``noc.height`` nodes, each a :class:`Router`, a :class:`NetworkInterface` and a PE
    with ``pe``; host port on the west side of router (0, 0).

    Ports
    -----
    host_i : In(stream of flit_layout(noc)) — flits from the host into the mesh
    host_o : Out(stream of flit_layout(noc)) — flits addressed to the host
    abort : In(1) — early exit: while high, every router, network interface and PE drops the inference in
        progress at the next clock edge (all flits in flight are discarded); configuration is kept, and the
        next inference starts with START as usual. The host sends nothing in that cycle.
    """

    def __init__(self, pe: PEConfig, noc: NocConfig):
        if not isinstance(pe, PEConfig):
            raise TypeError(f"pe: expected a PEConfig, got {type(pe).__name__}")
        if not isinstance(noc, NocConfig):
            raise TypeError(f"noc: expected a NocConfig, got {type(noc).__name__}")
        self._pe, self._noc = pe, noc
        flit = flit_layout(noc)
        super().__init__({"host_i": In(stream.Signature(flit)), "host_o": Out(stream.Signature(flit)),
                          "abort": In(1)})

    @property
    def pe(self) -> PEConfig:
        return self._pe

    @property
    def noc(self) -> NocConfig:
        return self._noc

    def elaborate(self, platform):
        m = Module()
        noc = self._noc
        routers = {}
        for y in range(noc.height):
            for x in range(noc.width):
                r = routers[x, y] = Router(noc, x=x, y=y)
                ni = NetworkInterface(self._pe, noc, x=x, y=y)
                pe = PE(self._pe)
                m.submodules[f"router_{x}_{y}"] = ResetInserter({"sync": self.abort})(r)
                m.submodules[f"ni_{x}_{y}"] = ni
                m.submodules[f"pe_{x}_{y}"] = pe
                m.d.comb += [ni.abort.eq(self.abort), pe.abort.eq(self.abort)]
                wiring.connect(m, r.local_o, ni.noc_i)
                wiring.connect(m, ni.noc_o, r.local_i)
                wiring.connect(m, ni.pe_i, pe.i)
                wiring.connect(m, ni.pe_cfg, pe.cfg)
                wiring.connect(m, pe.o, ni.pe_o)
        for (x, y), r in routers.items():
            if x + 1 < noc.width:
                e = routers[x + 1, y]
                wiring.connect(m, r.east_o, e.west_i)
                wiring.connect(m, e.west_o, r.east_i)
            if y + 1 < noc.height:
                s = routers[x, y + 1]
                wiring.connect(m, r.south_o, s.north_i)
                wiring.connect(m, s.north_o, r.south_i)
        wiring.connect(m, wiring.flipped(self.host_i), routers[0, 0].west_i)
        wiring.connect(m, routers[0, 0].west_o, wiring.flipped(self.host_o))
        return m
