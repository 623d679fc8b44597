"""rtl/load.py: the token sequence of a step-ordered input is exactly the reference's (a sweep visits exactly
the words whose last write-back was reported rising, then a MARK), no word is read while an earlier write
of it is pending (read-after-write hazard), and with several senders the SPIKE tokens between two sweeps are
exactly the spikes of that step (defer FIFO)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from amaranth.sim import Simulator

from host.codec import PECodec, unpack
from rtl import layouts as L
from rtl.config import PEConfig
from rtl.load import Load
from verif.pysim_pe import stream_put
from verif.scenarios import merge_sources, skewed_merge

CFG = PEConfig(neurons=12, fan_in=10, lanes=4, time_bits=4, defer_depth=3, max_sources=3)


def rising_bits(seed, n=200_000, p=0.6):
    """The ``rising`` flag the test's STORE model reports for the n-th issued token."""
    return (np.random.default_rng(seed + 1000).random(n) < p).astype(int)


def reference_tokens(cfg, events, *, active, sources, t_end, bits):
    """(op, word, last, weight_addr or None, time or None) per token, straight from docs/pe.md; the n-th
    token's write-back reports ``bits[n]`` as its rising flag."""
    W = -(-active // cfg.lanes)
    lay = L.event_layout(cfg)
    cur = count = 0
    out = []
    rising = [0] * cfg.words

    def emit(items):
        for op, word, last, addr, t in items:
            if op != L.Op.MARK:
                rising[word] = int(bits[len(out)])
            out.append((op, word, last, addr, t))

    for w in events:
        e = unpack(lay, w)
        kind = L.EventKind(e["kind"])
        if kind == L.EventKind.START:
            cur = count = 0
            rising = [0] * cfg.words
            emit([(L.Op.CLEAR, k, k == W - 1, None, None) for k in range(W)])
        elif kind == L.EventKind.SPIKE:
            emit([(L.Op.SPIKE, k, k == W - 1, e["index"] * cfg.words + k, e["time"]) for k in range(W)])
        else:
            count += 1
            if count >= sources:
                if cur < t_end:
                    words = [k for k in range(W) if rising[k]]
                    emit([(L.Op.SWEEP, k, False, None, cur) for k in words] + [(L.Op.MARK, None, True, None, cur)])
                cur, count = cur + 1, 0
    return out


def simulate(cfg, events, *, active, sources, t_end, seed, n_tokens=None, until=None):
    """Run LOAD on ``events`` against a model of the pipeline behind it: random backpressure on ``req``, and
    each issued word is written back (``done``, in issue order, after 1..8 cycles) with the rising flag
    ``rising_bits(seed)[n]`` of the n-th issued token. Stops after ``n_tokens`` tokens, or once ``until``
    (the tokens so far) is true, and every write-back is done."""
    rng = np.random.default_rng(seed)
    bits = rising_bits(seed)
    dut = Load(cfg)
    lay = L.read_request_layout(cfg)
    tokens, hazards = [], []

    def more():
        return len(tokens) < n_tokens if until is None else not until(tokens)

    async def source(ctx):
        ctx.set(dut.active, active)
        ctx.set(dut.sources, sources)
        ctx.set(dut.t_end, t_end)
        for e in events:
            await stream_put(ctx, dut.i, e, rng=rng, idle=0.3)
        fed.append(True)

    fed = []

    async def downstream(ctx):
        pending = []  # (due cycle, word, rising) of issued tokens not yet written back, in order
        cycle = 0
        while more() or pending or (until is not None and not fed):
            ready = bool(rng.random() >= 0.3)
            ctx.set(dut.req.ready, ready)
            done = bool(pending) and pending[0][0] <= cycle
            ctx.set(dut.done, done)
            if done:
                ctx.set(dut.done_word, pending[0][1])
                ctx.set(dut.done_rising, pending[0][2])
            _, _, valid, payload = await ctx.tick().sample(dut.req.valid, dut.req.payload.as_value())
            if ready and valid:
                r = lay.from_bits(payload)
                if r.token.op != L.Op.MARK:
                    if any(word == r.token.word for _, word, _ in pending):
                        hazards.append((len(tokens), r.token.word))
                    due = max([cycle + int(rng.integers(1, 9))] + [d for d, _, _ in pending])
                    pending.append((due, r.token.word, int(bits[len(tokens)])))
                    # The pending FIFO holds every outstanding word: LOAD never issues past its entries.
                    assert not cfg.pending_fifo or len(pending) - done <= cfg.pending_fifo, "pending FIFO overrun"
                tokens.append(r)
            if done:
                pending.pop(0)
            cycle += 1
            assert cycle < 50_000, "LOAD stopped issuing"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source, background=True)
    sim.add_testbench(downstream)
    sim.run()
    return tokens, hazards


