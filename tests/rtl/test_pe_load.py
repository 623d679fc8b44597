"""rtl/load.py: the token sequence of a step-ordered input is exactly the reference's, no word is read
while an earlier write of it is pending (read-after-write hazard), and with several senders the SPIKE
tokens between two SWEEPs are exactly the spikes of that step (defer FIFO)."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from rtl import layouts as L
from rtl.config import PEConfig
from rtl.load import Load
from verif import driver
from verif.pysim_pe import stream_put
from verif.scenarios import merge_sources, skewed_merge

CFG = PEConfig(neurons=12, fan_in=10, lanes=4, time_bits=4, defer_depth=3, max_sources=3)


def reference_tokens(cfg, events, *, active, sources, t_end):
    """(op, word, last, weight_addr or None, sweep time or None) per token, straight from docs/pe.md."""
    W = -(-active // cfg.lanes)
    lay = L.event_layout(cfg)
    cur = count = 0
    out = []
    for w in events:
        e = driver.unpack(lay, w)
        kind = L.EventKind(e["kind"])
        if kind == L.EventKind.START:
            cur = count = 0
            out += [(L.Op.CLEAR, k, k == W - 1, None, None) for k in range(W)]
        elif kind == L.EventKind.SPIKE:
            out += [(L.Op.SPIKE, k, k == W - 1, e["index"] * cfg.words + k, None) for k in range(W)]
        else:
            count += 1
            if count >= sources:
                if cur < t_end:
                    out += [(L.Op.SWEEP, k, k == W - 1, None, cur) for k in range(W)]
                cur, count = cur + 1, 0
    return out


def simulate(cfg, events, *, active, sources, t_end, seed, n_tokens):
    rng = np.random.default_rng(seed)
    dut = Load(cfg)
    lay = L.read_request_layout(cfg)
    tokens, hazards = [], []

    async def source(ctx):
        ctx.set(dut.active, active)
        ctx.set(dut.sources, sources)
        ctx.set(dut.t_end, t_end)
        for e in events:
            await stream_put(ctx, dut.i, e, rng=rng, idle=0.3)

    async def downstream(ctx):
        pending = []  # (due cycle, word) of issued tokens not yet written back, in order
        cycle = 0
        while len(tokens) < n_tokens or pending:
            ready = bool(rng.random() >= 0.3)
            ctx.set(dut.req.ready, ready)
            done = bool(pending) and pending[0][0] <= cycle
            ctx.set(dut.done, done)
            _, _, valid, payload = await ctx.tick().sample(dut.req.valid, dut.req.payload.as_value())
            if ready and valid:
                r = lay.from_bits(payload)
                if any(word == r.token.word for _, word in pending):
                    hazards.append((len(tokens), r.token.word))
                tokens.append(r)
                due = max([cycle + int(rng.integers(1, 9))] + [d for d, _ in pending])
                pending.append((due, r.token.word))
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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_single_source_tokens_match_reference(seed):
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    active = int(rng.integers(1, CFG.neurons + 1))
    t_end = int(rng.integers(3, CFG.max_t_end + 1))
    times = rng.integers(0, t_end + 1, size=CFG.fan_in)
    events = driver.input_events(CFG, times, t_end, rng=rng) * 2  # two inferences back to back
    want = reference_tokens(CFG, events, active=active, sources=1, t_end=t_end)
    got, hazards = simulate(CFG, events, active=active, sources=1, t_end=t_end, seed=seed, n_tokens=len(want))
    assert not hazards, f"word read while its write was pending: {hazards[:3]}"
    for n, (g, w) in enumerate(zip(got, want, strict=True)):
        op, word, last, addr, t = w
        assert (g.token.op, g.token.word, g.token.last) == (op, word, int(last)), n
        if addr is not None:
            assert g.weight_addr == addr, n
        if t is not None:
            assert g.token.time == t, n


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multi_source_spikes_land_in_their_step(seed):
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    sources = int(rng.integers(2, CFG.max_sources + 1))
    t_end = CFG.max_t_end
    times = rng.integers(0, t_end + 1, size=CFG.fan_in)
    events = merge_sources(CFG, times, t_end, sources, rng, CFG.defer_depth)
    W = CFG.words
    n_tokens = W * (1 + int((times <= t_end).sum()) + t_end)
    got, hazards = simulate(CFG, events, active=CFG.neurons, sources=sources, t_end=t_end, seed=seed,
                            n_tokens=n_tokens)
    assert not hazards
    step, seen = 0, {}
    for g in got:
        if g.token.op == L.Op.SPIKE and g.token.word == 0:
            seen.setdefault(step, []).append(g.weight_addr // W)
        elif g.token.op == L.Op.SWEEP and g.token.last:
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
            e, from_defer = driver.unpack(lay, pending.popleft()), False
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


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_senders_two_steps_ahead_exact_order(seed):
    """Senders up to two steps ahead: parked events are parked again during a replay; the token order is
    exactly the reference's."""
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    cfg = PEConfig(neurons=8, fan_in=10, lanes=4, time_bits=4, defer_depth=12, max_sources=3)
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
                            n_tokens=(len(want) + 1) * cfg.words)  # + the CLEAR of START
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
        e = driver.unpack(lay, w)
        if e["kind"] == L.EventKind.SPIKE.value:
            out.append(e["time"] - completed)
        elif e["kind"] == L.EventKind.STEP_END.value:
            ends[e["time"]] = ends.get(e["time"], 0) + 1
            while ends.get(completed, 0) >= sources:
                completed += 1
    return out
