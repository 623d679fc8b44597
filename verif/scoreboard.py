"""The one scoreboard: every spike time the hardware produced against the golden model's, as structured
records (image, layer, neuron, expected, got), never re-parsed from strings."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Mismatch", "Score", "compare", "compare_images", "first_mismatch"]


def _fmt(t: int, no_spike: int) -> str:
    return "silent" if t == no_spike else f"t={t}"


@dataclass(frozen=True)
class Mismatch:
    """One neuron whose hardware spike time differs from the golden model's (times in steps)."""

    image: int
    layer: int
    neuron: int
    expected: int
    got: int
    no_spike: int

    def __str__(self) -> str:
        return (f"image {self.image} layer {self.layer} neuron {self.neuron}: hardware "
                f"{_fmt(self.got, self.no_spike)}, golden model {_fmt(self.expected, self.no_spike)}")


@dataclass
class Score:
    """``compared`` spike times, the ``mismatches`` among them (image, layer, neuron order)."""

    compared: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def first(self) -> Mismatch | None:
        return self.mismatches[0] if self.mismatches else None

    def __bool__(self) -> bool:
        """True when everything matched."""
        return not self.mismatches


def compare(got, want, no_spike: int, *, horizons=None, images=None) -> Score:
    """Compare per layer ``got[n]`` (images, neurons; None: a layer the host did not see) with ``want[n]``
    (golden, any shape with images first). ``horizons[n][b, j]``: the last step neuron j's PE closed before
    the host stopped listening (early exit); a neuron the hardware reports silent is then correct if the golden
    model spikes it later. ``images``: the image number of each row (default 0, 1, ...)."""
    score = Score()
    for n, g in enumerate(got):
        if g is None:
            continue
        g = np.asarray(g).reshape(len(g), -1)
        w = np.asarray(want[n]).reshape(len(g), -1)
        score.compared += w.size
        bad = g != w
        if horizons is not None and horizons[n] is not None:
            bad &= ~((g == no_spike) & (w > np.asarray(horizons[n]).reshape(w.shape)))
        for b, j in np.argwhere(bad):
            image = int(b) if images is None else int(images[b])
            score.mismatches.append(Mismatch(image, n, int(j), int(w[b, j]), int(g[b, j]), no_spike))
    score.mismatches.sort(key=lambda r: (r.image, r.layer, r.neuron))
    return score


def compare_images(results, golden, no_spike: int) -> tuple[Score, list[str]]:
    """:func:`compare` over host.runner.ImageResults (one per image) against model.run's ``golden``; returns
    the score and the images' protocol errors (an image with one is not compared)."""
    errors = [f"image {b}: {r.error}" for b, r in enumerate(results) if r.error is not None]
    ok = [b for b, r in enumerate(results) if r.error is None]
    if not ok:
        return Score(), errors
    n_layers = len(golden.times)

    def stack(attr, n):
        rows = [getattr(results[b], attr)[n] for b in ok]
        return None if any(r is None for r in rows) else np.stack(rows)

    got = [stack("times", n) for n in range(n_layers)]
    horizons = [stack("horizons", n) for n in range(n_layers)]
    want = [np.asarray(t).reshape(len(results), -1)[ok] for t in golden.times]
    return compare(got, want, no_spike, horizons=horizons, images=ok), errors


def first_mismatch(got: np.ndarray, want: np.ndarray, no_spike: int) -> str | None:
    """One inference of one layer: None if equal, else a message naming the first differing neuron."""
    score = compare([np.asarray(got)[None]], [np.asarray(want)[None]], no_spike)
    if score:
        return None
    r = score.first
    return (f"neuron {r.neuron}: PE {_fmt(r.got, no_spike)}, golden model {_fmt(r.expected, no_spike)} "
            f"({len(score.mismatches)} of {np.asarray(want).size} neurons differ)")