CFG_GROUPED = PEConfig(neurons=12, fan_in=10, lanes=1, time_bits=4, defer_depth=3, max_sources=3, sweep_group=4)
# The pending FIFO: 2 entries (full under most write-back delays of the model), and 5 with the grouped sweep.
CFG_FIFO = dataclasses.replace(CFG, pending_fifo=2)
CFG_GROUPED_FIFO = dataclasses.replace(CFG_GROUPED, pending_fifo=5)


@pytest.mark.parametrize("seed, CFG", [(0, CFG), (1, CFG), (2, CFG), (0, CFG_GROUPED), (1, CFG_GROUPED),
                                       (0, CFG_FIFO), (1, CFG_FIFO), (0, CFG_GROUPED_FIFO), (1, CFG_GROUPED_FIFO)],
                         ids=["0", "1", "2", "0-grouped", "1-grouped", "0-fifo", "1-fifo", "0-grouped-fifo",
                              "1-grouped-fifo"])
def test_single_source_tokens_match_reference(seed, CFG):
    """Every token (op, word, last, address, time) as docs/pe.md describes it, also with the grouped sweep
    (12 words in 3 groups of 4: the same tokens in the same order) and with the pending FIFO."""
    print(f"seed={seed} sweep_group={CFG.sweep_group} pending_fifo={CFG.pending_fifo}")
    rng = np.random.default_rng(seed)
    active = int(rng.integers(1, CFG.neurons + 1))
    t_end = int(rng.integers(3, CFG.max_t_end + 1))
    times = rng.integers(0, t_end + 1, size=CFG.fan_in)
    events = PECodec(CFG).input_events(times, t_end, rng=rng) * 2  # two inferences back to back
    want = reference_tokens(CFG, events, active=active, sources=1, t_end=t_end, bits=rising_bits(seed))
    got, hazards = simulate(CFG, events, active=active, sources=1, t_end=t_end, seed=seed, n_tokens=len(want))
    assert not hazards, f"word read while its write was pending: {hazards[:3]}"
    skipped = sum(1 for op, *_ in want if op == L.Op.MARK) * -(-active // CFG.lanes) - sum(
        1 for op, *_ in want if op == L.Op.SWEEP)
    assert skipped > 0  # some sweeps left words out
    for n, (g, w) in enumerate(zip(got, want, strict=True)):
        op, word, last, addr, t = w
        assert (g.token.op, g.token.last) == (op, int(last)), n
        if word is not None:
            assert g.token.word == word, n
        if addr is not None:
            assert g.weight_addr == addr, n
        if t is not None:
            assert g.token.time == t, n


