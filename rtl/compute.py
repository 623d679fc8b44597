"""COMPUTE: applies one token to ``lanes`` neurons (the second stage of the PE core)."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import layouts as L
from .config import PEConfig

__all__ = ["Compute"]


class Compute(wiring.Component):
    """The neuron arithmetic of docs/spec.md section 4 (incremental form), ``lanes`` neurons per cycle.

    Per lane j (neuron ``n = word * lanes + j``), with the state (S, V, fired) read from the SRAM:

    * ``CLEAR``: S = 0, V = 0, fired = 0;
    * ``SPIKE``: S += w_j (the weight of the spiking input to neuron n);
    * ``SWEEP``: V += S (V[t+1] = V[t] + S[t]); if not fired and V >= theta_j and ``n < active``: fired = 1
      and lane j is marked in ``newly``.

    S and V are signed (``slope_bits``, ``potential_bits``, PEConfig), wide enough that no reachable value
    overflows (spec section "Register widths"); theta is unsigned and compared exactly.
    One token per cycle; the output is registered.

    Ports
    -----
    i : In(stream of layouts.read_response_layout)
    o : Out(stream of layouts.compute_layout)
    active : In(bits(neurons)), register ACTIVE (neurons in use)
    """

    def __init__(self, config: PEConfig):
        self._cfg = c = config
        super().__init__({
            "i": In(stream.Signature(L.read_response_layout(c))),
            "o": Out(stream.Signature(L.compute_layout(c))),
            "active": In(c.active_bits),
        })

    def elaborate(self, platform):
        c = self._cfg
        m = Module()
        x = self.i.payload
        op = x.token.op
        new_state = Signal(L.state_word_layout(c))
        newly = []
        for j in range(c.lanes):
            old, new = x.state[j], new_state[j]
            in_use = (x.token.word * c.lanes + j) < self.active
            v_next = Signal(signed(c.potential_bits), name=f"v_next{j}")
            fire = Signal(name=f"fire{j}")
            m.d.comb += [
                v_next.eq(old.potential + old.slope),
                fire.eq((op == L.Op.SWEEP) & ~old.fired & (v_next >= x.thresholds[j]) & in_use),
            ]
            newly.append(fire)
            with m.Switch(op):
                with m.Case(L.Op.CLEAR):
                    m.d.comb += new.eq(0)
                with m.Case(L.Op.SPIKE):
                    m.d.comb += [new.slope.eq(old.slope + x.weights[j]), new.potential.eq(old.potential),
                                 new.fired.eq(old.fired)]
                with m.Default():
                    m.d.comb += [new.slope.eq(old.slope), new.potential.eq(v_next), new.fired.eq(old.fired | fire)]

        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                self.o.valid.eq(1),
                self.o.payload.token.eq(x.token),
                self.o.payload.state.eq(new_state),
                self.o.payload.newly.eq(Cat(*newly)),
            ]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m
