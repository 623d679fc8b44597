"""Formal harness of ``rtl.load.Load``: the read-after-write rule (docs/pe.md, "Read-after-write hazard").

LOAD alone, small configuration (4 state words of 1 lane, 2 sources, 2-bit times, defer FIFO of 2). The
environment is free: any input events (valid kinds), any ``req.ready``, any register values in their
documented ranges, changing at any time; the write-back reports (``done``, ``done_word``, ``done_rising``)
come in any cycle and any order, with one restriction that STORE guarantees: a word is only reported
written back if a token of it was issued and not yet written back.

The harness keeps its own ``pending`` bit per word (set when LOAD issues a CLEAR / SPIKE / SWEEP token of
the word, cleared by its write-back report) and asserts that LOAD never issues a token of a pending word:
no word is read while its write-back is outstanding. The induction invariant is that LOAD's own per-word
bookkeeping equals the harness's, and that its registered ``k_free`` equals ``~pending[k]`` wherever ISSUE
reads it.

``mutant="early_done"`` feeds LOAD a write-back report for every token in the cycle it is issued (a STORE
that lies), to show that the property then fails. ``mutant="any_order"`` lets STORE report the outstanding words
in any order, which LOAD's pending FIFO (``pending_fifo``) relies on not happening: the property then fails.

With ``pending_fifo`` the harness also keeps the outstanding words in issue order, assumes that each write-back
reports the oldest (the pipeline is one in-order stream), and asserts that LOAD never has more words outstanding
than the FIFO's entries; the induction invariant adds that LOAD's FIFO equals the harness's list and that a sweep
reads no pending word (none at or above the one-search position, none in the grouped sweep's ``gc`` or later
groups).
"""

from __future__ import annotations

from amaranth.hdl import Assert, Assume, Cat, Const, Cover, Fragment, Module, Mux, ResetSignal, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In

from rtl import layouts as L
from rtl.config import PEConfig
from rtl.load import Load

from .fifo import _find_signal

__all__ = ["LoadHarness", "SMALL_LOAD"]

SMALL_LOAD = PEConfig(neurons=4, fan_in=2, lanes=1, weight_bits=2, time_bits=2, threshold_bits=1, fifo_depth=2,
                      defer_depth=2, max_sources=2)


