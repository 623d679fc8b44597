"""rtl/compute.py against the incremental form of docs/spec.md section 4, lane by lane, including extreme
values (V == theta, the widest S and V), under random backpressure."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from rtl import layouts as L
from rtl.compute import Compute
from rtl.config import PEConfig
from verif.pysim_pe import stream_get, stream_put

CFG = PEConfig(neurons=8, fan_in=20, lanes=4, time_bits=5, threshold_bits=10)


def _field(layout, name, value):
    f = layout[name]
    return (int(value) & ((1 << f.width) - 1)) << f.offset


def make_input(rng, op, word):
    resp = L.read_response_layout(CFG)
    lane = L.lane_state_layout(CFG)
    sb, vb = CFG.slope_bits, CFG.potential_bits
    lanes = []
    for _ in range(CFG.lanes):
        s = int(rng.integers(-(1 << (sb - 2)), 1 << (sb - 2)))
        theta = int(rng.integers(1, 1 << CFG.threshold_bits))
        pick = rng.random()
        v = theta - s if pick < 0.3 else (theta - s - 1 if pick < 0.5 else int(rng.integers(-(1 << (vb - 2)),
                                                                                            1 << (vb - 2))))
        w = int(rng.choice([-128, 127, int(rng.integers(-128, 128))]))
        lanes.append({"slope": s, "potential": v, "fired": int(rng.random() < 0.3), "w": w, "theta": theta})
    state = 0
    for j, x in enumerate(lanes):
        word_j = _field(lane, "slope", x["slope"]) | _field(lane, "potential", x["potential"]) | \
            _field(lane, "fired", x["fired"])
        state |= word_j << (j * lane.size)
    weights = sum((x["w"] & 0xFF) << (8 * j) for j, x in enumerate(lanes))
    thresholds = sum(x["theta"] << (CFG.threshold_bits * j) for j, x in enumerate(lanes))
    token = _field(L.token_layout(CFG), "op", op.value) | _field(L.token_layout(CFG), "word", word)
    bits = (_field(resp, "token", token) | _field(resp, "weights", weights) |
            _field(resp, "thresholds", thresholds) | _field(resp, "state", state))
    return bits, lanes


def reference(op, word, lanes, active):
    out, newly = [], 0
    for j, x in enumerate(lanes):
        s, v, f = x["slope"], x["potential"], x["fired"]
        if op == L.Op.CLEAR:
            s, v, f = 0, 0, 0
        elif op == L.Op.SPIKE:
            s += x["w"]
        else:
            v += s
            if not f and v >= x["theta"] and word * CFG.lanes + j < active:
                f, newly = 1, newly | 1 << j
        out.append((s, v, f))
    return out, newly


@pytest.mark.parametrize("seed", [0, 1])
def test_compute_matches_reference_under_stalls(seed):
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    active = 6  # the second word's last two lanes are inactive
    cases = [(L.Op(int(rng.integers(0, 3))), int(rng.integers(0, CFG.words))) for _ in range(150)]
    inputs = [make_input(rng, op, word) for op, word in cases]
    dut = Compute(CFG)
    out_lay = L.compute_layout(CFG)
    got = []

    async def feed(ctx):
        ctx.set(dut.active, active)
        for bits, _ in inputs:
            await stream_put(ctx, dut.i, bits, rng=rng, idle=0.3)

    async def take(ctx):
        for _ in inputs:
            got.append(out_lay.from_bits(await stream_get(ctx, dut.o, rng=rng, stall=0.4)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(feed)
    sim.add_testbench(take)
    sim.run()
    fired_at_theta = 0
    for n, ((op, word), (_, lanes), g) in enumerate(zip(cases, inputs, got, strict=True)):
        want, newly = reference(op, word, lanes, active)
        assert g.token.op == op and g.token.word == word, n
        assert g.newly == newly, (n, op, word)
        assert [(g.state[j].slope, g.state[j].potential, g.state[j].fired) for j in range(CFG.lanes)] == want, n
        fired_at_theta += sum(1 for j, x in enumerate(lanes)
                              if newly >> j & 1 and x["potential"] + x["slope"] == x["theta"])
    assert fired_at_theta > 0  # the V == theta corner was exercised
