"""rtl/compute.py against the (S, B) form of docs/spec.md section 4 (V[t] = S * t - B), lane by lane,
including extreme values (V == theta, wide S and B, the largest times), the ``rising`` flag and MARK tokens,
under random backpressure."""

from __future__ import annotations

import dataclasses

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


def make_input(rng, op, word, time):
    resp = L.read_response_layout(CFG)
    lane = L.lane_state_layout(CFG)
    sb, vb = CFG.slope_bits, CFG.potential_bits
    lanes = []
    for _ in range(CFG.lanes):
        s = int(rng.integers(-(1 << (sb - 2)), 1 << (sb - 2)))
        if rng.random() < 0.2:
            s = int(rng.choice([0, 1, -1]))
        theta = int(rng.integers(1, 1 << CFG.threshold_bits))
        pick = rng.random()
        # B such that V[time + 1] = S * (time + 1) - B lands on theta, just below it, or anywhere.
        v = theta if pick < 0.3 else (theta - 1 if pick < 0.5 else int(rng.integers(-(1 << (vb - 3)), 1 << (vb - 3))))
        b = s * (time + 1) - v
        w = int(rng.choice([-128, 127, int(rng.integers(-128, 128))]))
        lanes.append({"slope": s, "offset": b, "fired": int(rng.random() < 0.3), "w": w, "theta": theta})
    state = 0
    for j, x in enumerate(lanes):
        word_j = _field(lane, "slope", x["slope"]) | _field(lane, "offset", x["offset"]) | \
            _field(lane, "fired", x["fired"])
        state |= word_j << (j * lane.size)
    weights = sum((x["w"] & 0xFF) << (8 * j) for j, x in enumerate(lanes))
    thresholds = sum(x["theta"] << (CFG.threshold_bits * j) for j, x in enumerate(lanes))
    tl = L.token_layout(CFG)
    token = _field(tl, "op", op.value) | _field(tl, "word", word) | _field(tl, "time", time)
    bits = (_field(resp, "token", token) | _field(resp, "weights", weights) |
            _field(resp, "thresholds", thresholds) | _field(resp, "state", state))
    return bits, lanes


def reference(op, word, time, lanes, active):
    out, newly, rising = [], 0, 0
    for j, x in enumerate(lanes):
        s, b, f = x["slope"], x["offset"], x["fired"]
        in_use = word * CFG.lanes + j < active
        if op == L.Op.CLEAR:
            s, b, f = 0, 0, 0
        elif op == L.Op.SPIKE:
            s, b = s + x["w"], b + x["w"] * time
        elif op == L.Op.SWEEP:
            if not f and s * (time + 1) - b >= x["theta"] and in_use:
                f, newly = 1, newly | 1 << j
        out.append((s, b, f))
        rising |= int(in_use and not f and s > 0)
    return out, newly, rising


@pytest.mark.parametrize("seed, stage", [(0, False), (1, False), (2, True), (3, True)])
def test_compute_matches_reference_under_stalls(seed, stage):
    """Every token's result under random input gaps and output stalls, in one cycle and with the registered
    products of ``compute_stage`` (tokens in order, none lost or repeated)."""
    print(f"seed={seed} compute_stage={stage}")
    rng = np.random.default_rng(seed)
    active = 6  # the second word's last two lanes are inactive
    # Times up to max_t_end - 1 for SWEEP (it multiplies by t + 1 <= t_end) and max_t_end for SPIKE.
    cases = []
    for _ in range(200):
        op = L.Op(int(rng.integers(0, 4)))
        hi = CFG.max_t_end - (op == L.Op.SWEEP)
        cases.append((op, int(rng.integers(0, CFG.words)), int(rng.choice([0, hi, int(rng.integers(0, hi + 1))]))))
    inputs = [make_input(rng, op, word, time) for op, word, time in cases]
    dut = Compute(dataclasses.replace(CFG, compute_stage=stage))
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
    fired_at_theta = rising_seen = 0
    for n, ((op, word, time), (_, lanes), g) in enumerate(zip(cases, inputs, got, strict=True)):
        want, newly, rising = reference(op, word, time, lanes, active)
        assert g.token.op == op and g.token.word == word and g.token.time == time, n
        assert g.newly == newly, (n, op, word)
        assert g.rising == rising, (n, op, word)
        assert [(g.state[j].slope, g.state[j].offset, g.state[j].fired) for j in range(CFG.lanes)] == want, n
        fired_at_theta += sum(1 for j, x in enumerate(lanes)
                              if newly >> j & 1 and x["slope"] * (time + 1) - x["offset"] == x["theta"])
        rising_seen += rising
    assert fired_at_theta > 0  # the V == theta corner was exercised
    assert 0 < rising_seen < len(cases)
