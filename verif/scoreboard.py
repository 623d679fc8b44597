"""Comparing what the hardware produced with the golden model."""

from __future__ import annotations

import numpy as np

__all__ = ["first_mismatch", "compare_images"]


def first_mismatch(got: np.ndarray, want: np.ndarray, no_spike: int) -> str | None:
    """None if equal, else a message naming the first differing neuron."""
    diff = np.flatnonzero(np.asarray(got) != np.asarray(want))
    if diff.size == 0:
        return None
    j = int(diff[0])

    def fmt(t):
        return "silent" if t == no_spike else f"t={t}"
    return (f"neuron {j}: PE {fmt(int(got[j]))}, golden model {fmt(int(want[j]))} "
            f"({diff.size} of {len(want)} neurons differ)")


def compare_images(results, golden, no_spike: int) -> tuple[int, int, str | None]:
    """(spikes compared, mismatching neurons, first mismatch or protocol error) over all images and the layers
    the host saw; ``results``: host.runner.ImageResult per image, ``golden``: model.run's Result. A neuron the
    host did not see spike must spike after the last step its PE closed (early exit)."""
    compared, bad, first = 0, 0, None
    for b, r in enumerate(results):
        if r.error is not None:
            bad += 1
            first = first or f"image {b}: {r.error}"
            continue
        for n, (t, h) in enumerate(zip(r.times, r.horizons, strict=True)):
            if t is None:
                continue
            want = np.asarray(golden.times[n][b]).reshape(-1)
            compared += want.size
            unseen_ok = (t == no_spike) & (want > h)
            diff = np.flatnonzero((t != want) & ~unseen_ok)
            bad += diff.size
            if diff.size and first is None:
                j = int(diff[0])
                first = f"image {b} layer {n} neuron {j}: mesh {int(t[j])}, golden model {int(want[j])}"
    return compared, bad, first
