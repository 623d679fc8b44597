"""Trainable ReL-PSP networks (fully connected and convolutional) built from one architecture string.

Architecture strings follow ``model.Network.describe``: ``784-800-10`` (dense; the first number is the
input size) or ``1x28x28-c16k5-p2-c32k5-p2-10`` (input shape ``CxHxW``; ``c{OC}k{K}`` is a conv2d layer
with optional ``s{stride}`` and ``p{padding}`` suffixes such as ``c16k3p1``; ``p{K}`` alone is a K x K
spike-time max-pool with stride K; a plain number is a dense layer).

Times are in the integer network's time steps in every mode, so the float network and the exported
integer network share one time axis: inputs are ``model.encode`` output (0..t_in_max), a neuron may fire
up to ``t_end``; silence is ``t_end + 1`` inside torch and ``NO_SPIKE`` in files.

Each weight layer has a fixed positive threshold ``theta`` (a buffer, set once from data by
:meth:`SpikingNet.calibrate`); the spike time is invariant to scaling a neuron's weights and threshold
together, so a trainable threshold adds nothing. Quantisation uses exactly that invariance: neuron j's
weights and threshold are multiplied by ``s_j = (2**(weight_bits-1) - 1) / max_i |w_ij|`` (capped so the
threshold fits ``threshold_bits``) and rounded (:func:`quantise_layer`). The same function serves
quantisation-aware training (straight-through rounding) and export, so the QAT forward pass is the
exported network's golden-model computation.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import model

from .stdbp import spike_times

__all__ = ["LayerSpec", "parse_arch", "SpikingNet", "quantise_layer", "to_network", "ArchError"]


class ArchError(ValueError):
    """An architecture string is malformed; the message names the token and what is expected."""


@dataclass(frozen=True)
class LayerSpec:
    kind: str  # "dense" | "conv2d" | "maxpool2d"
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    out: int = 0  # dense outputs or conv out_channels
    kernel: int = 0
    stride: int = 1
    padding: int = 0

    @property
    def fan_in(self) -> int:
        if self.kind == "dense":
            return math.prod(self.in_shape)
        if self.kind == "conv2d":
            return self.in_shape[0] * self.kernel * self.kernel
        return self.kernel * self.kernel


_CONV = re.compile(r"^c(\d+)k(\d+)(?:s(\d+))?(?:p(\d+))?$")
_POOL = re.compile(r"^p(\d+)$")


def parse_arch(arch: str, input_shape: tuple[int, ...] | None = None) -> tuple[tuple[int, ...], list[LayerSpec]]:
    """Parse ``arch`` into (input_shape, layer specs). ``input_shape`` (C, H, W) from the dataset is used
    when the string starts with a plain input size equal to its product."""
    tokens = arch.strip().split("-")
    if len(tokens) < 2:
        raise ArchError(f"--arch: expected INPUT-...-OUTPUT such as 784-800-10, got {arch!r}")
    first = tokens[0]
    try:
        shape = tuple(int(x) for x in first.split("x"))
    except ValueError:
        raise ArchError(f"--arch: input token {first!r} must be N or CxHxW") from None
    if len(shape) not in (1, 3) or min(shape) < 1:
        raise ArchError(f"--arch: input token {first!r} must be N or CxHxW with positive sizes")
    if len(shape) == 1 and input_shape is not None and math.prod(input_shape) == shape[0]:
        shape = tuple(input_shape) if len(input_shape) == 3 else shape
    in_shape, layers = shape, []
    for tok in tokens[1:]:
        if tok.isdigit():
            n = int(tok)
            if n < 1:
                raise ArchError(f"--arch: dense layer {tok!r} needs at least 1 neuron")
            layers.append(LayerSpec("dense", in_shape, (n,), out=n))
        elif m := _CONV.match(tok):
            oc, k = int(m[1]), int(m[2])
            s, p = int(m[3] or 1), int(m[4] or 0)
            if len(in_shape) != 3:
                raise ArchError(f"--arch: conv layer {tok!r} needs a CxHxW input, got {in_shape}")
            oh, ow = (in_shape[1] + 2 * p - k) // s + 1, (in_shape[2] + 2 * p - k) // s + 1
            if min(oc, k, s, oh, ow) < 1:
                raise ArchError(f"--arch: conv layer {tok!r} does not fit input {in_shape}")
            layers.append(LayerSpec("conv2d", in_shape, (oc, oh, ow), out=oc, kernel=k, stride=s, padding=p))
        elif m := _POOL.match(tok):
            k = int(m[1])
            if len(in_shape) != 3 or not 1 <= k <= min(in_shape[1:]):
                raise ArchError(f"--arch: pool layer {tok!r} does not fit input {in_shape}")
            layers.append(LayerSpec("maxpool2d", in_shape, (in_shape[0], in_shape[1] // k, in_shape[2] // k),
                                    kernel=k, stride=k))
        else:
            raise ArchError(f"--arch: cannot parse layer token {tok!r} (expected N, c{{OC}}k{{K}}[s{{S}}][p{{P}}] "
                            "or p{K})")
        in_shape = layers[-1].out_shape
    if layers[-1].kind == "maxpool2d":
        raise ArchError("--arch: the last layer must be dense or conv, not a pool")
    return shape, layers


class _RoundClamp(torch.autograd.Function):
    """round(x) clamped to [lo, hi] in the forward pass (exactly, no float residue); identity gradient."""

    @staticmethod
    def forward(ctx, x, lo, hi):
        return x.round().clamp(lo, hi)

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None


def quantise_layer(w: torch.Tensor, theta: torch.Tensor, weight_bits: int, threshold_bits: int):
    """Integer weights and thresholds (as float tensors) for one layer, straight-through for rounding.

    ``w`` is (fan_in, M) for dense or (OC, C, K, K) for conv; ``theta`` is (M,) / (OC,). Neuron j's column
    (channel) and threshold are scaled by one factor ``s_j`` and rounded, which leaves its spike time
    unchanged up to rounding. The scale is not differentiated."""
    wmax = (1 << (weight_bits - 1)) - 1
    tmax = (1 << threshold_bits) - 1
    per_out = w.abs().amax(dim=0) if w.ndim == 2 else w.abs().flatten(1).amax(dim=1)
    with torch.no_grad():
        s = wmax / per_out.clamp(min=1e-12)
        s = torch.minimum(s, tmax / theta)
    shape = (1, -1) if w.ndim == 2 else (-1, 1, 1, 1)
    wq = _RoundClamp.apply(w * s.reshape(shape), -wmax - 1, wmax)
    tq = _RoundClamp.apply(theta * s, 1, tmax)
    return wq, tq


class SpikingNet(nn.Module):
    """A ReL-PSP network: dense, conv2d (shared weights over positions) and spike-time max-pool layers.

    ``forward(t_in)`` takes encoded input times (B, *input_shape or B, N) as float and returns the spike
    times of every layer, each (B, *out_shape), silent = ``t_end + 1``. ``quantised=True`` runs the integer
    semantics of docs/spec.md (QAT and the bit-exactness test)."""

    def __init__(self, arch: str, *, input_shape=None, time_bits: int = 8, t_end: int | None = None,
                 weight_bits: int = 8, threshold_bits: int = 16, encoding: model.Encoding | None = None,
                 seed: int = 0):
        super().__init__()
        self.arch = arch
        self.input_shape, self.specs = parse_arch(arch, input_shape)
        self.time_bits = time_bits
        self.t_end = (1 << time_bits) - 2 if t_end is None else t_end
        self.weight_bits, self.threshold_bits = weight_bits, threshold_bits
        self.encoding = encoding or model.Encoding()
        gen = torch.Generator().manual_seed(seed)
        self.weights = nn.ParameterList()
        self.index = []  # position of each spec's weight in self.weights, or -1
        for spec in self.specs:
            if spec.kind == "maxpool2d":
                self.index.append(-1)
                continue
            shape = (spec.fan_in, spec.out) if spec.kind == "dense" else (spec.out, spec.in_shape[0],
                                                                          spec.kernel, spec.kernel)
            # Positive mean so ramps rise and most neurons fire at first; spread 1/sqrt(fan_in).
            sigma = 1.0 / math.sqrt(spec.fan_in)
            w = torch.randn(shape, generator=gen, dtype=torch.float64) * sigma + 0.2 * sigma
            self.index.append(len(self.weights))
            self.weights.append(nn.Parameter(w.float()))
        self.register_buffer("thetas", torch.ones(len(self.weights)))

    # -- helpers ------------------------------------------------------------------------------------------
    def encode(self, pixels: np.ndarray) -> torch.Tensor:
        """uint8 pixels (B, ...) -> float input times (B, *input_shape); silent -> t_end + 1."""
        n = int(np.prod(self.input_shape))
        t = model.encode(pixels.reshape(len(pixels), n), self.encoding, self.time_bits)  # (0 samples: fine)
        t = np.where(t > self.t_end, self.t_end + 1, t)
        return torch.from_numpy(t).float().reshape(len(pixels), *self.input_shape)

    def layer_params(self, n: int, quantised: bool):
        spec = self.specs[n]
        w = self.weights[self.index[n]]
        theta = self.thetas[self.index[n]].expand(spec.out).to(w.dtype)
        if quantised:
            w, theta = quantise_layer(w.double(), theta.double(), self.weight_bits, self.threshold_bits)
        return w, theta

    def _layer(self, n: int, t: torch.Tensor, quantised: bool, path: str = "auto",
               t_end: int | None = None) -> torch.Tensor:
        spec = self.specs[n]
        t_end = self.t_end if t_end is None else t_end
        silent = self.t_end + 1.0
        if spec.kind == "maxpool2d":
            x = t.reshape(len(t), *spec.in_shape)
            return -F.max_pool2d(-x, spec.kernel, spec.stride)
        w, theta = self.layer_params(n, quantised)
        t = t.to(w.dtype)
        if t_end > self.t_end:  # a longer window: inputs silent within t_end stay silent
            t = torch.where(t > self.t_end, torch.full_like(t, t_end + 1.0), t)
            silent = t_end + 1.0
        if spec.kind == "dense":
            return spike_times(t.reshape(len(t), -1), w, theta, t_end, integer=quantised, path=path)
        c, h, wd = spec.in_shape
        oc, oh, ow = spec.out_shape
        x = t.reshape(len(t), c, h, wd)
        if spec.padding:
            x = F.pad(x, (spec.padding,) * 4, value=silent)
        cols = F.unfold(x, spec.kernel, stride=spec.stride)  # (B, C*K*K, OH*OW)
        rows = cols.transpose(1, 2).reshape(-1, cols.shape[1])
        out = spike_times(rows, w.reshape(oc, -1).T, theta, t_end, integer=quantised, path=path)
        return out.reshape(len(t), oh * ow, oc).transpose(1, 2).reshape(len(t), oc, oh, ow)

    def forward(self, t_in: torch.Tensor, quantised: bool = False, out_window: int | None = None,
                path: str = "auto") -> list[torch.Tensor]:
        """``out_window`` (training only) lets the output layer fire up to that step instead of t_end, so
        an output that would be silent still has a spike time > t_end and a gradient (see docs/training.md);
        predictions count every output time > t_end as silent either way. ``path`` selects the exact
        algorithm of every layer (:func:`training.stdbp.spike_times`): ``"auto"`` is the compiled kernel,
        ``"torch"`` the torch algorithms (the benchmark baseline)."""
        t = t_in.reshape(len(t_in), *self.input_shape)
        times = []
        last = len(self.specs) - 1
        for n in range(len(self.specs)):
            t = self._layer(n, t, quantised, path, t_end=out_window if n == last else None)
            times.append(t)
        return times

    @torch.no_grad()
    def calibrate(self, t_in: torch.Tensor, target_step: float = 20.0, quantile: float = 0.5) -> None:
        """Set each weight layer's threshold from data so that about ``quantile`` of its neurons have fired
        ``target_step`` steps after the median spike time of the layer's input."""
        t = t_in.reshape(len(t_in), *self.input_shape).to(self.weights[0].dtype)
        for n, spec in enumerate(self.specs):
            if spec.kind != "maxpool2d":
                w = self.weights[self.index[n]]
                fired = t[t <= self.t_end]
                t_ref = float(fired.median()) + target_step if fired.numel() else target_step
                t_ref = min(t_ref, self.t_end * 0.8)
                ramp = (t_ref - t).clamp(min=0)
                if spec.kind == "dense":
                    v = ramp.reshape(len(t), -1) @ w
                else:
                    x = F.pad(ramp, (spec.padding,) * 4) if spec.padding else ramp
                    v = F.conv2d(x, w, stride=spec.stride)
                pos = v[v > 0]
                self.thetas[self.index[n]] = float(torch.quantile(pos[:100000], 1 - quantile)) if pos.numel() \
                    else 1.0
            t = self._layer(n, t, False)


def to_network(net: SpikingNet) -> model.Network:
    """The integer network (docs/spec.md) that the quantised forward pass computes."""
    layers = []
    for n, spec in enumerate(net.specs):
        if spec.kind == "maxpool2d":
            layers.append(model.MaxPool2d(in_shape=spec.in_shape, kernel=spec.kernel, stride=spec.stride))
            continue
        with torch.no_grad():
            w, theta = net.layer_params(n, quantised=True)
        wi = w.round().to(torch.int64).numpy()
        ti = theta.round().to(torch.int64).numpy()
        if spec.kind == "dense":
            layers.append(model.Dense(weight=wi, threshold=ti))
        else:
            layers.append(model.Conv2d(in_shape=spec.in_shape, weight=wi, threshold=ti, stride=spec.stride,
                                       padding=spec.padding))
    return model.Network.build(input_shape=net.input_shape, layers=layers, time_bits=net.time_bits,
                               t_end=net.t_end, weight_bits=net.weight_bits, threshold_bits=net.threshold_bits,
                               encoding=net.encoding)
