"""Formal harness of ``rtl.router.Router``: flit conservation, per-source order, XY routing, bounded progress.

Small configuration: a 3 x 3 mesh (the router at (1, 1) has five live ports) or a 2 x 2 mesh at (0, 0)
(host-bound flits), 1-bit payloads, input FIFOs of 2 flits. Every input stream and every output ``ready``
is free; nothing assumes how neighbours behave. What is checked (one ``mode`` per property):

* ``conserve``: local flit accounting that adds up to conservation: per input port, flits accepted minus
  flits popped equals the FIFO's level; per cycle, flits popped equals output registers loaded; an output
  register is valid exactly when it was loaded the cycle before or kept an undelivered flit. So none is lost,
  none is created. With the FIFO invariants of ``lib.fifo`` and the round-robin pointers in range this is
  inductive. (The same statement as one global sum of levels made the solver blow up after 4 steps.)
* ``xy``: every flit an output holds is one that XY routing sends out of that port (inductive);
* ``route``: a tracked "magic" flit (a symbolic value, any flit at all; the environment sends it once, on any
  port, in any cycle) leaves exactly once, only after it entered, and only through the port that XY routing
  names for its destination (the specification is restated here, not taken from the router).
* ``order``: two distinct magic flits for the same destination entering on the same port leave in the order
  they entered.
* ``progress``: with every output always ready, the magic flit leaves within ``bound`` cycles of entering
  (no starvation; round-robin fairness).

``dut_class`` / ``dut_xy`` swap in a mutant (a router that drops, duplicates or misroutes) to show that each
property can fail.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Assume, Cover, Fragment, Module, ResetSignal, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib import fifo as libfifo
from amaranth.lib.wiring import In

from rtl.noc_layouts import PORT_NAMES, NocConfig, Port, flit_layout
from rtl.router import Router

from .core import record_instances
from .fifo import _find_signal

__all__ = ["RouterHarness", "DroppingRouter", "DuplicatingRouter", "MODES"]

MODES = ("conserve", "xy", "route", "order", "progress")


class DroppingRouter(Router):
    """Mutant: a flit granted from the north input is popped but never offered (lost)."""

    @staticmethod
    def _grant(m, out, heads, pop, last, i):
        m.d.comb += pop[i].eq(1)
        m.d.sync += [out.payload.eq(heads[i]), out.valid.eq(i != Port.NORTH), last.eq(i)]


class DuplicatingRouter(Router):
    """Mutant: a flit granted from the north input is offered but not popped (sent again and again)."""

    @staticmethod
    def _grant(m, out, heads, pop, last, i):
        m.d.comb += pop[i].eq(i != Port.NORTH)
        m.d.sync += [out.payload.eq(heads[i]), out.valid.eq(1), last.eq(i)]


class RouterHarness(wiring.Component):
    """The router at (``x``, ``y``) of a ``width`` x ``height`` mesh under a free environment."""

    def __init__(self, *, mode: str, width: int = 3, height: int = 3, x: int = 1, y: int = 1, fifo_depth: int = 2,
                 bound: int = 16, dut_class=Router, dut_xy: tuple[int, int] | None = None):
        if mode not in MODES:
            self._MustUse__silence = True  # a rejected instance is not an unused elaboratable
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        self.mode, self.x, self.y, self.bound = mode, x, y, bound
        self.noc = NocConfig(width=width, height=height, payload_bits=1, fifo_depth=fifo_depth)
        self.dut_class, self.dut_xy = dut_class, dut_xy or (x, y)
        self.flit = flit_layout(self.noc)
        members = {}
        for p in Port:
            members[f"{PORT_NAMES[p]}_i"] = In(stream.Signature(self.flit))
            members[f"{PORT_NAMES[p]}_ready"] = In(1)
        members["magic1"] = In(self.flit)
        members["magic2"] = In(self.flit)
        super().__init__(members)

    def _expected_port(self, m, flit, name):
        """XY routing, restated (docs/noc.md): x first, then y, then local, or west for host flits at (0, 0)."""
        want = Signal(range(len(Port)), name=name)
        with m.If(flit.x > self.x):
            m.d.comb += want.eq(Port.EAST)
        with m.Elif(flit.x < self.x):
            m.d.comb += want.eq(Port.WEST)
        with m.Elif(flit.y > self.y):
            m.d.comb += want.eq(Port.SOUTH)
        with m.Elif(flit.y < self.y):
            m.d.comb += want.eq(Port.NORTH)
        with m.Elif(flit.host):
            m.d.comb += want.eq(Port.WEST)
        with m.Else():
            m.d.comb += want.eq(Port.LOCAL)
        return want

    def elaborate(self, platform):
        m = Module()
        m.d.comb += Assume(~ResetSignal())
        dx, dy = self.dut_xy
        dut = self.dut_class(self.noc, x=dx, y=dy)
        with record_instances(libfifo, "SyncFIFOBuffered") as fifos:
            frag = Fragment.get(dut, platform)
        m.submodules.dut = frag
        ports = list(Port)
        ins = [getattr(self, f"{PORT_NAMES[p]}_i") for p in ports]
        outs = [dut.port_o(p) for p in ports]
        for p, src in zip(ports, ins, strict=True):
            wiring.connect(m, wiring.flipped(src), dut.port_i(p))
            m.d.comb += dut.port_o(p).ready.eq(getattr(self, f"{PORT_NAMES[p]}_ready"))
        accepted = [s.valid & s.ready for s in ins]
        delivered = [o.valid & o.ready for o in outs]

        if self.mode == "conserve":
            # Local accounting that adds up to conservation (one global sum of all levels made the solver
            # blow up after 4 steps): per input, flits accepted - flits popped = the FIFO's level; per cycle,
            # flits popped = output registers loaded (a free or emptied register whose port some head wants);
            # per output, the register is valid exactly when it was loaded or kept an undelivered flit.
            depth = self.noc.fifo_depth
            pops = [q.r_en & q.r_rdy for q in fifos]
            loads = []
            for p, (q, pop) in enumerate(zip(fifos, pops, strict=True)):
                held = Signal(range(depth + 1), name=f"held_{PORT_NAMES[Port(p)]}")
                m.d.sync += held.eq(held + accepted[p] - pop)
                m.d.comb += [Assert(held == q.level), Assert(q.level <= depth)]
            for o, out in zip(ports, outs, strict=True):
                # A load: the output takes a new flit (valid next cycle, and either it was free/emptied now).
                heads = [self._expected_port(m, data.View(self.flit, q.r_data), f"head_{PORT_NAMES[Port(p)]}_{o}")
                         for p, q in enumerate(fifos)]
                want = Signal(name=f"want_{PORT_NAMES[o]}")
                m.d.comb += want.eq(sum(q.r_rdy & (h == o) for q, h in zip(fifos, heads, strict=True)) != 0)
                take = ~out.valid | out.ready
                load = take & want
                loads.append(load)
                # An output register holds a flit exactly when it was loaded in the cycle before or held one
                # that was not delivered: nothing dropped, nothing made up.
                stay, loaded = Signal(name=f"stay_{PORT_NAMES[o]}"), Signal(name=f"loaded_{PORT_NAMES[o]}")
                m.d.sync += [stay.eq(out.valid & ~out.ready), loaded.eq(load)]
                m.d.comb += Assert(out.valid == (stay | loaded))
            m.d.comb += Assert(sum(pops) == sum(loads))
            # Induction strengthening: the round-robin pointers hold port numbers.
            for o in ports:
                m.d.comb += Assert(_find_signal(frag, f"last_{PORT_NAMES[o]}") < len(ports))
            m.d.comb += Cover(sum(q.level for q in fifos) == len(ports) * depth)
            return m

        if self.mode == "xy":
            # Every flit an output register holds is one XY routing sends out of that port (checked on the
            # register itself, so it is inductive).
            for o, out in zip(ports, outs, strict=True):
                want = self._expected_port(m, out.payload, f"route_{PORT_NAMES[o]}")
                m.d.comb += Assert(~out.valid | (want == o))
            for o in ports:
                m.d.comb += Assert(_find_signal(frag, f"last_{PORT_NAMES[o]}") < len(ports))
            return m

        # Magic flits: symbolic constants, each accepted at most once on all ports together.
        started = Signal()
        m.d.sync += started.eq(1)
        magics = [self.magic1, self.magic2] if self.mode == "order" else [self.magic1]
        state = []
        for n, magic in enumerate(magics, 1):
            held = Signal(self.flit, name=f"held{n}")
            m.d.sync += held.eq(magic)
            m.d.comb += Assume(~started | (magic.as_value() == held.as_value()))
            acc = [a & (s.payload.as_value() == magic.as_value()) for a, s in zip(accepted, ins, strict=True)]
            out = [d & (o.payload.as_value() == magic.as_value()) for d, o in zip(delivered, outs, strict=True)]
            entered, left = Signal(name=f"entered{n}"), Signal(name=f"left{n}")
            port = Signal(range(len(ports)), name=f"port{n}")
            any_acc = Signal(name=f"acc{n}")
            any_out = Signal(name=f"out{n}")
            m.d.comb += [any_acc.eq(sum(acc) != 0), any_out.eq(sum(out) != 0)]
            m.d.comb += Assume(sum(acc) <= 1)
            m.d.comb += Assume(~(entered & any_acc))
            with m.If(any_acc):
                m.d.sync += entered.eq(1)
                for p in ports:
                    with m.If(acc[p]):
                        m.d.sync += port.eq(p)
            with m.If(any_out):
                m.d.sync += left.eq(1)
            state.append((magic, acc, out, entered, left, port, any_acc, any_out))

        magic, acc, out, entered, left, port, any_acc, any_out = state[0]
        want = self._expected_port(m, magic, "want1")
        if self.mode == "route":
            m.d.comb += [
                Assert(sum(out) <= 1),
                Assert(~any_out | (entered & ~left)),
            ]
            for p in ports:
                m.d.comb += Assert(~out[p] | (want == p))
            m.d.comb += Cover(left)
        elif self.mode == "order":
            magic2, acc2, out2, entered2, left2, port2, any_acc2, any_out2 = state[1]
            m.d.comb += [
                Assume(magic.as_value() != magic2.as_value()),
                Assume((magic.x == magic2.x) & (magic.y == magic2.y) & (magic.host == magic2.host)),
                # The second one enters after the first, on the same port.
                Assume(~any_acc2 | entered),
            ]
            for p in ports:
                m.d.comb += Assume(~acc2[p] | (port == p))
            m.d.comb += Assert(~any_out2 | left)
            m.d.comb += Cover(left2)
        elif self.mode == "progress":
            for p in ports:
                m.d.comb += Assume(getattr(self, f"{PORT_NAMES[p]}_ready"))
            age = Signal(range(self.bound + 2))
            with m.If(entered & ~left & (age <= self.bound)):
                m.d.sync += age.eq(age + 1)
            m.d.comb += Assert(age <= self.bound)
            m.d.comb += Cover(left & (age == self.bound))
        return m
