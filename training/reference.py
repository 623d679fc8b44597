"""A straightforward, time-stepped formulation of the ReL-PSP layer with plain autograd: the baseline the
STDBP layer is benchmarked (benchmarks/train_layer.py) and cross-checked against.

``V[s] = relu(s - t_i) @ W`` on every integer step ``s = 0..t_end``; the spike time is the first step with
``V >= theta``, refined by linear interpolation inside that step, ``t = s - 1 + (theta - V[s-1]) /
(V[s] - V[s-1])``. Gradients come from autograd through V. Between integer steps V is linear whenever no
input arrives inside the step (always true for integer input times), so this equals the closed form there.
"""

from __future__ import annotations

import torch

__all__ = ["stepped_spike_times"]


def stepped_spike_times(t: torch.Tensor, w: torch.Tensor, theta: torch.Tensor, t_end: int) -> torch.Tensor:
    """(R, N) input times (> t_end silent), (N, M) weights, (M,) thresholds -> (R, M); silent t_end + 1."""
    steps = torch.arange(t_end + 1, dtype=t.dtype)
    ramp = torch.relu(steps[None, :, None] - t[:, None, :])  # (R, T, N); silent inputs give 0 for s <= t_end
    v = ramp @ w  # (R, T, M)
    crossed = v >= theta
    fires = crossed.any(dim=1)
    s = crossed.to(torch.uint8).argmax(dim=1).clamp(min=1)  # V[0] = 0 < theta, so s >= 1 where it fires
    v_hi = v.gather(1, s[:, None, :])[:, 0, :]
    v_lo = v.gather(1, (s - 1)[:, None, :])[:, 0, :]
    frac = (theta - v_lo) / torch.where(fires, v_hi - v_lo, torch.ones_like(v_hi))
    t_out = (s - 1).to(t.dtype) + frac
    return torch.where(fires, t_out, torch.full_like(t_out, t_end + 1.0))