@pytest.mark.parametrize("seed, fifo", [(0, 0), (1, 0), (2, 0), (0, 3)])
def test_multi_source_spikes_land_in_their_step(seed, fifo):
    print(f"seed={seed} pending_fifo={fifo}")
    CFG = dataclasses.replace(globals()["CFG"], pending_fifo=fifo)
    rng = np.random.default_rng(seed)
    sources = int(rng.integers(2, CFG.max_sources + 1))
    t_end = CFG.max_t_end
    times = rng.integers(0, t_end + 1, size=CFG.fan_in)
    events = merge_sources(CFG, times, t_end, sources, rng, CFG.defer_depth)
    W = CFG.words
    got, hazards = simulate(CFG, events, active=CFG.neurons, sources=sources, t_end=t_end, seed=seed,
                            until=lambda toks: sum(1 for g in toks if g.token.op == L.Op.MARK) == t_end)
    assert not hazards
    step, seen = 0, {}
    for g in got:
        if g.token.op == L.Op.SPIKE and g.token.word == 0:
            seen.setdefault(step, []).append(g.weight_addr // W)
            assert g.token.time == step
        elif g.token.op == L.Op.MARK:
            assert g.token.time == step
            step += 1
    assert step == t_end
    for t in range(t_end + 1):
        assert sorted(seen.get(t, [])) == sorted(np.flatnonzero(times == t).tolist()), f"step {t}"


def load_reference(cfg, events, *, sources, t_end, defer_depth):
    """LOAD's event order with the defer FIFO, as docs/pe.md describes it: ("SPIKE", index) and ("SWEEP", t)
    in processing order. Raises RuntimeError where the hardware would stop accepting input for good."""
    from collections import deque

    lay = L.event_layout(cfg)
    cur = count = replay = 0
    parked, out = deque(), []
    pending = deque(events)
    while True:
        if replay:
            e, from_defer = parked.popleft(), True
            replay -= 1
        elif pending:
            e, from_defer = unpack(lay, pending.popleft()), False
        else:
            return out
        kind = L.EventKind(e["kind"])
        if kind != L.EventKind.START and e["time"] > cur:
            if not from_defer and len(parked) >= defer_depth:
                raise RuntimeError("defer FIFO full with an early event at the input")
            parked.append(e)
            continue
        if kind == L.EventKind.START:
            cur = count = 0
        elif kind == L.EventKind.SPIKE:
            out.append(("SPIKE", e["index"]))
        else:
            count += 1
            if count >= sources:
                if cur < t_end:
                    out.append(("SWEEP", cur))
                cur, count, replay = cur + 1, 0, len(parked)


@pytest.mark.parametrize("seed, variant", [(0, {}), (1, {}), (2, {}), (3, {}), (0, {"defer_bram": True}),
                                           (1, {"defer_bram": True}), (0, {"lanes": 1, "sweep_group": 2}),
                                           (1, {"lanes": 1, "sweep_group": 4}), (0, {"pending_fifo": 4}),
                                           (1, {"lanes": 1, "sweep_group": 2, "pending_fifo": 3})])
def test_senders_two_steps_ahead_exact_order(seed, variant):
    """Senders up to two steps ahead: parked events are parked again during a replay; the token order is
    exactly the reference's, with the defer FIFO's read combinational or registered (``defer_bram``) and with
    the sweep's search in one piece or grouped (``sweep_group``, 8 words of 1 lane)."""
    print(f"seed={seed} variant={variant}")
    rng = np.random.default_rng(seed)
    cfg = PEConfig(**{**dict(neurons=8, fan_in=10, lanes=4, time_bits=4, defer_depth=12, max_sources=3), **variant})
    t_end = 8
    for _ in range(50):  # draw merges until one fits the defer FIFO
        times = rng.integers(0, t_end + 1, size=cfg.fan_in)
        sources = int(rng.integers(2, 4))
        events = skewed_merge(cfg, times, t_end, sources, rng, skew=2)
        try:
            want = load_reference(cfg, events, sources=sources, t_end=t_end, defer_depth=cfg.defer_depth)
            break
        except RuntimeError:
            continue
    got, hazards = simulate(cfg, events, active=cfg.neurons, sources=sources, t_end=t_end, seed=seed,
                            until=lambda toks: sum(1 for g in toks if g.token.op != L.Op.CLEAR and g.token.last)
                            == len(want))
    assert not hazards
    order = [("SPIKE", g.weight_addr // cfg.words) if g.token.op == L.Op.SPIKE else ("SWEEP", g.token.time)
             for g in got if g.token.op != L.Op.CLEAR and g.token.last]
    assert order == want
    # The replay path that parks an event again was taken: some spike was processed two steps after the
    # step that was open when it arrived.
    assert any(t >= 2 for t in _steps_ahead(cfg, events, sources))


def _steps_ahead(cfg, events, sources):
    """For every SPIKE: its time minus the number of steps completed when it arrived."""
    lay = L.event_layout(cfg)
    ends, completed, out = {}, 0, []
    for w in events:
        e = unpack(lay, w)
        if e["kind"] == L.EventKind.SPIKE:
            out.append(e["time"] - completed)
        elif e["kind"] == L.EventKind.STEP_END:
            ends[e["time"]] = ends.get(e["time"], 0) + 1
            while ends.get(completed, 0) >= sources:
                completed += 1
    return out


@pytest.mark.parametrize("width", [1, 2, 3, 5, 8, 13])
def test_lowest_set_tree(width):
    """LOAD's sweep search (the lowest rising-or-pending word at or above k) is a log-depth tree: it gives the
    index of the lowest set bit for every value of a small width, and whether any bit is set."""
    from amaranth.hdl import Module, Signal
    from amaranth.sim import Simulator

    from rtl.load import _lowest_set

    m = Module()
    bits = Signal(width)
    found, low = _lowest_set(bits)
    f, lo = Signal(), Signal(max(1, (width - 1).bit_length()))
    m.d.comb += [f.eq(found), lo.eq(low)]
    got = []

    async def bench(ctx):
        for v in range(1 << width):
            ctx.set(bits, v)
            got.append((v, ctx.get(f), ctx.get(lo)))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    for v, fv, lv in got:
        assert fv == (v != 0) and (v == 0 or lv == (v & -v).bit_length() - 1), (v, fv, lv)
