"""STDBP: exact spike times of a layer of ReL-PSP neurons and their spike-time gradients.

A neuron ``j`` with inputs at times ``t_i`` (time steps, float) and weights ``w_ij`` has the potential
``V_j(t) = sum_i w_ij * max(t - t_i, 0)`` (the ReL-PSP kernel never decays). It fires once, at the first
``t <= t_end`` with ``V_j(t) >= theta_j``. Between consecutive input times V is linear, so the spike time has
the closed form over the causal set ``C = {i : t_i < t_j}``::

    t_j = (theta_j + sum_C w_ij t_i) / sum_C w_ij                                      (sum_C w_ij > 0)

and the STDBP gradients (zero for inputs outside C, zero for silent neurons)::

    dt_j / dw_ij = (t_i - t_j) / sum_C w_ij        dt_j / dt_i = w_ij / sum_C w_ij
    dt_j / dtheta_j = 1 / sum_C w_ij

:func:`spike_times` computes this for a batch, exactly (no time stepping), in three ways that give the same
numbers (float rounding aside):

* ``"kernel"`` (the default, ``"auto"``): the compiled row kernels of ``training/kernels.py``: one sort per
  input row, one walk over it for all neurons, float64 accumulators; no ``(rows, inputs, neurons)`` tensor.
  The fastest by far on the CPU, for dense layers and for the receptive fields of conv layers alike.

and two torch algorithms (``"torch"`` picks between them as below), kept as independent references:

* ``"grid"``: when the batch's input times take few distinct values ``tau_0 < ... < tau_{K-1}`` (the first
  layer: encoded pixels take at most ``t_in_max + 1`` values), the slope after each ``tau_k`` is one matrix
  product of a one-hot "input arrives at tau_k" tensor with W, and the backward pass is two more products.
  Cost: ``K`` dense matmuls, all in BLAS.
* ``"sort"``: otherwise (continuous hidden times) inputs are sorted per sample and the slopes are cumulative
  sums of the gathered weight rows; the backward pass uses the causal mask ``t_i < t_j`` directly.

Silent inputs are represented by any time ``> t_end`` (they never join a causal set); silent outputs come
back as ``t_end + 1``. With ``integer=True`` the forward pass follows docs/spec.md exactly: weights,
thresholds and input times must be integer-valued (float64 holds every partial sum exactly) and the spike
time is the integer ``ceil(t*)`` of the continuous crossing ``t*``; the value returned is ``t*`` plus the
detached rounding, so gradients are the STDBP gradients at ``t*`` (straight-through for the ceiling).

Gradient guard: ``1 / sum_C w`` is bounded by clamping ``sum_C w >= theta / t_end``. A neuron that crosses
theta within the window has, for non-negative causal weights, ``sum_C w >= theta / t_end`` anyway (the
paper's argument that the ReL-PSP time window bounds the gradient); the clamp enforces the bound for mixed
signs too. The trainer may clip the gradient norm on top.
"""

from __future__ import annotations

import numpy as np
import torch

from . import kernels

__all__ = ["spike_times", "GRID_MAX_TIMES", "PATHS"]

#: ``path`` values of :func:`spike_times`.
PATHS = ("auto", "kernel", "torch", "grid", "sort")

#: Use the grid path when the batch has at most this many distinct input times (and "auto" is asked).
GRID_MAX_TIMES = 64
#: Grid path: layers with at most this many neurons gather weight rows per input (R*N*M work) instead of
#: one-hot matrix products (R*K*N*M flops), which are skinny and slow for conv kernels (N = C*K*K small).
GATHER_MAX_OUT = 64


def _first_crossing(slope, offset, right, theta, valid=None):
    """Per (row, neuron): does V cross theta at the right end of some segment, and in which one first.

    ``slope``/``offset`` (R, K, M): V(t) = slope * t - offset on segment k; ``right`` broadcastable to
    (R, K, 1); ``valid`` (R, K, 1) masks segments that do not exist. Returns fires (R, M), k (R, M)."""
    crossed = slope * right - offset >= theta
    if valid is not None:
        crossed &= valid
    fires = crossed.any(dim=1)
    k = crossed.to(torch.uint8).argmax(dim=1)  # index of the first True (argmax returns the first maximum)
    return fires, k


