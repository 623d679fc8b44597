"""The golden model: exact integer ReL-PSP inference (docs/spec.md).

Two implementations of the same definition:

* :func:`run` — the fast, vectorised batch path used everywhere (CLI, training judge, RTL comparison);
* :func:`run_reference` — deliberately simple, time-stepped straight from the definition, used to check
  the fast path (tests/model/test_golden_properties.py).

Both return a :class:`Result` holding **every layer's spike times** and the prediction.

Fast path, per dense layer (all integers):
V_j[t] = sum_{i: t_i < t} w_ij (t - t_i) is piecewise linear in t. Let tau_0 < tau_1 < ... be the distinct input
times present. On the segment (tau_k, tau_{k+1}] (the last one ends at t_end) it equals S_k t - P_k with
S_k = sum_{t_i <= tau_k} w_ij and P_k = sum_{t_i <= tau_k} w_ij t_i. The neuron fires in the first segment whose
right end has V >= theta, at t = ceil((theta + P_k) / S_k); V is below theta at each segment's left end, so S_k
is positive there. S for all segments of a batch chunk is one matrix product of a "has arrived by tau_k"
indicator with W, done in floating point only where every partial sum is an integer that the float type
represents exactly (|partial sums| <= max_j sum_i |w_ij| < 2**24 for float32, 2**53 for float64).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .network import Conv2d, Dense, MaxPool2d, Network

__all__ = ["Result", "run", "run_reference", "decide", "conv_as_dense", "NO_DECISION", "check_input_times"]

#: Prediction value when every output neuron is silent.
NO_DECISION = -1

# Elements per temporary (chunk x distinct times x max(fan-in, fan-out)); bounds memory at a few 100 MB.
_CHUNK_ELEMS = 1 << 22


@dataclass(frozen=True)
class Result:
    """Spike times of every layer (``times[l]`` has shape (batch, *layer l out_shape), int64, NO_SPIKE =
    silent) and the prediction per sample (int64, :data:`NO_DECISION` when all outputs are silent)."""

    times: tuple[np.ndarray, ...]
    prediction: np.ndarray

    @property
    def output_times(self) -> np.ndarray:
        return self.times[-1].reshape(len(self.prediction), -1)


def decide(output_times: np.ndarray, no_spike: int) -> np.ndarray:
    """Decision rule: earliest output spike wins, ties go to the lowest index, all silent -> NO_DECISION."""
    out = np.asarray(output_times).reshape(len(output_times), -1)
    pred = out.argmin(axis=1)  # argmin returns the first (lowest) index among equal minima
    return np.where(out.min(axis=1) == no_spike, NO_DECISION, pred).astype(np.int64)


def check_input_times(net: Network, input_times) -> np.ndarray:
    """Validate raw input spike times: shape (batch, *input_shape) or (batch, n_inputs), integers in
    0..t_end or NO_SPIKE. Returns an int64 array of shape (batch, n_inputs)."""
    t = np.asarray(input_times)
    if t.dtype.kind not in "iu":
        raise ValueError(f"input times: expected an integer array, got dtype {t.dtype}")
    if t.ndim < 1 or (t.shape[1:] != tuple(net.input_shape) and t.shape[1:] != (net.n_inputs,)):
        raise ValueError(f"input times: expected shape (batch, {net.n_inputs}) or (batch, "
                         f"{', '.join(map(str, net.input_shape))}), got {t.shape}")
    t = t.reshape(len(t), net.n_inputs).astype(np.int64)
    bad = ((t < 0) | (t > net.t_end)) & (t != net.no_spike)
    if bad.any():
        b, i = np.argwhere(bad)[0]
        raise ValueError(f"input times: sample {b} input {i} is {t[b, i]}; allowed 0..t_end={net.t_end} or "
                         f"NO_SPIKE={net.no_spike}")
    return t


def conv_as_dense(layer: Conv2d) -> np.ndarray:
    """The conv layer as an equivalent dense weight matrix (in_size, out_size); unconnected pairs are 0.

    A zero weight contributes nothing to V, so the dense layer with thresholds ``repeat(threshold, OH*OW)``
    computes exactly the same spike times. Used by the fast path and by the hardware mapper.
    """
    c, h, w = layer.in_shape
    oc, _, kh, kw = layer.weight.shape
    _, oh, ow = layer.out_shape
    dense = np.zeros((c * h * w, oc * oh * ow), dtype=np.int64)
    out_idx = np.arange(oc * oh * ow).reshape(oc, oh, ow)
    for y in range(oh):
        for x in range(ow):
            for ky in range(kh):
                iy = y * layer.stride + ky - layer.padding
                if not 0 <= iy < h:
                    continue
                for kx in range(kw):
                    ix = x * layer.stride + kx - layer.padding
                    if not 0 <= ix < w:
                        continue
                    rows = np.arange(c) * h * w + iy * w + ix
                    dense[rows[:, None], out_idx[:, y, x][None, :]] = layer.weight[:, :, ky, kx].T
    return dense


def _exact_float(weight: np.ndarray):
    """A float dtype in which every partial sum of weights is exact, or None (use integer matmul)."""
    bound = int(np.abs(weight).sum(axis=0).max()) if weight.size else 0
    if bound < (1 << 24):
        return np.float32
    if bound < (1 << 53):
        return np.float64
    return None


def _dense_fast(t_in: np.ndarray, weight: np.ndarray, threshold: np.ndarray, t_end: int, no_spike: int,
                _cache: dict | None = None) -> np.ndarray:
    batch, n_in = t_in.shape
    n_out = weight.shape[1]
    out = np.full((batch, n_out), no_spike, dtype=np.int64)
    dtype = _exact_float(weight)
    wmat = weight.astype(dtype) if dtype is not None else weight
    theta = threshold.astype(np.int64)
    n_times = len(np.unique(t_in[t_in <= t_end]))
    if n_times == 0:
        return out
    chunk = max(1, _CHUNK_ELEMS // (n_times * max(n_in, n_out)))
    for s in range(0, batch, chunk):
        tc = t_in[s:s + chunk]
        taus = np.unique(tc[tc <= t_end])
        if taus.size == 0:
            continue
        # arrived[b, k, i]: input i has spiked at or before tau_k (silent inputs never: NO_SPIKE > t_end).
        arrived = tc[:, None, :] <= taus[None, :, None]
        if dtype is not None:
            slope = np.matmul(arrived.astype(dtype), wmat).astype(np.int64)
        else:
            slope = np.matmul(arrived.astype(np.int64), wmat)
        # P_k = sum_{t_i <= tau_k} w t_i, from the slope increments at each tau.
        offset = np.cumsum(np.diff(slope, axis=1, prepend=0) * taus[None, :, None], axis=1)
        right = np.append(taus[1:], t_end)
        v_right = slope * right[None, :, None] - offset
        crossed = v_right >= theta[None, None, :]
        fires = crossed.any(axis=1)
        k = crossed.argmax(axis=1)[:, None, :]
        s_k = np.take_along_axis(slope, k, axis=1)[:, 0, :]
        p_k = np.take_along_axis(offset, k, axis=1)[:, 0, :]
        s_k = np.where(fires, s_k, 1)  # positive wherever the neuron fires (V rises across theta)
        t_fire = -((-(theta[None, :] + p_k)) // s_k)
        out[s:s + chunk] = np.where(fires, t_fire, no_spike)
    return out


def _maxpool(t_in: np.ndarray, layer: MaxPool2d) -> np.ndarray:
    batch = len(t_in)
    x = t_in.reshape(batch, *layer.in_shape)
    win = np.lib.stride_tricks.sliding_window_view(x, (layer.kernel, layer.kernel), axis=(2, 3))
    win = win[:, :, :: layer.stride, :: layer.stride]
    _, oh, ow = layer.out_shape
    return win[:, :, :oh, :ow].min(axis=(-1, -2)).reshape(batch, -1)


def run(net: Network, input_times) -> Result:
    """Fast batch inference. ``input_times``: (batch, n_inputs) or (batch, *input_shape) integers."""
    t = check_input_times(net, input_times)
    batch = len(t)
    times = []
    for layer in net.layers:
        if isinstance(layer, Dense):
            t = _dense_fast(t, layer.weight, layer.threshold, net.t_end, net.no_spike)
        elif isinstance(layer, Conv2d):
            oh_ow = layer.out_shape[1] * layer.out_shape[2]
            t = _dense_fast(t, conv_as_dense(layer), np.repeat(layer.threshold, oh_ow), net.t_end, net.no_spike)
        else:
            t = _maxpool(t, layer)
        times.append(t.reshape(batch, *layer.out_shape))
    return Result(times=tuple(times), prediction=decide(times[-1], net.no_spike))


# --------------------------------------------------------------------------------------------------------
# The reference: time-stepped, straight from the definition. Slow on purpose; no shared code with `run`
# beyond input checking and the decision rule.


def _reference_neurons(t_in: np.ndarray, weight: np.ndarray, theta: np.ndarray, t_end: int, no_spike: int):
    """t_in (batch, fan_in) with NO_SPIKE for silent; weight (fan_in, n) ; theta (n,)."""
    batch, n = len(t_in), weight.shape[1]
    out = np.full((batch, n), no_spike, dtype=np.int64)
    for t in range(t_end + 1):
        # V[t] = sum over inputs with t_i < t of w * (t - t_i); silent inputs never satisfy t_i < t <= t_end.
        elapsed = np.where(t_in < t, t - t_in, 0)
        v = elapsed @ weight
        newly = (v >= theta[None, :]) & (out == no_spike)
        out[newly] = t
    return out


def run_reference(net: Network, input_times) -> Result:
    """Time-stepped reference inference with the same interface as :func:`run`."""
    t = check_input_times(net, input_times)
    batch = len(t)
    times = []
    for layer in net.layers:
        if isinstance(layer, Dense):
            t = _reference_neurons(t, layer.weight, layer.threshold, net.t_end, net.no_spike)
        elif isinstance(layer, Conv2d):
            c, h, w = layer.in_shape
            oc, _, kh, kw = layer.weight.shape
            _, oh, ow = layer.out_shape
            p = layer.padding
            padded = np.full((batch, c, h + 2 * p, w + 2 * p), net.no_spike, dtype=np.int64)
            padded[:, :, p:p + h, p:p + w] = t.reshape(batch, c, h, w)
            kernel = layer.weight.reshape(oc, -1).T  # (c*kh*kw, oc)
            out = np.empty((batch, oc, oh, ow), dtype=np.int64)
            for y in range(oh):
                for x in range(ow):
                    ys, xs = y * layer.stride, x * layer.stride
                    patch = padded[:, :, ys:ys + kh, xs:xs + kw].reshape(batch, -1)
                    out[:, :, y, x] = _reference_neurons(patch, kernel, layer.threshold, net.t_end, net.no_spike)
            t = out.reshape(batch, -1)
        else:
            c, h, w = layer.in_shape
            _, oh, ow = layer.out_shape
            x = t.reshape(batch, c, h, w)
            out = np.empty((batch, c, oh, ow), dtype=np.int64)
            for y in range(oh):
                for xx in range(ow):
                    ys, xs = y * layer.stride, xx * layer.stride
                    out[:, :, y, xx] = x[:, :, ys:ys + layer.kernel, xs:xs + layer.kernel].min(axis=(2, 3))
            t = out.reshape(batch, -1)
        times.append(t.reshape(batch, *layer.out_shape))
    return Result(times=tuple(times), prediction=decide(times[-1], net.no_spike))
