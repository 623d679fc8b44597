"""Input encoding: 8-bit pixels to integer input spike times (docs/spec.md, "Input encoding").

This is the only implementation; training/ imports it so float training, quantisation-aware training and
the golden model see the same input spikes.
"""

from __future__ import annotations

import numpy as np

from .network import Encoding, no_spike

__all__ = ["encode"]


def encode(pixels: np.ndarray, encoding: Encoding, time_bits: int) -> np.ndarray:
    """Map pixels (any shape, integers 0..255) to spike times of the same shape.

    ``t = ((255 - p) * t_in_max + 127) // 255`` when ``p >= p_min``, else ``NO_SPIKE = 2**time_bits - 1``.
    Bright pixels spike early (255 -> 0); dim ones late (-> about t_in_max). Returns int64.
    """
    p = np.asarray(pixels)
    if p.dtype.kind not in "iu":
        raise ValueError(f"pixels: expected an integer array (0..255), got dtype {p.dtype}")
    if p.size and (int(p.min()) < 0 or int(p.max()) > 255):
        raise ValueError(f"pixels: values must lie in 0..255, got {int(p.min())}..{int(p.max())}")
    p = p.astype(np.int64)
    t = ((255 - p) * encoding.t_in_max + 127) // 255
    return np.where(p >= encoding.p_min, t, no_spike(time_bits))
