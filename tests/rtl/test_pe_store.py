"""rtl/store.py: one state write per token, one SPIKE per newly fired lane (ascending), STEP_END after the
last word of a SWEEP (time + 1) or CLEAR (0), ``done`` exactly on writes; under stalls on both outputs."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from rtl import layouts as L
from rtl.config import PEConfig
from rtl.store import Store
from verif import driver
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
        op = L.Op(int(rng.integers(0, 3)))
        word, time, last = int(rng.integers(0, CFG.words)), int(rng.integers(0, 30)), int(rng.random() < 0.3)
        newly = int(rng.integers(0, 1 << CFG.lanes)) if op == L.Op.SWEEP else 0
        state = int(rng.integers(0, 1 << 62))
        t = driver.pack(tok, op=op, word=word, time=time, last=last)
        items.append(driver.pack(lay, token=t, state=state, newly=newly))
        want_writes.append((word, state))
        for j in range(CFG.lanes):
            if newly >> j & 1:
                want_events.append(driver.pack(ev, kind=L.EventKind.SPIKE, index=base + word * CFG.lanes + j,
                                               time=time + 1))
        if last and op != L.Op.SPIKE:
            want_events.append(driver.pack(ev, kind=L.EventKind.STEP_END,
                                           time=time + 1 if op == L.Op.SWEEP else 0))
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
        async for _, _, valid, ready, done in ctx.tick().sample(dut.write.valid, dut.write.ready, dut.done):
            dones.append((valid and ready, done))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(feed)
    sim.add_testbench(events)
    sim.add_testbench(writes)
    sim.add_process(watch)
    sim.run()
    assert got_writes == want_writes
    assert got_events == want_events
    assert all(bool(a) == bool(b) for a, b in dones) and sum(1 for a, _ in dones if a) == len(want_writes)
