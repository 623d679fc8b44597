"""PEConfig: validation (one precise message per bad parameter) and derived widths."""

from __future__ import annotations

import dataclasses

import pytest

from model.network import potential_bits, weight_sum_bits
from rtl.config import PEConfig


@pytest.mark.parametrize("kwargs, message", [
    ({"neurons": 0}, r"^neurons: 0 is outside the allowed range 1\.\.65536$"),
    ({"fan_in": 0}, r"^fan_in: 0 is outside the allowed range 1\.\.1048576$"),
    ({"lanes": 3}, r"^lanes: 3 is not a power of two"),
    ({"lanes": 128, "neurons": 256}, r"^lanes: 128 is outside the allowed range 1\.\.64$"),
    ({"lanes": 8, "neurons": 4}, r"^lanes: 8 exceeds neurons=4$"),
    ({"lanes": 4, "neurons": 10}, r"^neurons: 10 is not a multiple of lanes=4$"),
    ({"weight_bits": 1}, r"^weight_bits: 1 is outside the allowed range 2\.\.16$"),
    ({"time_bits": 17}, r"^time_bits: 17 is outside the allowed range 2\.\.16$"),
    ({"threshold_bits": 33}, r"^threshold_bits: 33 is outside the allowed range 1\.\.32$"),
    ({"fifo_depth": 1}, r"^fifo_depth: 1 is outside the allowed range 2\.\.1024$"),
    ({"defer_depth": 0}, r"^defer_depth: 0 is outside"),
    ({"max_sources": 0}, r"^max_sources: 0 is outside"),
    ({"neurons": True}, r"^neurons: expected an integer"),
    ({"sweep_group": 3}, r"^sweep_group: 3 is not 0 or a power of two >= 2$"),
    ({"sweep_group": 1}, r"^sweep_group: 1 is not 0 or a power of two >= 2$"),
    ({"fan_in": 1 << 20, "neurons": 64, "lanes": 1}, r"^fan_in: fan_in \* neurons / lanes = 67108864 weight SRAM"),
])
def test_bad_parameter_names_field_and_limit(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PEConfig(**kwargs)


def test_keyword_only_and_frozen():
    with pytest.raises(TypeError):
        PEConfig(64)  # type: ignore[misc]
    cfg = PEConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lanes = 2  # type: ignore[misc]


def test_widths_follow_the_spec_functions():
    cfg = PEConfig(neurons=800, fan_in=784, lanes=8)
    assert cfg.slope_bits == weight_sum_bits(784, 8) == 18
    assert cfg.potential_bits == potential_bits(784, 8, 254, 16) == 26
    assert cfg.words == 100 and cfg.weight_words == 78_400
    assert cfg.index_bits == 10 and cfg.neuron_bits == 10 and cfg.lane_bits == 3
    assert cfg.no_spike == 255 and cfg.max_t_end == 254


def test_sweep_groups_and_pooling_option():
    """``sweep_groups``: ceil(W / G) groups, 1 (one search) when off or when one group holds every word.
    Without ``pooling`` the codec refuses a POOL_SHIFT other than 0."""
    from host.codec import PECodec

    assert PEConfig(neurons=110, lanes=2, sweep_group=8).sweep_groups == 7
    assert PEConfig(neurons=16, lanes=2, sweep_group=8).sweep_groups == 1
    assert PEConfig(neurons=110, lanes=2).sweep_groups == 1
    regs = dict(active=8, neuron_base=0, sources=1, t_end=10)
    assert PECodec(PEConfig(neurons=8, lanes=2)).registers(**regs, pool_shift=1)
    codec = PECodec(PEConfig(neurons=8, lanes=2, pooling=False))
    assert codec.registers(**regs, pool_shift=0)
    with pytest.raises(ValueError, match=r"^pool_shift: 1 is outside the allowed range 0\.\.0 of this PE$"):
        codec.registers(**regs, pool_shift=1)


def test_conv_pooling_needs_the_lane_bits_in_pool_low():
    """With pooling in the conv mode, POOL_LOW is 0 (the dense rule) or keeps at least the lane bits (STORE reads
    a word's window bits as one aligned block of ``lanes`` windows); the codec refuses values between, naming
    the register and the limit."""
    from host.codec import PECodec

    codec = PECodec(PEConfig(neurons=16, fan_in=16, lanes=4, conv_inputs=16, conv_size=8, conv_kernel=3))
    regs = dict(active=16, neuron_base=0, sources=1, t_end=10)
    assert codec.registers(**regs, pool_shift=2, conv={"kh": 3, "kw": 3, "pool_low": 2})
    assert codec.registers(**regs, pool_shift=0, conv={"kh": 3, "kw": 3, "pool_low": 0})
    assert codec.registers(**regs, pool_shift=2, conv={})   # POOL_LOW 0: the dense rule n >> POOL_SHIFT
    with pytest.raises(ValueError, match=r"^conv pool_low: 1 is between 0 and log2\(lanes\) = 2 with pooling"):
        codec.registers(**regs, pool_shift=2, conv={"kh": 3, "kw": 3, "pool_low": 1})
