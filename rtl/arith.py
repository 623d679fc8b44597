"""Arithmetic helpers that keep FPGA hard blocks where they are timed.

nextpnr-ice40 times an ``SB_MAC16`` without its registers as a cell clocked by the constant net its ``CLK``
is tied to, so a combinational path through one is never checked against the clock (docs/fpga.md, "DSP
blocks"). Yosys's ``synth_ice40 -dsp`` maps every multiplier onto one, a multiplication by a constant
included. The helpers here build the PE's products so that each ``SB_MAC16`` keeps its output register
(:func:`split_product`), or stays in the logic fabric (:func:`times_const`).
"""

from __future__ import annotations

from amaranth.hdl import Const, Mux, Value

__all__ = ["csd_digits", "times_const", "split_product"]


def csd_digits(k: int) -> list[tuple[int, int]]:
    """``k >= 0`` in canonical signed-digit form: (shift, +1 or -1) pairs with ``k = sum(d << s)``, no two
    neighbouring digits non-zero (the fewest adders for a shift-and-add product)."""
    if k < 0:
        raise ValueError(f"csd_digits: k must be >= 0, got {k}")
    out, s = [], 0
    while k:
        if k & 1:
            d = 2 - (k & 3)   # +1 when k = 1 (mod 4), -1 when k = 3 (mod 4)
            out.append((s, d))
            k -= d
        k >>= 1
        s += 1
    return out


def times_const(value: Value, k: int) -> Value:
    """``value * k`` for an unsigned ``value`` and a constant ``k >= 0``, as shifts, adds and subtracts in the
    logic fabric (:func:`csd_digits`), unsigned and exactly as wide as the largest product."""
    width = max((((1 << len(value)) - 1) * k).bit_length(), 1)
    digits = csd_digits(k)
    if not digits:
        return Const(0, width)
    acc = None
    for s, d in sorted(digits, key=lambda sd: -sd[1]):   # a positive digit first: no negative partial sums
        term = value.as_unsigned() << s
        acc = term if acc is None else (acc + term if d > 0 else acc - term)
    return acc.as_unsigned()[:width] if len(acc) >= width else acc.as_unsigned()


def split_product(operand: Value, factor: Value, low_bits: int = 16) -> tuple[Value, Value, int]:
    """``operand * factor`` (``operand`` signed, ``factor`` unsigned) as ``(low, high, shift)`` with
    ``operand * factor == low + (high << shift)``: ``low`` is the unsigned product of the operand's lower
    ``shift = min(low_bits, len(operand) - 1)`` bits and the factor (one plain unsigned multiplier, which
    ``synth_ice40 -dsp`` maps onto an ``SB_MAC16`` with its output register when the caller registers it
    without a reset), ``high`` the signed product of its upper bits (at least the sign bit) and the factor,
    built from shifts and adds in the fabric (one term per upper bit)."""
    shift = min(low_bits, len(operand) - 1)
    low = operand.as_unsigned()[:shift] * factor.as_unsigned()
    upper = operand.as_signed()[shift:].as_signed()
    f = factor.as_unsigned()
    high = None
    for i in range(len(upper)):
        term = Mux(upper[i], f << i, 0)
        if i == len(upper) - 1:
            high = (0 if high is None else high) - term   # the sign bit weighs -2**i
        else:
            high = term if high is None else high + term
    return low, high.as_signed(), shift
