"""The integer ReL-PSP network: parameters, layers and the widths derived from them.

Everything here follows docs/spec.md. A :class:`Network` is validated once, when it is built, so every
consumer (golden model, mapper, RTL config, trainer export) can rely on its invariants:

* weights are signed integers of ``weight_bits`` bits (two's complement range);
* thresholds are integers in ``1 .. 2**threshold_bits - 1``;
* times are unsigned ``time_bits``-bit integers, ``NO_SPIKE = 2**time_bits - 1`` is reserved, and
  ``0 <= t_in_max <= t_end <= 2**time_bits - 2``.

Validation failures raise :class:`NetworkError` naming the field and the limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "NetworkError",
    "Encoding",
    "Dense",
    "Conv2d",
    "MaxPool2d",
    "Network",
    "no_spike",
    "signed_bits",
    "weight_sum_bits",
    "potential_bits",
    "check_layer_size",
    "MAX_LAYER_SYNAPSES",
]

FORMAT_NAME = "yoso-relpsp"
FORMAT_VERSION = 1

MAX_TIME_BITS = 16
MAX_WEIGHT_BITS = 16
MAX_THRESHOLD_BITS = 32
#: Largest layer, counted as the synapses of its dense equivalent (inputs x neurons; a conv layer counts every
#: input position against every output position, as ``conv_as_dense`` stores it): 2**27, 1 GiB of int64. The
#: golden model and the mapper hold that matrix; a larger layer is refused before anything is allocated.
MAX_LAYER_SYNAPSES = 1 << 27
#: Largest number of input values (product of ``input_shape``).
MAX_INPUTS = 1 << 24


class NetworkError(ValueError):
    """A network description violates docs/spec.md. The message names the field and the limit."""


def no_spike(time_bits: int) -> int:
    """The reserved time value meaning "no spike": all ones, ``2**time_bits - 1``."""
    return (1 << time_bits) - 1


def signed_bits(lo: int, hi: int) -> int:
    """Smallest two's-complement width holding every integer in ``lo .. hi``."""
    if lo > hi:
        raise ValueError(f"empty range {lo}..{hi}")
    n = 1
    while not (-(1 << (n - 1)) <= lo and hi <= (1 << (n - 1)) - 1):
        n += 1
    return n


def weight_sum_range(fan_in: int, weight_bits: int) -> tuple[int, int]:
    """Range of the slope S = sum of the weights of inputs that have arrived (any subset of fan_in)."""
    return -fan_in * (1 << (weight_bits - 1)), fan_in * ((1 << (weight_bits - 1)) - 1)


def weight_sum_bits(fan_in: int, weight_bits: int) -> int:
    """Signed width of the slope register S (spec section "Register widths")."""
    return signed_bits(*weight_sum_range(fan_in, weight_bits))


def potential_range(fan_in: int, weight_bits: int, t_end: int) -> tuple[int, int]:
    """Range of the potential V[t] for 0 <= t <= t_end: every input contributes w*(t - t_i), 0 <= t - t_i <= t_end."""
    lo, hi = weight_sum_range(fan_in, weight_bits)
    return lo * t_end, hi * t_end


def potential_bits(fan_in: int, weight_bits: int, t_end: int, threshold_bits: int = 0) -> int:
    """Signed width of the potential register V.

    It holds every reachable V[t] (t <= t_end) and, when ``threshold_bits`` is given, every threshold too,
    so the comparison V >= theta happens in one width without overflow.
    """
    lo, hi = potential_range(fan_in, weight_bits, t_end)
    if threshold_bits:
        hi = max(hi, (1 << threshold_bits) - 1)
    return signed_bits(lo, hi)


def check_layer_size(name: str, n_in: int, n_out: int) -> None:
    """Raise :class:`NetworkError` naming ``name`` if a layer of ``n_in`` inputs and ``n_out`` neurons (its
    dense equivalent) exceeds :data:`MAX_LAYER_SYNAPSES`. Call it before allocating the layer."""
    if n_in * n_out > MAX_LAYER_SYNAPSES:
        raise NetworkError(f"{name}: {n_in} inputs x {n_out} neurons = {n_in * n_out:,} synapses exceeds the "
                           f"limit of {MAX_LAYER_SYNAPSES:,} per layer")