def _forward_grid(t, w, theta, t_end):
    taus = torch.unique(t[t <= t_end])  # sorted distinct input times, (K,)
    rows, m = t.shape[0], w.shape[1]
    if taus.numel() == 0:
        z = torch.zeros(rows, m, dtype=w.dtype)
        return torch.zeros(rows, m, dtype=torch.bool), z, z, None, None
    if m <= GATHER_MAX_OUT:
        # kappa[r, n]: index of input n's time in taus; silent inputs go to an extra bucket K (dropped).
        kappa = torch.searchsorted(taus, t.contiguous())
        bucket = torch.zeros(rows, len(taus) + 1, m, dtype=w.dtype)
        bucket.scatter_add_(1, kappa[:, :, None].expand(-1, -1, m), w[None].expand(rows, -1, -1))
        bucket = bucket[:, :-1]
        onehot = kappa
    else:
        onehot = (t[:, None, :] == taus[None, :, None]).to(w.dtype)  # (R, K, N): input n arrives at tau_k
        bucket = onehot @ w  # (R, K, M): weight arriving at tau_k
    slope = bucket.cumsum(dim=1)
    offset = (bucket * taus[None, :, None]).cumsum(dim=1)
    right = torch.cat([taus[1:], taus.new_tensor([float(t_end)])])[None, :, None]
    fires, k = _first_crossing(slope, offset, right, theta)
    s_k = slope.gather(1, k[:, None, :])[:, 0, :]
    p_k = offset.gather(1, k[:, None, :])[:, 0, :]
    return fires, s_k, p_k, k, (onehot, taus)


def _forward_sort(t, w, theta, t_end):
    ts, order = t.sort(dim=1)
    wg = w[order]  # (R, N, M): weight rows in arrival order
    slope = wg.cumsum(dim=1)
    offset = (wg * ts[:, :, None]).cumsum(dim=1)
    right = torch.cat([ts[:, 1:], ts.new_full((ts.shape[0], 1), float(t_end))], dim=1).clamp(max=t_end)
    valid = (ts <= t_end)[:, :, None]
    fires, k = _first_crossing(slope, offset, right[:, :, None], theta, valid)
    s_k = slope.gather(1, k[:, None, :])[:, 0, :]
    p_k = offset.gather(1, k[:, None, :])[:, 0, :]
    return fires, s_k, p_k


def _guarded_gbar(grad, fires, slope, theta, t_end):
    """``dL/dt_j / sum_C w`` with the gradient guard (``sum_C w >= theta / t_end``); 0 for silent neurons."""
    floor = (theta / t_end).expand_as(slope)
    return torch.where(fires, grad / torch.maximum(slope, floor), torch.zeros_like(grad))  # (R, M)


def _grad_theta(gbar, theta):
    """dL/dtheta = sum over rows of gbar, per neuron (theta (M,)) or shared (theta (1,))."""
    return gbar.sum(dim=0).reshape(theta.shape) if theta.numel() > 1 else gbar.sum().reshape(theta.shape)


class _SpikeTimes(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t, w, theta, t_end, integer, path):
        with torch.no_grad():
            n_times = torch.unique(t[t <= t_end]).numel() if path == "auto" else 0
            use_grid = path == "grid" or (path == "auto" and n_times <= GRID_MAX_TIMES)
            if use_grid:
                fires, s_k, p_k, k, grid = _forward_grid(t, w, theta, t_end)
            else:
                (fires, s_k, p_k), k, grid = _forward_sort(t, w, theta, t_end), None, None
            safe_s = torch.where(fires, s_k, torch.ones_like(s_k))
            t_star = (theta + p_k) / safe_s
            if integer:
                # Exact integer ceiling: numerator and slope are integers held exactly in float64.
                num = (theta + p_k).round().to(torch.int64)
                den = safe_s.round().to(torch.int64)
                t_val = (-torch.div(-num, den, rounding_mode="floor")).to(t.dtype)
            else:
                t_val = t_star
            out = torch.where(fires, t_val, torch.full_like(t_val, t_end + 1.0))
            t_star = torch.where(fires, t_star, torch.full_like(t_star, t_end + 1.0))
        ctx.t_end = t_end
        ctx.use_grid = use_grid
        ctx.grid = grid
        ctx.save_for_backward(t, w, theta, t_star, s_k, fires, k if k is not None else torch.empty(0))
        return out

    @staticmethod
    def backward(ctx, grad):
        t, w, theta, t_star, s_k, fires, k = ctx.saved_tensors
        gbar = _guarded_gbar(grad, fires, s_k, theta, ctx.t_end)
        grad_t = grad_w = grad_theta = None
        if ctx.use_grid and ctx.grid is not None:
            onehot, taus = ctx.grid
            kk = torch.arange(len(taus))[None, :, None]
            # r[row, k, j]: gbar where input time tau_k is causal for neuron j (tau_k <= its segment start).
            r = gbar[:, None, :] * (kk <= k[:, None, :]).to(gbar.dtype)
            z = r * (taus[None, :, None] - t_star[:, None, :]) if ctx.needs_input_grad[1] else None
            if onehot.dtype == torch.int64:  # gather variant: onehot holds kappa (R, N)
                idx = onehot[:, :, None].expand(-1, -1, w.shape[1])
                pad = torch.zeros(r.shape[0], 1, r.shape[2], dtype=r.dtype)
                if ctx.needs_input_grad[0]:
                    grad_t = (torch.cat([r, pad], 1).gather(1, idx) * w[None]).sum(dim=2)
                if ctx.needs_input_grad[1]:
                    grad_w = torch.cat([z, pad], 1).gather(1, idx).sum(dim=0)
            else:
                if ctx.needs_input_grad[0]:
                    grad_t = (onehot * (r @ w.T)).sum(dim=1)
                if ctx.needs_input_grad[1]:
                    grad_w = onehot.flatten(0, 1).T @ z.flatten(0, 1)
        elif ctx.use_grid:  # no input spiked in the whole batch: nothing is causal
            grad_t, grad_w = torch.zeros_like(t), torch.zeros_like(w)
        else:
            causal = (t[:, :, None] < t_star[:, None, :]) & fires[:, None, :]
            a = causal.to(gbar.dtype) * gbar[:, None, :]  # (R, N, M)
            if ctx.needs_input_grad[0]:
                grad_t = torch.einsum("rnm,nm->rn", a, w)
            if ctx.needs_input_grad[1]:
                tt = torch.where(t <= ctx.t_end, t, torch.zeros_like(t))
                grad_w = torch.einsum("rn,rnm->nm", tt, a) - torch.einsum("rnm,rm->nm", a, t_star)
        if ctx.needs_input_grad[2]:
            grad_theta = _grad_theta(gbar, theta)
        return grad_t, grad_w, grad_theta, None, None, None


