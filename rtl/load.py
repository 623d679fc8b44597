"""LOAD: turns input events into per-word read requests (the first stage of the PE core)."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import layouts as L
from .arith import times_const
from .config import PEConfig, bits_for
from .fifo import StreamFIFO

__all__ = ["Load"]



def _lowest_set(bits):
    """(any bit set, index of the lowest set bit) of ``bits`` as a balanced tree of 2:1 choices: log2(width)
    levels deep, where a chain of priority ``If``s is ``width`` deep (too slow for big PEs and too deep for
    synthesis tools that walk it recursively)."""
    level = [(bits[j], None) for j in range(len(bits))]
    while len(level) > 1:
        if len(level) % 2:
            first = level[0][1]   # every index of a level has the same width
            level.append((Const(0, 1), None if first is None else Const(0, len(first))))
        nxt = []
        for (va, ia), (vb, ib) in zip(level[0::2], level[1::2], strict=True):
            idx = ~va if ia is None else Mux(va, Cat(ia, Const(0, 1)), Cat(ib, Const(1, 1)))
            nxt.append((va | vb, idx))
        level = nxt
    v, idx = level[0]
    return v, Const(0, 1) if idx is None else idx


class _Hazard:
    """LOAD's read-after-write bookkeeping: which state words have a token issued and not yet written back.

    ``config.pending_fifo == 0``: one ``pending`` bit per word, set by the one-hot ``issued_seq`` /
    ``issued_sweep`` of the cycle's issued word, cleared by the write-back's one-hot ``written``.
    ``config.pending_fifo == D``: the issued words in a FIFO of ``D`` entries, oldest first. The pipeline behind
    LOAD is one in-order stream, so STORE writes the words back in issue order and each write-back retires the
    oldest entry; a word is pending while an entry holds it (``D`` comparators instead of a multiplexer over
    every word's bit), and LOAD issues nothing while all ``D`` entries are in use (``room``). ``pending``,
    ``issued_seq`` and ``issued_sweep`` are then 0: the sweep starts only once the FIFO is empty (``empty``),
    and after that it reads words above every word it issued, so no word it looks at is pending."""

    def __init__(self, m, c, done, done_word, written):
        self.fifo = c.pending_fifo
        self.done, self.done_word = done, done_word
        if not self.fifo:
            self.pending = Signal(c.words)      # word issued, not yet written back
            self.issued_seq = Signal(c.words)
            self.issued_sweep = Signal(c.words)
            m.d.sync += self.pending.eq((self.pending | self.issued_seq | self.issued_sweep) & ~written)
            self.room = Const(1, 1)
            self.empty = self.pending == 0
            return
        d = self.fifo
        self.pending = self.issued_seq = self.issued_sweep = Const(0, c.words)
        self.entries = [Signal(c.word_bits, name=f"pending_{j}") for j in range(d)]
        self.level = Signal(range(d + 1), name="pending_level")
        self.push = Signal()
        self.push_word = Signal(c.word_bits)
        self.room = Signal()
        self.empty = Signal()
        m.d.comb += [self.room.eq(self.level != d), self.empty.eq(self.level == 0)]
        pop = done
        slot = self.level - pop   # where a word issued in this cycle goes
        for j, e in enumerate(self.entries):
            kept = Mux(pop, self.entries[j + 1], e) if j + 1 < d else e
            m.d.sync += e.eq(Mux(self.push & (slot == j), self.push_word, kept))
        m.d.sync += self.level.eq(self.level - pop + self.push)

    def _held(self, w, *, skip_head):
        hits = [(self.level > j) & (e == w) for j, e in enumerate(self.entries)]
        if skip_head:   # the oldest entry retires in this cycle if a write-back is reported
            hits[0] = hits[0] & ~self.done
        return Cat(*hits).any()

    def free_next(self, w, *, past_end=0):
        """Word ``w`` is not pending in the next cycle unless issued in this one. Bits: its pending bit (a
        multiplexer over registers; ``past_end``: the value for ``w == words``) or its write-back now (a
        comparison with STORE's word, not the one-hot ``written`` through that multiplexer: the write-back
        report is a late signal)."""
        if self.fifo:
            return ~self._held(w, skip_head=True)
        bits = Cat(self.pending, Const(1, 1)) if past_end else self.pending
        return ~bits.bit_select(w, 1) | (self.done & (self.done_word == w))

    def free_now(self, w):
        """Word ``w`` may be issued in this cycle: not pending, and (FIFO) an entry free for it."""
        if self.fifo:
            return ~self._held(w, skip_head=False) & self.room
        return ~self.pending.bit_select(w, 1)

    def issue_seq(self, w):
        """Statements (comb) recording that word ``w`` issues in this cycle (every issuer but the grouped
        sweep)."""
        if self.fifo:
            return [self.push.eq(1), self.push_word.eq(w)]
        return [self.issued_seq.eq(1 << w)]

    def issue_sweep(self, one_hot, w):
        """The grouped sweep's issued word, as a one-hot over every word and as a number."""
        if self.fifo:
            return [self.push.eq(1), self.push_word.eq(w)]
        return [self.issued_sweep.eq(one_hot)]


class Load(wiring.Component):
    """Takes input events, keeps the step bookkeeping, and issues one read request per SRAM word.

    * ``START``: resets the step to 0 and issues ``CLEAR`` tokens for words 0..W-1;
    * ``SPIKE(i, t)`` with ``t <=`` the current step: ``SPIKE`` tokens (time t) reading weight row ``i``,
      words 0..W-1;
    * ``STEP_END(t)``: counted; the ``sources``-th completes the step: if ``t < t_end``, ``SWEEP`` tokens
      for the *rising* words only (see below), in ascending order, then one ``MARK`` token (STORE emits
      ``STEP_END(t + 1)`` for it); then the step advances;
    * events of a later step are parked in the defer FIFO and replayed when the step completes;
    * **START guard**: between inferences (after reset, an abort, or the last step's completion) and before
      the next START, every other event is parked too and replayed after that START, so a source whose START
      came first may send its ``STEP_END(0)`` before this PE's START arrives without the marker being lost
      (START clears the marker count). Correctness does not rest on the order in which STARTs arrive.

    ``W = ceil(active / lanes)`` words per CLEAR / SPIKE event. Per word LOAD keeps two bits: ``pending``
    (a token of the word was issued and STORE has not written it back yet) and ``rising`` (the word's last
    write-back reported a lane in use, not fired, with S > 0, compute_layout ``rising``). Read-after-write
    hazard: a word is read only while it is not pending. A sweep visits the words that are rising or
    pending, lowest first; at a pending word it waits for the write-back and then visits it only if it is
    rising. A word that is not rising cannot fire in this step (rtl/compute.py), so skipping it is exact.
    With ``config.pending_fifo`` the pending words are a FIFO instead (``_Hazard``; docs/pe.md "Pending FIFO"):
    the same tokens in the same order, a step's sweep starting once every earlier word is written back.

    Ports
    -----
    i : In(stream of layouts.event_layout), input events
    req : Out(stream of layouts.read_request_layout), to the memory interface
    done : In(1), STORE wrote one state word this cycle; done_word : In(word_bits), which one;
    done_rising : In(1), whether it is rising
    sources : In(bits(max_sources)), t_end : In(time_bits), active : In(bits(neurons)) — registers
    n_active : Out(bits(neurons)), ACTIVE as latched at the last START (to COMPUTE)

    **Conv mode** (``config.conv`` and register KH != 0; docs/pe.md "Conv mode"): a ``SPIKE(i, t)`` reads
    input map entry ``i`` (the input's channel weight row ``c * KH * KW`` and position ``(y, x)``), then walks
    the kernel taps ``(ky, kx)`` of its stride residue (``ky = (y + PAD) mod stride``, ``+ stride``, ...):
    the tap reaches output ``(y', x') = ((y + PAD - ky) / stride, (x + PAD - kx) / stride)``; when that lies
    in the PE's tile it issues ``CH_WORDS`` SPIKE tokens reading weight row ``c * KH * KW + ky * KW + kx``
    (words ``0 .. CH_WORDS - 1``: the PE's output channels) into the state words of that position. A tap
    row outside the tile costs one cycle, a tap outside it in a row inside it one cycle. Positions are
    numbered window by window for pooling (``2**(POOL_SHIFT / 2)`` square windows): see ``_position``.

    ACTIVE, SOURCES and T_END are latched when START is processed (after the previous inference's words
    have all been written back), so register writes take effect with the next inference.
    """

    def __init__(self, config: PEConfig):
        self._cfg = c = config
        super().__init__({
            "i": In(stream.Signature(L.event_layout(c))),
            "req": Out(stream.Signature(L.read_request_layout(c))),
            "done": In(1),
            "done_word": In(c.word_bits),
            "done_rising": In(1),
            "sources": In(c.sources_bits),
            "t_end": In(c.time_bits),
            "active": In(c.active_bits),
            "n_active": Out(c.active_bits),
            **({"map_addr": Out(bits_for(c.conv_inputs - 1)), "map_en": Out(1),
                "map_data": In(L.input_map_layout(c)), "pool_shift": In(c.pool_shift_bits),
                **{name: In(w) for name, w in L.conv_reg_widths(c).items() if name != "pool_low"}}
               if c.conv else {}),
        })
        self.active_latched = Signal(c.active_bits, init=c.neurons)

    def elaborate(self, platform):
        c = self._cfg
        m = Module()
        # One spare entry so a replayed early event can always be parked again.
        m.submodules.defer = defer = StreamFIFO(L.event_layout(c), depth=c.defer_depth + 1, buffered=c.defer_bram)

        # ACTIVE, SOURCES and T_END are latched at START: register writes take effect with the next
        # inference, and every event of one inference streams the same number of words (hazard rule).
        n_words = Signal(c.word_bits + 1, init=c.words)
        sources = Signal(c.sources_bits, init=1)
        t_end = Signal(c.time_bits, init=c.max_t_end)
        m.d.comb += self.n_active.eq(self.active_latched)

        cur = Signal(c.time_bits + 1)   # the step being worked on (t_end + 1 once all are complete)
        count = Signal(c.sources_bits)
        # ``count + 1 >= sources`` and ``cur < t_end`` as registers kept beside count and cur: the STEP_END
        # decision then compares nothing in the path from the event source into the FSM (the iCE40 critical
        # path, the defer FIFO's read through the decision into ``armed``).
        src_last = Signal(init=1)
        steps_left = Signal(init=1)
        armed = Signal()   # a START was processed and its inference is not complete yet (START guard)
        replay = Signal(range(c.defer_depth + 2))
        # ``replay != 0`` as a register kept beside replay: the source choice (defer FIFO or input) then starts
        # at one flip-flop instead of a comparison, at the head of the iCE40 critical path (the source choice
        # through ``early`` into the defer FIFO's write enable).
        from_defer = Signal()
        rising = Signal(c.words)   # word's last write-back had a lane that may still fire
        k = Signal(c.word_bits + 1)
        # ``k + 1 == n_words``, kept as a register beside k: the last-word test then adds no carry chain to
        # the path from k through the issue handshake into the next event's fetch (the iCE40 critical path).
        k_last = Signal()
        # ``~pending[k]`` as a register, kept exact wherever ISSUE reads it (event words): the next cycle's
        # value is looked up a cycle ahead from the write-backs, so the request's valid and the issue
        # handshake do not go through a multiplexer over every word's pending bit (the iCE40 critical path,
        # k -> pending[k] -> handshake -> issued -> pending). Same tokens in the same cycles.
        k_free = Signal()
        op = Signal(L.Op)
        time = Signal(c.time_bits)
        base = Signal(c.weight_addr_bits)
        clear_rising = Signal()

        issue = Signal()
        m.d.comb += issue.eq(self.req.valid & self.req.ready)
        # The word issued in this cycle, set by each branch from its own handshake: ``issued_sweep`` by the
        # grouped sweep, ``issued_seq`` by everything else (event words, conv taps, the one-search sweep). The
        # grouped sweep's position register is loaded from the next cycle's bits without ``issued_sweep``
        # (exact: no sweep word issues in the cycles that load it), so its own search is not in that cone.
        written = Signal(c.words)
        with m.If(self.done):
            m.d.comb += written.eq(1 << self.done_word)
        if c.pending_fifo:
            # Each bit loads only when cleared or written back (its flip-flop's enable): about one LUT per word
            # where the vector expression below takes three to four, which matters at hundreds of words. Here
            # the next cycle's bits are never needed: the grouped sweep's registers read them only in a cycle
            # that starts a sweep or moves it to a later group, and with the pending FIFO no word of those is
            # written back or cleared then.
            rising_d = Signal()
            m.d.comb += rising_d.eq(self.done_rising & ~clear_rising)
            for j in range(c.words):
                with m.If(clear_rising | (self.done & (self.done_word == j))):
                    m.d.sync += rising[j].eq(rising_d)
            rising_nx = rising
        else:
            rising_nx = Signal(c.words)
            m.d.comb += rising_nx.eq(Mux(clear_rising, 0, (rising & ~written) | Mux(self.done_rising, written, 0)))
            m.d.sync += rising.eq(rising_nx)
        hz = _Hazard(m, c, self.done, self.done_word, written)
        pending, issued_seq = hz.pending, hz.issued_seq
        # Word k (k + 1, word 0) not pending in the next cycle, unless issued in this one.
        free_k, free_k1, free_0 = hz.free_next(k), hz.free_next(k + 1, past_end=1), hz.free_next(Const(0, 1))

        # Event source: the defer FIFO while replaying, else the input.
        src_valid = Signal()
        ev = Signal(L.event_layout(c))
        m.d.comb += [
            src_valid.eq(Mux(from_defer, defer.o.valid, self.i.valid)),
            ev.eq(Mux(from_defer, defer.o.payload, self.i.payload)),
        ]
        take = Signal()
        m.d.comb += [
            defer.o.ready.eq(from_defer & take),
            self.i.ready.eq(~from_defer & take),
            defer.i.payload.eq(ev),
        ]

        def fetch(quiet=False):
            """Take the next event (if any) and decide what it does; used in FETCH and, so that events
            follow each other without a gap, in the cycle that issues the last word of an event. ``quiet``: the
            caller issues no word in this cycle (FETCH, the MARK)."""
            # ``ev.time > cur`` compared for both sources in parallel, then chosen: the source choice is not in
            # front of the carry chain (the iCE40 critical path runs from the event's time through it).
            later = Mux(from_defer, defer.o.payload.time > cur, self.i.payload.time > cur)
            early = (ev.kind != L.EventKind.START) & (later | ~armed)
            with m.If(src_valid):
                with m.If(early):
                    # Park it; from the input only while a spare entry stays free for replays.
                    room = Mux(from_defer, defer.i.ready, defer.level < c.defer_depth)
                    m.d.comb += [defer.i.valid.eq(room), take.eq(room)]
                with m.Else():
                    m.d.comb += take.eq(1)
                with m.If(take & from_defer):
                    m.d.sync += [replay.eq(replay - 1), from_defer.eq(replay != 1)]
                with m.If(~early):
                    with m.Switch(ev.kind):
                        with m.Case(L.EventKind.START):
                            # START is never parked, so it comes from the input: everything parked before
                            # it (START guard) replays in this inference.
                            new_words = ((self.active - 1) >> c.lane_bits) + 1
                            m.d.sync += [cur.eq(0), count.eq(0), op.eq(L.Op.CLEAR), time.eq(0), k.eq(0),
                                         k_last.eq(new_words == 1),
                                         armed.eq(1), replay.eq(defer.level), from_defer.eq(defer.level != 0),
                                         n_words.eq(new_words),
                                         self.active_latched.eq(self.active),
                                         sources.eq(self.sources), t_end.eq(self.t_end),
                                         src_last.eq(self.sources <= 1), steps_left.eq(self.t_end != 0)]
                            m.next = "DRAIN"
                        with m.Case(L.EventKind.SPIKE):
                            # k_free for word 0; a caller that issues word 0 in this cycle overrides it.
                            m.d.sync += [op.eq(L.Op.SPIKE), base.eq(times_const(ev.index, c.words)), k.eq(0),
                                         k_last.eq(n_words == 1), time.eq(ev.time), k_free.eq(free_0)]
                            if c.conv:
                                with m.If(self.kh != 0):
                                    m.next = "CONV_INIT"   # the input map entry is read in this cycle
                                with m.Else():
                                    m.next = "ISSUE"
                            else:
                                m.next = "ISSUE"
                        with m.Case(L.EventKind.STEP_END):
                            with m.If(src_last):   # count + 1 >= sources
                                # Step complete: replay everything parked so far (minus this event).
                                m.d.sync += [cur.eq(cur + 1), count.eq(0), src_last.eq(sources <= 1),
                                             steps_left.eq(cur + 1 < t_end),
                                             replay.eq(defer.level - from_defer),
                                             from_defer.eq(defer.level != from_defer)]
                                with m.If(steps_left):   # cur < t_end
                                    # (the grouped sweep's registers: loaded below in every cycle outside a sweep)
                                    m.d.sync += [op.eq(L.Op.SWEEP), time.eq(cur), k.eq(0)]
                                    if hz.fifo:
                                        # Pending FIFO: the sweep starts once every word is written back.
                                        with m.If(hz.empty if quiet else Const(0, 1)):
                                            m.next = "ISSUE"
                                        with m.Else():
                                            m.next = "SETTLE"
                                    else:
                                        m.next = "ISSUE"
                                with m.Else():
                                    m.d.sync += armed.eq(0)   # the inference is complete: wait for START
                            with m.Else():
                                m.d.sync += [count.eq(count + 1), src_last.eq(count + 2 >= sources)]

        # Sweep: the next word at or above the sweep's position that is rising or pending (lowest first):
        # whether there is one here (``sweep_here``), which word, whether it may be read now (a pending word
        # waits for its write-back, then drops out unless rising), and the position after issuing it.
        groups = c.sweep_groups
        if groups > 1:
            # Grouped sweep (docs/pe.md "Grouped sweep"): the position as a group gk and the register gc, the
            # group's candidates not yet visited (exactly: its rising-or-pending words above the last one
            # issued, kept up to date with every write-back). The search looks at gc only; a cycle with gc
            # empty issues nothing and moves gk to the next group with a candidate (nxt_g, found one cycle
            # earlier from registered bits), loading gc with that group's words. Candidates only leave during
            # a sweep (a word that is neither rising nor pending gets no write-back), so a group nxt_g named
            # one cycle ago has at most lost words (then gc is loaded empty and the next cycle moves on), a
            # "no later group" stays true, and the words visited and their order are those of the one-search
            # sweep.
            gsz, gbits = c.sweep_group, c.sweep_group.bit_length() - 1
            gk = Signal(range(groups))
            gc = Signal(gsz)
            nxt_g = Signal(range(groups))
            nxt_any = Signal()
            nxt_known = Signal()   # nxt_g / nxt_any were found for the current gk
            pad = groups * gsz - c.words

            def grouped(v):
                return Cat(v, Const(0, pad)) if pad else v

            # gc's loads: at the sweep's start (fetch; no sweep word issues then) and at a group change (nothing
            # issues then): the next cycle's candidate bits.
            live_start = Signal(groups * gsz)
            live_move = Signal(groups * gsz)
            m.d.comb += [live_start.eq(grouped(((pending | issued_seq) & ~written) | rising_nx)),
                         live_move.eq(grouped((pending & ~written) | rising_nx))]
            g_any = Cat(*(grouped(rising | pending)[j * gsz:(j + 1) * gsz].any() for j in range(groups)))
            later = Signal(groups)
            m.d.comb += later.eq(g_any & (Const((1 << groups) - 1, groups) << (gk + 1))[:groups])
            later_any, later_low = _lowest_set(later)
            m.d.sync += [nxt_g.eq(later_low), nxt_any.eq(later_any), nxt_known.eq(1)]
            # The lowest candidate of gc, as an index and one-hot; whether it may be read now (a pending word
            # waits for its write-back, then drops out of gc unless rising); the write-backs that drop words.
            _, g_low = _lowest_set(gc)
            g_one = Signal(gsz)
            m.d.comb += g_one.eq(gc & ~Cat(Const(0, 1), *(gc[:j].any() for j in range(1, gsz))))
            in_group = self.done & ~self.done_rising & (self.done_word >> gbits == gk)
            drop = Signal(gsz)
            m.d.comb += drop.eq(Mux(in_group, 1 << self.done_word[:gbits], 0))

            # gok: which words of group gk may be read (not pending, rising), as a register kept exact for
            # the next cycle's group, so the request's valid is the lowest candidate of gc against it (no
            # multiplexer by gk over every word's bits before the handshake: the iCE40 critical path). The
            # next value per word of a group: a write-back in this cycle decides it (then the word is not
            # pending and rising as reported), else not pending, not issued in this cycle, and rising.
            gok = Signal(gsz)

            def group_ok(g, issued_here):
                hit = self.done & (self.done_word >> gbits == g)
                wb = Mux(hit, 1 << self.done_word[:gbits], 0)[:gsz]
                pend, rise = grouped(pending).word_select(g, gsz), grouped(rising).word_select(g, gsz)
                return Mux(clear_rising, 0, (wb & Mux(self.done_rising, wb, 0))
                           | (~wb & ~pend & ~issued_here & rise))

            sweep_here, sweep_word = gc != 0, Cat(g_low, gk)
            sweep_ok = (g_one & gok).any() & hz.room
            sweep_issue = sweep_ok & self.req.ready   # this branch's own handshake
            sweep_past = gc.eq(gc & ~drop & ~g_one)
            sweep_mark = hz.issue_sweep(Cat(*(Mux(gk == j, g_one, 0) for j in range(groups)))[:c.words],
                                        Cat(g_low, gk))
            # The group stays (below: the moves and the sweep's start load it instead); in a sweep only the
            # sweep's own word issues, elsewhere gok is not read.
            m.d.sync += gok.eq(group_ok(gk, Mux(sweep_issue, g_one, 0)))
        else:
            cand = Signal(c.words)
            m.d.comb += cand.eq((rising | pending) & (Const((1 << c.words) - 1, c.words) << k)[:c.words])
            nxt = Signal(c.word_bits)
            found, low = _lowest_set(cand)
            m.d.comb += nxt.eq(Mux(found, low, 0))
            sweep_here, sweep_word = cand != 0, nxt
            if hz.fifo:
                # Every word below the sweep's position is written back before the sweep starts, and the
                # sweep only reads words above it, so the lowest rising word may be read at once.
                sweep_ok = hz.room
            else:
                sweep_ok = ~pending.bit_select(nxt, 1) & rising.bit_select(nxt, 1)
            sweep_past = k.eq(nxt + 1)
            sweep_mark = hz.issue_seq(nxt)

        if c.conv:
            conv_states = self._conv(m, hz, time, fetch)
            m.d.comb += [self.map_addr.eq(ev.index), self.map_en.eq(take)]

        def mark():
            """The sweep's closing MARK token; the next event is fetched in the cycle it goes out."""
            m.d.comb += [
                self.req.valid.eq(1),
                self.req.payload.token.op.eq(L.Op.MARK),
                self.req.payload.token.last.eq(1),
            ]
            with m.If(self.req.ready):   # = issue (valid is 1), without the sweep search in its cone
                m.next = "FETCH"
                fetch(quiet=True)  # may go straight on with the next event's words

        with m.FSM(init="FETCH") as fsm:
            if c.conv:
                conv_states()
            with m.State("FETCH"):
                fetch(quiet=True)
            with m.State("DRAIN"):
                # The previous inference's words may use another word count: let them all retire first.
                with m.If(hz.empty):
                    m.d.comb += clear_rising.eq(1)
                    m.d.sync += k_free.eq(1)   # nothing is pending and nothing issues here
                    m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += self.req.payload.token.time.eq(time)
                with m.If(op == L.Op.SWEEP):
                    with m.If(sweep_here):
                        m.d.comb += [
                            self.req.valid.eq(sweep_ok),
                            self.req.payload.token.op.eq(L.Op.SWEEP),
                            self.req.payload.token.word.eq(sweep_word),
                        ]
                        if groups > 1:
                            with m.If(sweep_issue):
                                m.d.sync += sweep_past
                                m.d.comb += sweep_mark
                            with m.Else():
                                m.d.sync += gc.eq(gc & ~drop)
                        else:
                            with m.If(issue):
                                m.d.sync += sweep_past
                                m.d.comb += sweep_mark
                    if groups > 1:
                        with m.Elif(~nxt_known):
                            pass   # the next group is found in this cycle (after a group change, or the start)
                        with m.Elif(nxt_any):
                            # no request in this cycle
                            m.d.sync += [gk.eq(nxt_g), gc.eq(live_move.word_select(nxt_g, gsz)),
                                         gok.eq(group_ok(nxt_g, 0)), nxt_known.eq(0)]
                    with m.Else():
                        if groups > 1:
                            # Nothing left: the MARK goes out from a state of its own, so the search does
                            # not reach the next event's fetch in the same cycle (one cycle more per sweep).
                            m.next = "MARK"
                        else:
                            mark()
                with m.Else():
                    last = k_last
                    # This branch's own handshake (= issue here): the fetch below then depends on k and the
                    # request stage only, not structurally on the sweep search that shares req.valid.
                    issue_k = k_free & hz.room & self.req.ready
                    m.d.sync += k_free.eq(free_k)   # k stays: only its write-back counts
                    m.d.comb += [
                        self.req.valid.eq(k_free & hz.room),
                        self.req.payload.token.op.eq(op),
                        self.req.payload.token.word.eq(k),
                        self.req.payload.token.last.eq(last),
                        self.req.payload.weight_addr.eq(base + k),
                    ]
                    with m.If(issue_k):
                        m.d.comb += hz.issue_seq(k)
                        m.d.sync += [k.eq(k + 1), k_last.eq(k + 2 == n_words),
                                     k_free.eq(free_k1)]   # word k + 1 (not issued)
                        with m.If(last):
                            m.next = "FETCH"
                            if not c.fetch_stage:
                                fetch()  # may go straight on with the next event's words
                                with m.If(k == 0):
                                    m.d.sync += k_free.eq(0)   # word 0 issues in this cycle
            if groups > 1:
                with m.State("MARK"):
                    m.d.comb += self.req.payload.token.time.eq(time)
                    mark()
            if hz.fifo:
                with m.State("SETTLE"):
                    # A sweep waits here until every earlier word is written back (pending FIFO); nothing
                    # issues, so the grouped sweep's registers take their start values meanwhile.
                    with m.If(hz.empty):
                        m.next = "ISSUE"
        if groups > 1:
            # The grouped sweep's registers are read in a sweep only (ISSUE with op SWEEP): in every other
            # cycle they are loaded with a sweep's start values, which are exact in the cycle that starts one
            # (its fetch; the word issued in that cycle, if any, is in issued_seq). Their enables then depend on
            # the state only, not on the fetch decision (the event source through ``early`` and the STEP_END
            # branch: the iCE40 critical path into gk and gc).
            with m.If(~(fsm.ongoing("ISSUE") & (op == L.Op.SWEEP))):
                m.d.sync += [gk.eq(0), gc.eq(live_start[:gsz]), gok.eq(group_ok(0, issued_seq[:gsz])),
                             nxt_known.eq(0)]
        return m

    def _conv(self, m, hz, time, fetch):
        """Conv-mode SPIKE handling (see the class docstring); returns a function that adds the FSM states."""
        c = self._cfg
        kb = c.kernel_bits
        cb = max(c.coord_bits, kb) + 1
        row_base = Signal(c.row_bits)
        yp = Signal(cb)   # y + PAD
        xp = Signal(cb)
        ky = Signal(kb + 1)
        kx = Signal(kb + 1)
        kx0 = Signal(kb + 1)
        cw = Signal(c.word_bits + 1)
        s1 = self.stride  # 0: stride 1, 1: stride 2
        step = Mux(s1, 2, 1)
        # This tap's output position, relative to the tile.
        dy = Signal(signed(cb + 2))
        dx = Signal(signed(cb + 2))
        yl = Signal(signed(cb + 2))
        xl = Signal(signed(cb + 2))
        m.d.comb += [dy.eq(yp - ky), dx.eq(xp - kx),
                     yl.eq((dy >> s1) - self.tile_y0), xl.eq((dx >> s1) - self.tile_x0)]
        y_ok = (dy >= 0) & (yl >= 0) & (yl < self.tile_h)
        x_ok = (dx >= 0) & (xl >= 0) & (xl < self.tile_w)
        # Position number inside the tile, window by window (windows of q x q positions, q = 2**(POOL_SHIFT/2);
        # q = 1 without pooling: row-major yl * TILE_W + xl).
        qb = self.pool_shift >> 1
        qm = ((Const(1, 4) << qb) - 1).as_unsigned()
        yu, xu = yl.as_unsigned()[:c.coord_bits + 1], xl.as_unsigned()[:c.coord_bits + 1]
        pos = Signal(c.word_bits + 1)
        m.d.comb += pos.eq((((yu >> qb) * (self.tile_w >> qb) + (xu >> qb)) << self.pool_shift)
                           | ((yu & qm) << qb) | (xu & qm))
        word = Signal(c.word_bits + 1)
        m.d.comb += word.eq(pos * self.ch_words + cw)
        row = Signal(c.row_bits + 1)
        m.d.comb += row.eq(row_base + ky * self.kw + kx)

        kx_next = kx + step
        ky_next = ky + step
        row_done = kx_next >= self.kw
        last_row = ky_next >= self.kh

        def states():
            with m.State("CONV_INIT"):
                e = self.map_data
                y_pad = e.y + self.pad
                x_pad = e.x + self.pad
                m.d.sync += [row_base.eq(e.row_base), yp.eq(y_pad), xp.eq(x_pad), cw.eq(0),
                             ky.eq(y_pad & s1), kx.eq(x_pad & s1), kx0.eq(x_pad & s1)]
                m.next = "CONV"
            with m.State("CONV"):
                advance = Signal()   # this tap (or tap row) is finished in this cycle
                next_row = Signal()
                with m.If(~y_ok | (ky >= self.kh)):
                    m.d.comb += [advance.eq(1), next_row.eq(1)]
                with m.Elif(~x_ok | (kx >= self.kw)):
                    m.d.comb += [advance.eq(1), next_row.eq(row_done)]
                with m.Else():
                    free = hz.free_now(word[:c.word_bits])
                    m.d.comb += [
                        self.req.valid.eq(free),
                        self.req.payload.token.op.eq(L.Op.SPIKE),
                        self.req.payload.token.time.eq(time),
                        self.req.payload.token.word.eq(word),
                        self.req.payload.weight_addr.eq(row * self.ch_words + cw),   # compact kernel slice
                    ]
                    with m.If(self.req.ready & free):   # this state's handshake, not req.valid's whole mux
                        m.d.comb += hz.issue_seq(word[:c.word_bits])
                        with m.If(cw + 1 >= self.ch_words):
                            m.d.comb += [advance.eq(1), next_row.eq(row_done)]
                            m.d.sync += cw.eq(0)
                        with m.Else():
                            m.d.sync += cw.eq(cw + 1)
                with m.If(advance):
                    with m.If(next_row):
                        m.d.sync += [ky.eq(ky_next), kx.eq(kx0)]
                        with m.If(last_row | (ky >= self.kh)):
                            m.next = "FETCH"
                            if not c.fetch_stage:
                                fetch()   # may go straight on with the next event
                    with m.Else():
                        m.d.sync += kx.eq(kx_next)
        return states