def _check_int(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise NetworkError(f"{name}: expected an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if not lo <= value <= hi:
        raise NetworkError(f"{name}: {value} is outside the allowed range {lo}..{hi}")
    return value


def _check_array(name: str, arr, shape: tuple[int, ...], lo: int, hi: int) -> np.ndarray:
    if not isinstance(arr, np.ndarray):
        raise NetworkError(f"{name}: expected a numpy integer array, got {type(arr).__name__}")
    if arr.dtype.kind not in "iu":
        raise NetworkError(f"{name}: expected an integer dtype, got {arr.dtype}")
    if tuple(arr.shape) != tuple(shape):
        raise NetworkError(f"{name}: expected shape {tuple(shape)}, got {tuple(arr.shape)}")
    if arr.size:
        amin, amax = int(arr.min()), int(arr.max())
        if amin < lo or amax > hi:
            bad = amin if amin < lo else amax
            raise NetworkError(f"{name}: value {bad} is outside the allowed range {lo}..{hi}")
    out = arr.astype(np.int64)
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class Encoding:
    """Pixel (0..255) to input spike time: ``t = ((255 - p) * t_in_max + 127) // 255`` if ``p >= p_min``.

    Pixels below ``p_min`` send no spike. ``p = 255`` spikes at 0, ``p = p_min`` latest.
    """

    t_in_max: int = 31
    p_min: int = 1

    kind = "linear-intensity"


@dataclass(frozen=True)
class Dense:
    """Fully connected layer. ``weight[i, j]`` connects input i to neuron j; ``threshold[j]`` per neuron."""

    weight: np.ndarray
    threshold: np.ndarray
    kind = "dense"

    @property
    def in_shape(self) -> tuple[int, ...]:
        return (self.weight.shape[0],)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.weight.shape[1],)


@dataclass(frozen=True)
class Conv2d:
    """2-D convolution over spike times, input (C, H, W), output (OC, OH, OW), row-major flattening.

    ``weight[oc, c, ky, kx]``; ``threshold[oc]`` per output channel. Zero padding means padded inputs are
    silent. Each output position is an ordinary ReL-PSP neuron whose inputs are its receptive field.
    """

    in_shape: tuple[int, int, int]
    weight: np.ndarray
    threshold: np.ndarray
    stride: int = 1
    padding: int = 0
    kind = "conv2d"

    @property
    def out_shape(self) -> tuple[int, int, int]:
        oc, _, kh, kw = self.weight.shape
        _, h, w = self.in_shape
        return (oc, (h + 2 * self.padding - kh) // self.stride + 1, (w + 2 * self.padding - kw) // self.stride + 1)


@dataclass(frozen=True)
class MaxPool2d:
    """Spike-time max pooling: the output time is the earliest input time in each window (no padding)."""

    in_shape: tuple[int, int, int]
    kernel: int
    stride: int
    kind = "maxpool2d"

    @property
    def out_shape(self) -> tuple[int, int, int]:
        c, h, w = self.in_shape
        return (c, (h - self.kernel) // self.stride + 1, (w - self.kernel) // self.stride + 1)


Layer = Dense | Conv2d | MaxPool2d


@dataclass(frozen=True)
class Network:
    """A validated integer ReL-PSP network (docs/spec.md). Build with :meth:`build`."""

    input_shape: tuple[int, ...]
    layers: tuple[Layer, ...]
    time_bits: int = 8
    t_end: int = 254
    weight_bits: int = 8
    threshold_bits: int = 16
    encoding: Encoding = field(default_factory=Encoding)

    @classmethod
    def build(
        cls,
        *,
        input_shape,
        layers,
        time_bits: int = 8,
        t_end: int | None = None,
        weight_bits: int = 8,
        threshold_bits: int = 16,
        encoding: Encoding | None = None,
    ) -> Network:
        """Validate every field and return a frozen network whose arrays are read-only int64."""
        time_bits = _check_int("time_bits", time_bits, 2, MAX_TIME_BITS)
        t_end = no_spike(time_bits) - 1 if t_end is None else t_end
        t_end = _check_int("t_end", t_end, 1, no_spike(time_bits) - 1)
        weight_bits = _check_int("weight_bits", weight_bits, 2, MAX_WEIGHT_BITS)
        threshold_bits = _check_int("threshold_bits", threshold_bits, 1, MAX_THRESHOLD_BITS)
        encoding = encoding or Encoding(t_in_max=min(Encoding.t_in_max, t_end))
        if not isinstance(encoding, Encoding):
            raise NetworkError(f"encoding: expected an Encoding, got {type(encoding).__name__}")
        encoding = Encoding(
            t_in_max=_check_int("encoding.t_in_max", encoding.t_in_max, 0, t_end),
            p_min=_check_int("encoding.p_min", encoding.p_min, 0, 256),
        )
        input_shape = tuple(_check_int(f"input_shape[{k}]", d, 1, 1 << 24) for k, d in enumerate(input_shape))
        if not 1 <= len(input_shape) <= 3:
            raise NetworkError(f"input_shape: expected 1 to 3 dimensions, got {len(input_shape)}")
        if math.prod(input_shape) > MAX_INPUTS:
            raise NetworkError(f"input_shape: {math.prod(input_shape):,} input values exceed the limit of "
                               f"{MAX_INPUTS:,}")
        if not layers:
            raise NetworkError("layers: a network needs at least one layer")
        wlo, whi = -(1 << (weight_bits - 1)), (1 << (weight_bits - 1)) - 1
        tlo, thi = 1, (1 << threshold_bits) - 1
        shape = input_shape
        checked = []
        for n, layer in enumerate(layers):
            name = f"layers[{n}]"
            if isinstance(layer, Dense):
                size = math.prod(shape)
                w = layer.weight
                if isinstance(w, np.ndarray) and w.ndim == 2:
                    check_layer_size(name, size, w.shape[1])
                if not isinstance(w, np.ndarray) or w.ndim != 2 or w.shape[1] < 1:
                    got = tuple(w.shape) if isinstance(w, np.ndarray) else type(w).__name__
                    raise NetworkError(f"{name}.weight: expected shape ({size}, N_out >= 1), got {got}")
                if w.shape[0] != size:
                    src = "input_shape" if n == 0 else f"layers[{n - 1}] output"
                    raise NetworkError(f"{name}.weight: expected {size} rows ({src} has {size} values), "
                                       f"got shape {tuple(w.shape)}")
                n_out = w.shape[1]
                layer = Dense(
                    weight=_check_array(f"{name}.weight", layer.weight, (size, n_out), wlo, whi),
                    threshold=_check_array(f"{name}.threshold", layer.threshold, (n_out,), tlo, thi),
                )
            elif isinstance(layer, Conv2d):
                if len(shape) != 3 or tuple(layer.in_shape) != shape:
                    raise NetworkError(f"{name}.in_shape: expected {shape} (C, H, W) from the previous layer, "
                                       f"got {tuple(layer.in_shape)}")
                w = layer.weight
                if (not isinstance(w, np.ndarray) or w.ndim != 4 or w.shape[1] != shape[0]
                        or min(w.shape[0], w.shape[2], w.shape[3]) < 1):
                    got = tuple(w.shape) if isinstance(w, np.ndarray) else type(w).__name__
                    raise NetworkError(f"{name}.weight: expected shape (OC, {shape[0]}, KH, KW) with OC, KH, "
                                       f"KW >= 1, got {got}")
                stride = _check_int(f"{name}.stride", layer.stride, 1, 1 << 16)
                # Padding beyond the kernel only adds output positions that see nothing but padding.
                padding = _check_int(f"{name}.padding", layer.padding, 0, max(w.shape[2:]))
                layer = Conv2d(
                    in_shape=shape,
                    weight=_check_array(f"{name}.weight", w, w.shape, wlo, whi),
                    threshold=_check_array(f"{name}.threshold", layer.threshold, (w.shape[0],), tlo, thi),
                    stride=stride,
                    padding=padding,
                )
                if min(layer.out_shape[1:]) < 1:
                    raise NetworkError(f"{name}.weight: kernel {w.shape[2:]} does not fit input {shape[1:]} "
                                       f"with padding {padding}")
                check_layer_size(name, math.prod(shape), math.prod(layer.out_shape))
            elif isinstance(layer, MaxPool2d):
                if len(shape) != 3 or tuple(layer.in_shape) != shape:
                    raise NetworkError(f"{name}.in_shape: expected {shape} (C, H, W) from the previous layer, "
                                       f"got {tuple(layer.in_shape)}")
                kernel = _check_int(f"{name}.kernel", layer.kernel, 1, min(shape[1:]))
                stride = _check_int(f"{name}.stride", layer.stride, 1, 1 << 16)
                layer = MaxPool2d(in_shape=shape, kernel=kernel, stride=stride)
            else:
                raise NetworkError(f"{name}: unsupported layer type {type(layer).__name__}")
            checked.append(layer)
            shape = tuple(layer.out_shape)
        if isinstance(checked[-1], MaxPool2d):
            raise NetworkError(f"layers[{len(checked) - 1}]: the output layer must be dense or conv2d, not maxpool2d")
        return cls(
            input_shape=input_shape,
            layers=tuple(checked),
            time_bits=time_bits,
            t_end=t_end,
            weight_bits=weight_bits,
            threshold_bits=threshold_bits,
            encoding=encoding,
        )

    @property
    def no_spike(self) -> int:
        return no_spike(self.time_bits)

    @property
    def n_inputs(self) -> int:
        return math.prod(self.input_shape)

    @property
    def n_outputs(self) -> int:
        return math.prod(self.layers[-1].out_shape)

    def fan_in(self, index: int) -> int:
        """Largest number of inputs of one neuron in layer ``index`` (pooling: window size)."""
        layer = self.layers[index]
        if isinstance(layer, Dense):
            return layer.weight.shape[0]
        if isinstance(layer, Conv2d):
            return math.prod(layer.weight.shape[1:])
        return layer.kernel * layer.kernel

    def describe(self) -> str:
        """Architecture string such as ``784-800-10`` (dense) or ``1x28x28-c16k5-p2-10``."""
        parts = ["x".join(map(str, self.input_shape))]
        for layer in self.layers:
            if isinstance(layer, Dense):
                parts.append(str(layer.weight.shape[1]))
            elif isinstance(layer, Conv2d):
                parts.append(f"c{layer.weight.shape[0]}k{layer.weight.shape[2]}")
            else:
                parts.append(f"p{layer.kernel}")
        return "-".join(parts)
