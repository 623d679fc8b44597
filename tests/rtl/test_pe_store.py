"""rtl/store.py: one state write per token (none for MARK), one SPIKE per newly fired lane (ascending),
STEP_END after a MARK (time + 1) or the last word of a CLEAR (0), ``done`` exactly on writes with the word
and its ``rising`` flag; under stalls on both outputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from amaranth.sim import Simulator

from host.codec import pack
from rtl import layouts as L
from rtl.config import PEConfig
from rtl.store import Store
from verif.pysim_pe import stream_get, stream_put

CFG = PEConfig(neurons=16, fan_in=20, lanes=4, time_bits=5)


@pytest.mark.parametrize("seed", [0, 1])
def test_store_events_and_writes(seed):
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    base = 3
    tok = L.token_layout(CFG)
    lay = L.compute_layout(CFG)
    ev = L.event_layout(CFG)
    items, want_events, want_writes = [], [], []
    for _ in range(80):
        op = L.Op(int(rng.integers(0, 4)))
        word, time, last = int(rng.integers(0, CFG.words)), int(rng.integers(0, 30)), int(rng.random() < 0.3)
        if op == L.Op.SWEEP:
            last = 0  # a sweep ends with its MARK
        elif op == L.Op.MARK:
            last = 1
        newly = int(rng.integers(0, 1 << CFG.lanes)) if op == L.Op.SWEEP else 0
        state = int(rng.integers(0, 1 << 62))
        rising = int(rng.integers(0, 2))
        t = pack(tok, op=op, word=word, time=time, last=last)
        items.append(pack(lay, token=t, state=state, newly=newly, rising=rising))
        if op != L.Op.MARK:
            want_writes.append((word, state, rising))
        for j in range(CFG.lanes):
            if newly >> j & 1:
                want_events.append(pack(ev, kind=L.EventKind.SPIKE, index=base + word * CFG.lanes + j,
                                               time=time + 1))
        if last and op != L.Op.SPIKE:
            want_events.append(pack(ev, kind=L.EventKind.STEP_END,
                                           time=0 if op == L.Op.CLEAR else time + 1))
    dut = Store(CFG)
    wr = L.write_request_layout(CFG)
    got_events, got_writes, dones = [], [], []

    async def feed(ctx):
        ctx.set(dut.neuron_base, base)
        for x in items:
            await stream_put(ctx, dut.i, x, rng=rng, idle=0.2)

    async def events(ctx):
        for _ in want_events:
            got_events.append(await stream_get(ctx, dut.o, rng=rng, stall=0.5))

    async def writes(ctx):
        for _ in want_writes:
            w = wr.from_bits(await stream_get(ctx, dut.write, rng=rng, stall=0.3))
            got_writes.append((w.addr, w.state.as_value().value))

    async def watch(ctx):
        async for _, _, valid, ready, done, word, rising in ctx.tick().sample(
                dut.write.valid, dut.write.ready, dut.done, dut.done_word, dut.done_rising):
            dones.append((valid and ready, done, word, rising))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(feed)
    sim.add_testbench(events)
    sim.add_testbench(writes)
    sim.add_process(watch)
    sim.run()
    assert got_writes == [(w, st) for w, st, _ in want_writes]
    assert got_events == want_events
    assert all(bool(a) == bool(b) for a, b, _, _ in dones)
    assert [(w, r) for a, _, w, r in dones if a] == [(w, r) for w, _, r in want_writes]


@pytest.mark.parametrize("pool_ram", [False, True], ids=["flip-flops", "ram"])
@pytest.mark.parametrize("shift", [1, 2, 3])
def test_store_pooling_first_spike_per_window(shift, pool_ram, seed):
    """POOL_SHIFT > 0 (docs/pe.md "Max-pooling"): per inference (CLEAR tokens first), only the first newly fired
    neuron of each window of 2**shift neurons is emitted, as NEURON_BASE + window; later ones are dropped, also
    inside one word; the window bits are cleared by the next inference's CLEARs. Stalls on both outputs. The
    same with the window bits in a memory read combinationally (``pool_ram``)."""
    CFG = dataclasses.replace(globals()["CFG"], pool_ram=pool_ram)
    rng = np.random.default_rng(seed + shift)
    base = 5
    tok, lay, ev = L.token_layout(CFG), L.compute_layout(CFG), L.event_layout(CFG)
    items, want_events, n_writes = [], [], 0
    for _ in range(2):
        for word in range(CFG.words):
            items.append(pack(lay, token=pack(tok, op=L.Op.CLEAR, word=word, last=int(word == CFG.words - 1))))
        want_events.append(pack(ev, kind=L.EventKind.STEP_END, time=0))
        n_writes += CFG.words
        fired, taken = set(), set()
        for t in range(6):
            for word in sorted(rng.choice(CFG.words, size=int(rng.integers(1, CFG.words + 1)), replace=False)):
                lanes = [j for j in range(CFG.lanes) if word * CFG.lanes + j not in fired and rng.random() < 0.5]
                newly = sum(1 << j for j in lanes)
                items.append(pack(lay, token=pack(tok, op=L.Op.SWEEP, word=int(word), time=t), newly=newly))
                n_writes += 1
                for j in lanes:
                    n = int(word) * CFG.lanes + j
                    fired.add(n)
                    if n >> shift not in taken:
                        taken.add(n >> shift)
                        want_events.append(pack(ev, kind=L.EventKind.SPIKE, index=base + (n >> shift), time=t + 1))
            items.append(pack(lay, token=pack(tok, op=L.Op.MARK, time=t, last=1)))
            want_events.append(pack(ev, kind=L.EventKind.STEP_END, time=t + 1))
    dut = Store(CFG)
    got_events = []

    async def feed(ctx):
        ctx.set(dut.neuron_base, base)
        ctx.set(dut.pool_shift, shift)
        for x in items:
            await stream_put(ctx, dut.i, x, rng=rng, idle=0.2)

    async def events(ctx):
        for _ in want_events:
            got_events.append(await stream_get(ctx, dut.o, rng=rng, stall=0.5))

    async def writes(ctx):
        for _ in range(n_writes):
            await stream_get(ctx, dut.write, rng=rng, stall=0.3)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(feed)
    sim.add_testbench(events)
    sim.add_testbench(writes)
    sim.run()
    assert got_events == want_events
