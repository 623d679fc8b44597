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

__all__ = ["Result", "run", "run_reference", "decide", "conv_as_dense", "dense_equivalent", "maxpool_times",
           "NO_DECISION", "check_input_times"]

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
        shaped = f" or (batch, {', '.join(map(str, net.input_shape))})" if len(net.input_shape) > 1 else ""
        raise ValueError(f"input times: expected shape (batch, {net.n_inputs}){shaped}, got {t.shape}")
    t = t.reshape(len(t), net.n_inputs)
    # Compare in the array's own dtype: casting first would wrap uint64 values above 2**63 to negatives.
    bad = ((t < 0) | (t > net.t_end)) & (t != net.no_spike)
    if bad.any():
        b, i = np.argwhere(bad)[0]
        raise ValueError(f"input times: sample {b} input {i} is {int(t[b, i])}; allowed 0..t_end={net.t_end} or "
                         f"NO_SPIKE={net.no_spike}")
    return t.astype(np.int64)


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


def dense_equivalent(layer: Dense | Conv2d) -> tuple[np.ndarray, np.ndarray]:
    """(weight (in_size, out_size), threshold (out_size,)) int64 of a dense layer, or of a conv2d layer as its
    equivalent dense layer (:func:`conv_as_dense`, each channel's threshold repeated over its OH*OW outputs).
    The one conversion the hardware mapper, the one-PE runs and the board driver use. ValueError for a layer
    without neurons (maxpool2d)."""
    if isinstance(layer, Dense):
        return np.asarray(layer.weight, dtype=np.int64), np.asarray(layer.threshold, dtype=np.int64)
    if isinstance(layer, Conv2d):
        per_channel = layer.out_shape[1] * layer.out_shape[2]
        return conv_as_dense(layer), np.repeat(np.asarray(layer.threshold, dtype=np.int64), per_channel)
    raise ValueError(f"{layer.kind} layers have no neurons (only dense and conv2d have a dense equivalent)")


def _exact_float(weight: np.ndarray):
    """A float dtype in which every partial sum of weights is exact, or None (use integer matmul)."""
    bound = int(np.abs(weight).sum(axis=0).max()) if weight.size else 0
    if bound < (1 << 24):
        return np.float32
    if bound < (1 << 53):
        return np.float64
    return None


