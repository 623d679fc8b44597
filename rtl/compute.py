"""COMPUTE: applies one token to ``lanes`` neurons (the second stage of the PE core)."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import layouts as L
from .arith import split_product
from .config import PEConfig

__all__ = ["Compute"]


class Compute(wiring.Component):
    """The neuron arithmetic of docs/spec.md section 4, ``lanes`` neurons per cycle, in the (S, B) form.

    The state of a neuron is its slope S = sum of w_i and offset B = sum of w_i * t_i over the inputs i that
    have spiked, so that V[t] = S * t - B (the closed form of the spec: every input adds w_i * (t - t_i) once
    t > t_i). Per lane j (neuron ``n = word * lanes + j``), with the state (S, B, fired) read from the SRAM:

    * ``CLEAR``: S = 0, B = 0, fired = 0;
    * ``SPIKE`` (input time tau = token time): S += w_j, B += w_j * tau;
    * ``SWEEP`` (step t = token time): V = S * (t + 1) - B; if not fired and V >= theta_j and ``n < active``:
      fired = 1 and lane j is marked in ``newly`` (it spikes at t + 1);
    * ``MARK``: no change (the token only carries the end of the step to STORE).

    Because V is never stored, a step may skip the sweep of a word whose neurons cannot reach theta: while a
    neuron's S <= 0 its V does not rise, and V < theta held at its last sweep. ``rising`` (to LOAD, through
    STORE) says whether the new state word has a lane in use, not fired, with S > 0; LOAD sweeps only those
    words. One multiplier per lane, by the token time, serves both products: w * tau, and S * t for
    V = S * t + S - B (compared as S * t >= B + theta - S).

    S and B are signed (``slope_bits``, ``potential_bits``, PEConfig), wide enough that no reachable value
    overflows (spec section "Register widths"); theta is unsigned and compared exactly.
    One token per cycle; the output is registered. With ``PEConfig.compute_stage`` the products, the
    comparison bounds and the lanes in use are registered as well (two tokens in flight, one cycle more of
    latency): the multiplier and the comparator then sit in different cycles (FPGA critical path).

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
        # One product per lane, with the token's time as the common factor: SPIKE needs w * tau, SWEEP
        # S * (t + 1) = S * t + S; both t and tau fit time_bits unsigned. The factor is the token field itself
        # (no incrementer in front of the multiplier) and the product is a plain signed x unsigned multiply,
        # which synthesis maps onto a DSP block where the FPGA has one (iCE40 SB_MAC16, ECP5 MULT18X18D).
        # SWEEP fires when V[t + 1] = S * t + S - B >= theta, i.e. S * t >= B + theta - S: the right-hand side
        # is computed in parallel with the product, so the product feeds a single comparator.
        #
        # Stage A: the products, the comparison bounds and the lanes in use; stage B: the comparison and the
        # new state word. With ``compute_stage`` stage A's results are registered (a pipeline of two tokens);
        # otherwise both stages are one cycle.
        sweep = x.token.op == L.Op.SWEEP
        factor = x.token.time
        a_token = Signal(L.token_layout(c))
        a_state = Signal(L.state_word_layout(c))
        a_weights = [Signal(signed(c.weight_bits), name=f"a_weight{j}") for j in range(c.lanes)]
        a_product = [Signal(signed(c.slope_bits + c.time_bits + 1), name=f"product{j}") for j in range(c.lanes)]
        a_bound = [Signal(signed(c.potential_bits + 2), name=f"bound{j}") for j in range(c.lanes)]
        a_in_use = Signal(c.lanes)
        stage_a = [a_token.eq(x.token), a_state.eq(x.state), a_in_use.eq(Cat(
            *((x.token.word * c.lanes + j) < self.active for j in range(c.lanes))))]
        for j in range(c.lanes):
            old = x.state[j]
            operand = Signal(signed(c.slope_bits), name=f"operand{j}")
            m.d.comb += operand.eq(Mux(sweep, old.slope, x.weights[j]))
            stage_a += [a_weights[j].eq(x.weights[j]), a_bound[j].eq(old.offset + x.thresholds[j] - old.slope)]
            if c.compute_stage:
                # The registered product as a plain unsigned multiplier into a register without reset (the
                # SB_MAC16's own output register, so nextpnr-ice40 times the path through it) and the
                # operand's upper bits times the factor in the fabric; their sum in stage B.
                low, high, shift = split_product(operand, factor)
                a_low = Signal(len(low), name=f"product_low{j}", reset_less=True)
                a_high = Signal(signed(len(high)), name=f"product_high{j}", reset_less=True)
                stage_a += [a_low.eq(low), a_high.eq(high)]
                m.d.comb += a_product[j].eq(a_low + (a_high << shift))
            else:
                stage_a.append(a_product[j].eq(operand * factor))

        a_valid = Signal()   # stage A holds a token (always the input's, without compute_stage)
        a_ready = Signal()
        m.d.comb += a_ready.eq(~self.o.valid | self.o.ready)
        if c.compute_stage:
            m.d.comb += self.i.ready.eq(~a_valid | a_ready)
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += [a_valid.eq(1), *stage_a]
            with m.Elif(a_ready):
                m.d.sync += a_valid.eq(0)
        else:
            m.d.comb += [self.i.ready.eq(a_ready), a_valid.eq(self.i.valid), *stage_a]

        op = a_token.op
        new_state = Signal(L.state_word_layout(c))
        newly, rising = [], []
        for j in range(c.lanes):
            old, new = a_state[j], new_state[j]
            fire = Signal(name=f"fire{j}")
            m.d.comb += fire.eq((op == L.Op.SWEEP) & ~old.fired & (a_product[j] >= a_bound[j]) & a_in_use[j])
            newly.append(fire)
            with m.Switch(op):
                with m.Case(L.Op.CLEAR):
                    m.d.comb += new.eq(0)
                with m.Case(L.Op.SPIKE):
                    m.d.comb += [new.slope.eq(old.slope + a_weights[j]), new.offset.eq(old.offset + a_product[j]),
                                 new.fired.eq(old.fired)]
                with m.Case(L.Op.SWEEP):
                    m.d.comb += [new.slope.eq(old.slope), new.offset.eq(old.offset), new.fired.eq(old.fired | fire)]
                with m.Default():
                    m.d.comb += new.eq(old)
            rising.append(a_in_use[j] & ~new.fired & (new.slope > 0))

        with m.If(a_valid & a_ready):
            m.d.sync += [
                self.o.valid.eq(1),
                self.o.payload.token.eq(a_token),
                self.o.payload.state.eq(new_state),
                self.o.payload.newly.eq(Cat(*newly)),
                self.o.payload.rising.eq(Cat(*rising).any()),
            ]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m
