"""Random integer networks for tests, benchmarks and RTL bring-up before trained networks exist."""

from __future__ import annotations

import numpy as np

from .network import (
    MAX_THRESHOLD_BITS,
    MAX_TIME_BITS,
    MAX_WEIGHT_BITS,
    Conv2d,
    Dense,
    Encoding,
    MaxPool2d,
    Network,
    NetworkError,
    _check_int,
    check_layer_size,
)

__all__ = ["random_network", "random_conv_network", "parse_arch"]


def parse_arch(arch: str) -> list[int]:
    """``"784-800-10"`` -> [784, 800, 10] (fully connected sizes, input first)."""
    try:
        sizes = [int(s) for s in arch.split("-")]
    except ValueError:
        raise NetworkError(f"arch: expected sizes joined by '-', such as 784-800-10, got {arch!r}") from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise NetworkError(f"arch: expected at least two positive sizes, got {arch!r}")
    # Refuse sizes that cannot be allocated before allocating them (a 31-digit size is a typo, not a network).
    for n, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
        check_layer_size(f"arch: layer {n + 1}", n_in, n_out)
    return sizes


def random_network(arch: str | list[int], *, seed: int = 0, weight_bits: int = 8, time_bits: int = 8,
                   t_end: int | None = None, t_in_max: int | None = None, threshold_bits: int = 16,
                   bias: float = 0.15) -> Network:
    """A fully connected network with uniform random weights (mean shifted up by ``bias`` of full scale so
    most neurons can fire) and per-neuron thresholds drawn so that hidden spikes spread over the window.

    ``t_in_max``: latest input spike time of the encoding; None: min(31, t_end). A given value outside
    0..t_end raises :class:`NetworkError` (never clamped). ``seed``: 0 .. 2**64 - 1."""
    sizes = parse_arch(arch) if isinstance(arch, str) else list(arch)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 1 << 64:
        raise NetworkError(f"seed: expected an integer in 0..2**64-1, got {seed!r}")
    # The widths shape the random draws below: check them first (Network.build checks everything again).
    _check_int("time_bits", time_bits, 2, MAX_TIME_BITS)
    _check_int("weight_bits", weight_bits, 2, MAX_WEIGHT_BITS)
    _check_int("threshold_bits", threshold_bits, 1, MAX_THRESHOLD_BITS)
    rng = np.random.default_rng(seed)
    wmax = (1 << (weight_bits - 1)) - 1
    tmax = (1 << threshold_bits) - 1
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=False):
        w = rng.integers(-wmax - 1, wmax + 1, size=(n_in, n_out)) + int(bias * wmax)
        w = np.clip(w, -wmax - 1, wmax)
        # A neuron receiving about half its inputs with mean weight m reaches n_in/2 * m * dt after dt steps;
        # aim the crossing at a few to a few tens of steps after the inputs start.
        mean_drive = max(1.0, 0.5 * n_in * max(1.0, float(w.mean())))
        theta = np.clip(rng.uniform(4, 24, size=n_out) * mean_drive, 1, tmax).astype(np.int64)
        layers.append(Dense(weight=w.astype(np.int64), threshold=theta))
    if t_in_max is None:
        t_last = (1 << time_bits) - 2 if t_end is None else t_end
        t_in_max = min(Encoding.t_in_max, t_last) if isinstance(t_last, int) else Encoding.t_in_max
    return Network.build(input_shape=(sizes[0],), layers=layers, time_bits=time_bits, t_end=t_end,
                         weight_bits=weight_bits, threshold_bits=threshold_bits, encoding=Encoding(t_in_max=t_in_max))


def random_conv_network(rng: np.random.Generator, in_shape, spec, *, time_bits: int = 4, weight_bits: int = 8
                        ) -> Network:
    """A random integer network from ``spec``: ("conv", out_channels, kernel, stride, padding), ("pool", kernel,
    stride) or ("dense", n) per layer; weights shifted up by a quarter of full scale and thresholds a few to a
    few tens of steps of drive, so that most neurons fire at spread-out times. NetworkError for a spec whose
    shapes do not fit (docs/spec.md section 5)."""
    wmax = (1 << (weight_bits - 1)) - 1
    layers, shape = [], tuple(in_shape)

    def weights(size):
        return np.clip(rng.integers(-wmax - 1, wmax + 1, size=size) + wmax // 4, -wmax - 1, wmax)

    def thresholds(fan_in, w, n):
        drive = max(1.0, 0.5 * fan_in * max(1.0, float(w.mean())))
        return np.clip(rng.uniform(3, 16, size=n) * drive, 1, (1 << 16) - 1).astype(np.int64)

    for kind, *p in spec:
        if kind == "conv":
            oc, k, stride, padding = p
            w = weights((oc, shape[0], k, k))
            layer = Conv2d(in_shape=shape, weight=w, threshold=thresholds(shape[0] * k * k, w, oc), stride=stride,
                           padding=padding)
        elif kind == "pool":
            layer = MaxPool2d(in_shape=shape, kernel=p[0], stride=p[1])
        else:
            w = weights((int(np.prod(shape)), p[0]))
            layer = Dense(weight=w, threshold=thresholds(int(np.prod(shape)), w, p[0]))
        layers.append(layer)
        shape = tuple(layer.out_shape)
    return Network.build(input_shape=tuple(in_shape), layers=layers, time_bits=time_bits, weight_bits=weight_bits)
