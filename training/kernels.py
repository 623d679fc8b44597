"""Compiled (numba) kernels of the STDBP layer: exact spike times of ReL-PSP neurons and their gradients.

One row is one set of inputs (a sample of a dense layer, a receptive field of a conv layer); every neuron of
the row shares the row's inputs. The forward kernel sorts the row's input times once and walks them in order
for all neurons together, adding each input's weight to the slope ``S`` and ``w * t`` to the offset ``P`` of
neuron, and checks ``V = S * right - P >= theta`` for the neurons that have not fired yet at the right end of
the segment (the next input time, or ``t_end``; segments of zero length, inputs at equal times, are not
checked twice): the segment logic of ``model/golden.py`` and of the two torch algorithms
in ``training/stdbp.py``, in float64 accumulators. Work per row is ``N log N + N * M`` with early exit once
every neuron has fired, and no ``(rows, inputs, neurons)`` tensor is ever formed.

The backward kernel recomputes the causal set of each fired neuron (inputs with ``t_i < t*``) and
accumulates ``gbar * (t_i - t*)`` into the weight gradient and ``gbar * w_ij`` into the input gradient.

Both kernels run on the calling thread (one torch thread per process is the trainer's default) and release
the GIL. ``cache=True`` keeps the compiled code next to this file, so only the first run on a machine pays
the compile time (a few seconds).
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["forward_rows", "backward_rows"]


@nb.njit(cache=True, nogil=True)
def forward_rows(t, w, theta, t_end, integer):  # pragma: no cover - compiled
    """t (R, N) input times (> t_end: silent), w (N, M), theta (M,). Returns (out, t_star, slope), each
    (R, M): the spike time (the integer ceiling of t_star when ``integer``), the continuous crossing and
    the causal weight sum ``S``; silent neurons have out = t_star = t_end + 1 and slope 0."""
    rows, n_in = t.shape
    m = w.shape[1]
    out = np.full((rows, m), t_end + 1.0, t.dtype)
    t_star = np.full((rows, m), t_end + 1.0, t.dtype)
    slope = np.zeros((rows, m), t.dtype)
    s = np.empty(m, np.float64)
    p = np.empty(m, np.float64)
    done = np.empty(m, np.bool_)
    for r in range(rows):
        order = np.argsort(t[r], kind="mergesort")
        s[:] = 0.0
        p[:] = 0.0
        done[:] = False
        left = m
        for q in range(n_in):
            i = order[q]
            ti = np.float64(t[r, i])
            if ti > t_end or left == 0:
                break
            right = np.float64(t_end)
            if q + 1 < n_in:
                tn = np.float64(t[r, order[q + 1]])
                if tn < right:
                    right = tn
            for j in range(m):  # branch-free, vectorised; a fired neuron's sums are not read again
                wij = np.float64(w[i, j])
                s[j] += wij
                p[j] += wij * ti
            if right == ti:  # zero-length segment: V(ti) was checked at the end of the previous one
                continue
            for j in range(m):
                if not done[j] and s[j] * right - p[j] >= theta[j]:
                    done[j] = True
                    left -= 1
                    t_star[r, j] = (theta[j] + p[j]) / s[j]
                    slope[r, j] = s[j]
                    if integer:  # exact: every partial sum is an integer held exactly in float64
                        num = np.int64(np.round(theta[j] + p[j]))
                        den = np.int64(np.round(s[j]))
                        out[r, j] = -((-num) // den)
                    else:
                        out[r, j] = t_star[r, j]
    return out, t_star, slope


@nb.njit(cache=True, nogil=True)
def backward_rows(t, w, t_star, gbar, need_t):  # pragma: no cover - compiled
    """Gradients given ``gbar = dL/dt_j / S_j`` (R, M), zero for silent neurons. Returns
    (grad_w (N, M) float64, grad_t (R, N) in t's dtype, zeros unless ``need_t``)."""
    rows, n_in = t.shape
    m = w.shape[1]
    grad_w = np.zeros((n_in, m), np.float64)
    grad_t = np.zeros((rows, n_in), t.dtype)
    for r in range(rows):
        for i in range(n_in):
            ti = np.float64(t[r, i])
            acc = 0.0
            for j in range(m):
                g = np.float64(gbar[r, j])
                if g != 0.0 and ti < t_star[r, j]:
                    grad_w[i, j] += g * (ti - t_star[r, j])
                    acc += g * w[i, j]
            if need_t:
                grad_t[r, i] = acc
    return grad_w, grad_t
