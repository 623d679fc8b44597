"""rtl/store.py: one state write per token (none for MARK), one SPIKE per newly fired lane (ascending),
STEP_END after a MARK (time + 1) or the last word of a CLEAR (0), ``done`` exactly on writes with the word
and its ``rising`` flag; under stalls on both outputs."""

from __future__ import annotations

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
