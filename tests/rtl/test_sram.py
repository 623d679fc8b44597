"""rtl/sram.py: every build of the one SRAM wrapper (dual or single port, packed rows, write granularity) reads
what a plain array model holds, with the documented latency and hold."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from rtl.sram import SRAM


@pytest.mark.parametrize("width,depth,granularity,single_port,pack", [
    (8, 13, None, False, 1), (8, 13, None, True, 1), (8, 13, None, True, 2), (4, 22, None, True, 4),
    (16, 9, 8, True, 2), (16, 9, 4, False, 2), (12, 7, 4, True, 1)])
def test_sram_matches_array_model(width, depth, granularity, single_port, pack):
    seed = width * 1000 + depth * 10 + pack
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    dut = SRAM(shape=width, depth=depth, granularity=granularity, single_port=single_port, pack=pack)
    assert dut.rows == -(-depth // pack)
    gran = granularity or width
    n_en = width // gran
    model = [0] * depth
    checked = []

    async def bench(ctx):
        expect = None  # data the last read will show (None before the first read)
        for _ in range(400):
            read = bool(rng.random() < 0.5)
            write = bool(rng.random() < 0.5) and not (single_port and read)
            ra, wa = int(rng.integers(depth)), int(rng.integers(depth))
            wd, we = int(rng.integers(1 << width)), int(rng.integers(1, 1 << n_en))
            ctx.set(dut.r_en, read)
            ctx.set(dut.r_addr, ra)
            ctx.set(dut.w_en, we if write else 0)
            ctx.set(dut.w_addr, wa)
            ctx.set(dut.w_data, wd)
            if read:
                expect = model[ra]  # a read sees the word before a write of the same cycle
            await ctx.tick()
            if write:
                mask = sum(((1 << gran) - 1) << (i * gran) for i in range(n_en) if we >> i & 1)
                model[wa] = (model[wa] & ~mask) | (wd & mask)
            ctx.set(dut.r_en, 0)
            ctx.set(dut.w_en, 0)
            await ctx.delay(1e-9)
            if expect is not None:
                got = ctx.get(dut.r_data)
                assert got == expect, (ra, got, expect)  # holds while r_en is low, too
                checked.append(got)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(checked) > 300


@pytest.mark.parametrize("width,depth", [(4, 9), (1, 5)])
def test_sram_comb_read(width, depth):
    """``comb_read``: ``r_data`` is the word at ``r_addr`` in the same cycle; a write shows from the next cycle."""
    rng = np.random.default_rng(width * 100 + depth)
    dut = SRAM(shape=width, depth=depth, comb_read=True)
    model, checked = [0] * depth, []

    async def bench(ctx):
        for _ in range(300):
            ra, wa, wd = int(rng.integers(depth)), int(rng.integers(depth)), int(rng.integers(1 << width))
            write = bool(rng.random() < 0.5)
            ctx.set(dut.r_addr, ra)
            ctx.set(dut.w_addr, wa)
            ctx.set(dut.w_data, wd)
            ctx.set(dut.w_en, int(write))
            await ctx.delay(1e-9)
            assert ctx.get(dut.r_data) == model[ra]   # the old word in the cycle of a write
            checked.append(ra)
            await ctx.tick()
            if write:
                model[wa] = wd

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(checked) == 300
    with pytest.raises(ValueError, match="comb_read"):
        SRAM(shape=width, depth=depth, comb_read=True, single_port=True)


def test_sram_rejects_bad_pack():
    with pytest.raises(ValueError, match="pack"):
        SRAM(shape=8, depth=4, pack=3)


def _drive(dut, steps):
    """Simulates ``dut`` for the (r_en, r_addr, w_en, w_addr) steps, one clock each."""
    async def bench(ctx):
        for r_en, r_addr, w_en, w_addr in steps:
            ctx.set(dut.r_en, r_en)
            ctx.set(dut.r_addr, r_addr)
            ctx.set(dut.w_en, w_en)
            ctx.set(dut.w_addr, w_addr)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("pack", [1, 2])
def test_collision_free_promise_is_checked_in_simulation(pack):
    """The suite's check (tests/conftest.py) fails a simulation in which an SRAM built collision_free reads the
    row written in the same cycle (with pack 2: another word of that row), and lets every other pattern pass:
    reads and writes of different rows in one cycle, and the same row a cycle apart."""
    ok = [(1, 0, 1, 2 * pack), (1, 3 * pack, 0, 3 * pack), (0, 3 * pack, 1, 3 * pack), (1, 3 * pack, 0, 0)]
    _drive(SRAM(shape=8, depth=13, pack=pack, collision_free=True), ok)
    bad = ok + [(1, 4 * pack, 1, 4 * pack + pack - 1)]
    with pytest.raises(AssertionError, match="collision_free"):
        _drive(SRAM(shape=8, depth=13, pack=pack, collision_free=True), bad)
    _drive(SRAM(shape=8, depth=13, pack=pack), bad)   # the default SRAM gives the old word: allowed


def test_collision_free_is_dual_port_only_and_marks_the_memory():
    with pytest.raises(ValueError, match="collision_free"):
        SRAM(shape=8, depth=4, single_port=True, collision_free=True)
    from amaranth.back import rtlil

    from rtl.sram import COLLISION_FREE
    assert COLLISION_FREE in rtlil.convert(SRAM(shape=8, depth=4, collision_free=True))
    assert COLLISION_FREE not in rtlil.convert(SRAM(shape=8, depth=4))