class LoadHarness(wiring.Component):
    def __init__(self, *, config: PEConfig = SMALL_LOAD, mutant: str | None = None):
        if mutant not in (None, "early_done", "any_order"):
            self._MustUse__silence = True  # a rejected instance is not an unused elaboratable
            raise ValueError(f"mutant: unknown {mutant!r}")
        self.cfg, self.mutant = config, mutant
        c = config
        super().__init__({
            "i": In(stream.Signature(L.event_layout(c))),
            "req_ready": In(1),
            "done": In(1),
            "done_word": In(c.word_bits),
            "done_rising": In(1),
            "sources": In(c.sources_bits),
            "t_end": In(c.time_bits),
            "active": In(c.active_bits),
        })

    def elaborate(self, platform):
        c = self.cfg
        m = Module()
        m.d.comb += Assume(~ResetSignal())
        dut = Load(c)
        frag = Fragment.get(dut, platform)
        m.submodules.dut = frag
        wiring.connect(m, wiring.flipped(self.i), dut.i)
        req = dut.req
        m.d.comb += [
            req.ready.eq(self.req_ready),
            dut.sources.eq(self.sources), dut.t_end.eq(self.t_end), dut.active.eq(self.active),
            Assume((self.sources >= 1) & (self.sources <= c.max_sources)),
            Assume((self.active >= 1) & (self.active <= c.neurons)),
            Assume((self.t_end >= 1) & (self.t_end <= c.max_t_end)),
            Assume(~self.i.valid | (self.i.payload.kind.as_value() <= L.EventKind.START.value)),
        ]
        issue = req.valid & req.ready
        token = req.payload.token
        reads = issue & (token.op != L.Op.MARK)

        pending = Signal(c.words)
        written = Signal(c.words)
        issued = Signal(c.words)
        with m.If(self.done):
            m.d.comb += written.eq(1 << self.done_word)
        with m.If(reads):
            m.d.comb += issued.eq(1 << token.word)
        m.d.sync += pending.eq((pending | issued) & ~written)
        # STORE reports only words it holds: issued and not yet written back.
        m.d.comb += Assume(~self.done | ((self.done_word < c.words) & pending.bit_select(self.done_word, 1)))
        d = c.pending_fifo
        if d:
            # With the pending FIFO LOAD relies on the pipeline's order: STORE reports the oldest outstanding
            # word. The harness keeps the outstanding words in issue order (``order``, ``outstanding`` of them).
            order = [Signal(c.word_bits, name=f"order_{j}") for j in range(d)]
            outstanding = Signal(range(d + 1))
            if self.mutant != "any_order":
                m.d.comb += Assume(~self.done | ((outstanding != 0) & (self.done_word == order[0])))
            slot = outstanding - self.done
            for j, e in enumerate(order):
                kept = Mux(self.done, order[j + 1], e) if j + 1 < d else e
                m.d.sync += e.eq(Mux(reads & (slot == j), token.word, kept))
            m.d.sync += outstanding.eq(outstanding - self.done + reads)
            # LOAD never issues past its entries; they are the harness's words in the same order, each word once,
            # and exactly the pending ones.
            m.d.comb += Assert(~reads | (outstanding != d))
            level = _find_signal(frag, "pending_level")
            m.d.comb += Assert((level == outstanding) & (outstanding <= d))
            for j in range(d):
                with m.If(outstanding > j):
                    m.d.comb += Assert(_find_signal(frag, f"pending_{j}") == order[j])
                    m.d.comb += Assert(order[j] < c.words)
                    for i in range(j):
                        m.d.comb += Assert(order[i] != order[j])
            held = Cat(*(Cat(*((outstanding > j) & (e == w) for j, e in enumerate(order))).any()
                         for w in range(c.words)))
            m.d.comb += Assert(held == pending)

        if self.mutant == "early_done":
            m.d.comb += [dut.done.eq(reads), dut.done_word.eq(token.word), dut.done_rising.eq(self.done_rising)]
        else:
            m.d.comb += [dut.done.eq(self.done), dut.done_word.eq(self.done_word),
                         dut.done_rising.eq(self.done_rising)]

        # The rule: a token reads its word only while no write-back of the word is outstanding.
        m.d.comb += Assert(~reads | ((token.word < c.words) & ~pending.bit_select(token.word, 1)))
        # Induction strengthening: LOAD's bookkeeping is the harness's, and its word counters stay in range
        # (an unreachable k >= W would read past the pending bits).
        k, n_words = _find_signal(frag, "k"), _find_signal(frag, "n_words")
        m.d.comb += [
            Assert((n_words >= 1) & (n_words <= c.words)),
            Assert(k <= c.words),
        ]
        if not d:
            m.d.comb += Assert(_find_signal(frag, "pending") == pending)
        # LOAD's FSM (states numbered in the order rtl/load.py defines them) and its token register.
        # The grouped sweep has a fourth state, MARK, after ISSUE. ``k_last`` is ``k + 1 == n_words``.
        state, op = _find_signal(frag, "fsm_state"), _find_signal(frag, "op")
        k_last = _find_signal(frag, "k_last")
        # States are numbered in the order of first mention: SETTLE (pending FIFO), named in FETCH, comes
        # before MARK, named in ISSUE.
        fetch, drain, issue_state = 0, 1, 2
        settle_state = 3 if d else None
        mark_state = 3 + bool(d)
        last_state = mark_state if c.sweep_groups > 1 else (settle_state or issue_state)
        if d:
            with m.If(state == settle_state):
                m.d.comb += Assert((op == L.Op.SWEEP) & (k == 0))
        m.d.comb += [Assert(state <= last_state), Assert(op != L.Op.MARK)]
        with m.If(state == drain):
            m.d.comb += Assert((k == 0) & (op == L.Op.CLEAR) & (k_last == (n_words == 1)))
        # The STEP_END decision's registers equal the comparisons they stand for.
        count, cur = _find_signal(frag, "count"), _find_signal(frag, "cur")
        srcs, t_end = _find_signal(frag, "sources"), _find_signal(frag, "t_end")
        armed = _find_signal(frag, "armed")
        m.d.comb += Assert(_find_signal(frag, "src_last") == (count + 1 >= srcs))
        m.d.comb += Assert(_find_signal(frag, "steps_left") == (cur < t_end))
        m.d.comb += Assert(count < srcs)
        m.d.comb += Assert(cur <= t_end + 1)
        m.d.comb += Assert(~armed | (cur <= t_end))
        # ``from_defer`` is ``replay != 0`` (the event source as a register).
        m.d.comb += Assert(_find_signal(frag, "from_defer") == (_find_signal(frag, "replay") != 0))
        # ``k_free`` is exactly ``~pending[k]`` there (a cycle-ahead copy: neither late nor early).
        k_free = _find_signal(frag, "k_free")
        with m.If((state == issue_state) & (op != L.Op.SWEEP)):
            m.d.comb += Assert((k < n_words) & (k_last == (k + 1 == n_words))
                               & (k_free == ~pending.bit_select(k, 1)))
        with m.If(state == mark_state):
            m.d.comb += Assert(op == L.Op.SWEEP)
        if c.sweep_groups > 1:
            # The grouped sweep's ``gok`` is exactly group gk's not-pending-and-rising bits in a sweep.
            gsz = c.sweep_group
            gk, gok = _find_signal(frag, "gk"), _find_signal(frag, "gok")
            rising = _find_signal(frag, "rising")
            pad = c.sweep_groups * gsz - c.words
            ok_all = Cat(~pending & rising, Const(0, pad)) if pad else ~pending & rising
            with m.If((state == issue_state) & (op == L.Op.SWEEP)):
                if d:
                    # Pending FIFO: no word of gc nor of a later group is pending; gok is exact on gc, the only
                    # bits the sweep reads.
                    gc = _find_signal(frag, "gc")
                    pend_g = Cat(pending, Const(0, pad)) if pad else pending
                    later = Cat(*(pend_g.word_select(g, gsz).any() & (g > gk) for g in range(c.sweep_groups)))
                    m.d.comb += [Assert((pend_g.word_select(gk, gsz) & gc) == 0), Assert(later == 0),
                                 Assert((gok & gc) == (ok_all.word_select(gk, gsz) & gc))]
                else:
                    m.d.comb += Assert(gok == ok_all.word_select(gk, gsz))
        elif d:
            # Pending FIFO, one search: in a sweep no word at or above the position k is pending.
            with m.If((state == issue_state) & (op == L.Op.SWEEP)):
                above = Cat(*((pending[w] & (w >= k)) for w in range(c.words)))
                m.d.comb += Assert(above == 0)
        del fetch
        m.d.comb += [
            Cover(reads & (token.op == L.Op.SWEEP)),
            Cover(req.valid & ~req.ready & (pending != 0)),
        ]
        return m