def _first_crossing(slope, offset, right, theta, valid=None):
    """Spike times from segment slopes/offsets, shape (rows, segments, neurons), int64.

    On segment k, V(t) = slope_k t - offset_k for t in (left_k, right_k]. V is below theta at every
    segment's left end until the first crossing, so the neuron fires in the first segment whose right end
    reaches theta, at ceil((theta + offset_k) / slope_k) (slope_k > 0 there). ``valid`` masks segments that
    do not exist. Returns (fires, t_fire), each (rows, neurons).
    """
    crossed = slope * right - offset >= theta[None, None, :]
    if valid is not None:
        crossed &= valid
    fires = crossed.any(axis=1)
    k = crossed.argmax(axis=1)[:, None, :]  # the first True
    s_k = np.where(fires, np.take_along_axis(slope, k, axis=1)[:, 0, :], 1)
    p_k = np.take_along_axis(offset, k, axis=1)[:, 0, :]
    return fires, -((-(theta[None, :] + p_k)) // s_k)


def _dense_grid(tc, wmat, theta, t_end):
    """Segments between the chunk's distinct input times tau_k; slopes by one exact matmul."""
    taus = np.unique(tc[tc <= t_end])
    if taus.size == 0:
        return np.zeros((len(tc), wmat.shape[1]), dtype=bool), None
    # arrived[b, k, i]: input i has spiked at or before tau_k (silent inputs never: NO_SPIKE > t_end).
    arrived = tc[:, None, :] <= taus[None, :, None]
    slope = np.matmul(arrived.astype(wmat.dtype), wmat).astype(np.int64)
    # P_k = sum_{t_i <= tau_k} w t_i, from the slope increments at each tau.
    offset = np.cumsum(np.diff(slope, axis=1, prepend=0) * taus[None, :, None], axis=1)
    right = np.append(taus[1:], t_end)[None, :, None]
    return _first_crossing(slope, offset, right, theta)


def _dense_sort(tc, weight, theta, t_end):
    """Segments between each sample's own sorted input times; slopes by cumulative sums of weight rows.
    Equal times give empty segments, which never hold a first crossing."""
    order = np.argsort(tc, axis=1, kind="stable")
    ts = np.take_along_axis(tc, order, axis=1)
    real = ts <= t_end
    rows = weight[order] * real[:, :, None]  # (b, N, M) in arrival order; silent inputs weigh nothing
    slope = np.cumsum(rows, axis=1)
    offset = np.cumsum(rows * ts[:, :, None], axis=1)
    right = np.minimum(np.concatenate([ts[:, 1:], np.full((len(ts), 1), t_end)], axis=1), t_end)
    return _first_crossing(slope, offset, right[:, :, None], theta, valid=real[:, :, None])


def _dense_fast(t_in: np.ndarray, weight: np.ndarray, threshold: np.ndarray, t_end: int, no_spike: int,
                method: str = "auto") -> np.ndarray:
    """Spike times of a dense layer for a batch (rows, n_in) -> (rows, n_out).

    ``method``: "grid" (temporaries ~ distinct times x (n_in + n_out) per row, one BLAS product) or
    "sort" (temporaries ~ n_in x n_out per row); "auto" takes the cheaper. Both are exact.
    """
    batch, n_in = t_in.shape
    n_out = weight.shape[1]
    out = np.full((batch, n_out), no_spike, dtype=np.int64)
    theta = threshold.astype(np.int64)
    n_times = len(np.unique(t_in[t_in <= t_end]))
    if n_times == 0:
        return out
    dtype = _exact_float(weight)
    if method == "auto":
        method = "sort" if n_in * n_out < 2 * n_times * (n_in + n_out) or dtype is None else "grid"
    if method == "grid":
        wmat = weight.astype(dtype if dtype is not None else np.int64)
        per_row = n_times * max(n_in, n_out)
    else:
        wmat = weight.astype(np.int64)
        per_row = n_in * n_out
    chunk = max(1, _CHUNK_ELEMS // per_row)
    for s in range(0, batch, chunk):
        tc = t_in[s:s + chunk]
        fires, t_fire = (_dense_grid if method == "grid" else _dense_sort)(tc, wmat, theta, t_end)
        if t_fire is not None:
            out[s:s + chunk] = np.where(fires, t_fire, no_spike)
    return out


def _patches(t_in: np.ndarray, layer: Conv2d, no_spike: int) -> np.ndarray:
    """Receptive fields: (batch, OH*OW, C*KH*KW) input times, padding positions silent."""
    batch = len(t_in)
    c, h, w = layer.in_shape
    _, _, kh, kw = layer.weight.shape
    _, oh, ow = layer.out_shape
    p, s = layer.padding, layer.stride
    padded = np.full((batch, c, h + 2 * p, w + 2 * p), no_spike, dtype=np.int64)
    padded[:, :, p:p + h, p:p + w] = t_in.reshape(batch, c, h, w)
    win = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(2, 3))[:, :, ::s, ::s][:, :, :oh, :ow]
    # (batch, c, oh, ow, kh, kw) -> (batch, oh, ow, c, kh, kw): row order of weight.reshape(OC, -1)
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(batch, oh * ow, c * kh * kw)


def _conv_fast(t_in: np.ndarray, layer: Conv2d, t_end: int, no_spike: int) -> np.ndarray:
    """Each (sample, output position) is a row of a small dense layer with the shared kernel: cost
    OH*OW*C*KH*KW*OC per sample instead of the dense equivalent's (C*H*W)*(OC*OH*OW)."""
    batch = len(t_in)
    oc = layer.weight.shape[0]
    _, oh, ow = layer.out_shape
    rows = _patches(t_in, layer, no_spike).reshape(batch * oh * ow, -1)
    out = _dense_fast(rows, layer.weight.reshape(oc, -1).T, layer.threshold, t_end, no_spike)
    return out.reshape(batch, oh * ow, oc).transpose(0, 2, 1).reshape(batch, -1)


def maxpool_times(t_in: np.ndarray, layer: MaxPool2d) -> np.ndarray:
    """Spike-time max pooling (docs/spec.md section 5): the earliest time in each window; (batch, out_size)."""
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
            t = _conv_fast(t, layer, net.t_end, net.no_spike)
        else:
            t = maxpool_times(t, layer)
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