class _KernelSpikeTimes(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t, w, theta, t_end, integer):
        tn = t.detach().contiguous().numpy()
        wn = w.detach().contiguous().numpy()
        thn = theta.detach().to(torch.float64).expand(w.shape[1]).contiguous().numpy()
        out, t_star, slope = kernels.forward_rows(tn, wn, thn, float(t_end), bool(integer))
        ctx.t_end = t_end
        t_star, slope = torch.from_numpy(t_star), torch.from_numpy(slope)
        ctx.save_for_backward(t, w, theta, t_star, slope)
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad):
        t, w, theta, t_star, slope = ctx.saved_tensors
        fires = t_star <= ctx.t_end
        gbar = _guarded_gbar(grad, fires, slope, theta, ctx.t_end)
        grad_t = grad_w = grad_theta = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            gw, gt = kernels.backward_rows(t.detach().contiguous().numpy(), w.detach().contiguous().numpy(),
                                           t_star.numpy(), np.ascontiguousarray(gbar.numpy()),
                                           bool(ctx.needs_input_grad[0]))
            grad_w = torch.from_numpy(gw).to(w.dtype) if ctx.needs_input_grad[1] else None
            grad_t = torch.from_numpy(gt) if ctx.needs_input_grad[0] else None
        if ctx.needs_input_grad[2]:
            grad_theta = _grad_theta(gbar, theta)
        return grad_t, grad_w, grad_theta, None, None


def spike_times(t: torch.Tensor, w: torch.Tensor, theta: torch.Tensor, t_end: int, *, integer: bool = False,
                path: str = "auto") -> torch.Tensor:
    """Spike times (R, M) of M ReL-PSP neurons for R input rows.

    Parameters
    ----------
    t : (R, N) float tensor of input spike times in time steps; any value > ``t_end`` means silent.
    w : (N, M) float weights (signed).
    theta : (M,) or (1,) positive thresholds, same dtype.
    t_end : last time step at which a neuron may fire (docs/spec.md section 2).
    integer : follow the integer semantics of docs/spec.md (integer-valued inputs, see module docstring).
    path : ``"auto"`` / ``"kernel"`` (compiled), ``"torch"`` (grid or sort by the number of distinct input
        times), ``"grid"`` or ``"sort"`` (see module docstring).

    Returns
    -------
    (R, M) tensor of spike times; silent neurons are ``t_end + 1``. Differentiable w.r.t. t, w, theta.
    """
    if path not in PATHS:
        raise ValueError(f"path: expected one of {', '.join(PATHS)}, got {path!r}")
    if t.ndim != 2 or w.ndim != 2 or t.shape[1] != w.shape[0]:
        raise ValueError(f"spike_times: expected t (R, N) and w (N, M), got {tuple(t.shape)} and {tuple(w.shape)}")
    if path in ("auto", "kernel"):
        if t.dtype != w.dtype:
            raise ValueError(f"spike_times: t and w must share a dtype, got {t.dtype} and {w.dtype}")
        return _KernelSpikeTimes.apply(t, w, theta, int(t_end), bool(integer))
    return _SpikeTimes.apply(t, w, theta, int(t_end), bool(integer), "auto" if path == "torch" else path)

