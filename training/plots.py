"""PNG figures of a training run: curves, spike-time histograms, a spike raster and the confusion matrix.

Spike data come from the golden model run on the exported network, so the figures show what the hardware
computes. Each file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import model

__all__ = ["write_plots"]


def _save(fig, path: Path) -> str:
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, path)
    return path.name


def write_plots(out: Path, history: list[dict], result: model.Result, labels: np.ndarray,
                net: model.Network, inputs: np.ndarray) -> list[str]:
    """``inputs``: the encoded input times (batch, n_inputs) of the samples in ``result`` (raster rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    ep = [h["epoch"] for h in history]
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(15, 4))
    a1.plot(ep, [h["loss"] for h in history], "o-")
    a1.set_xlabel("epoch")
    a1.set_ylabel("training loss")
    a2.plot(ep, [h["train_accuracy"] for h in history], "o-", label="train")
    if any(h.get("val_accuracy") is not None for h in history):
        a2.plot(ep, [h["val_accuracy"] for h in history], "s-", label="validation")
    a2.set_xlabel("epoch (QAT epochs last)")
    a2.set_ylabel("accuracy")
    a2.legend()
    dead = [h.get("dead_ratio") for h in history]
    if dead and all(d is not None for d in dead):
        for k in range(len(dead[0]) - 1):  # hidden layers (pool layers repeat their input's ratio)
            if net.layers[k].kind != "maxpool2d":
                a3.plot(ep, [d[k] for d in dead], "o-", label=f"layer {k} ({net.layers[k].kind})")
        a3.legend()
    a3.set_xlabel("epoch")
    a3.set_ylabel("dead ratio (silent on every validation sample)")
    fig.tight_layout()
    written.append(_save(fig, out / "curves.png"))
    plt.close(fig)

    n = len(result.times)
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3.5), squeeze=False)
    for k, (ax, t) in enumerate(zip(axes[0], result.times, strict=True)):
        fired = t[t != net.no_spike]
        ax.hist(fired, bins=np.arange(0, net.t_end + 2, 2))
        ax.set_title(f"layer {k} ({net.layers[k].kind}): {fired.size / max(t.size, 1):.0%} fire")
        ax.set_xlabel("spike time (steps)")
    fig.tight_layout()
    written.append(_save(fig, out / "spike_hist.png"))
    plt.close(fig)

    samples = min(3, len(labels))
    fig, axes = plt.subplots(samples, 1, figsize=(9, 3 * samples), squeeze=False)
    for s in range(samples):
        ax = axes[s][0]
        base = 0
        rows = [("input", inputs[s])] + [
            (f"layer {k} ({'output' if k == n - 1 else net.layers[k].kind})", t[s]) for k, t in enumerate(result.times)]
        for name, t in rows:
            tt = t.reshape(-1)
            idx = np.flatnonzero(tt != net.no_spike)
            ax.scatter(tt[idx], base + idx, s=2, label=name)
            base += tt.size
        ax.set_title(f"sample {s}: label {labels[s]}, prediction {result.prediction[s]}")
        ax.set_xlabel("time step")
        ax.set_ylabel("neuron (layers stacked)")
        ax.legend(loc="upper left", markerscale=4, fontsize=7)
    fig.tight_layout()
    written.append(_save(fig, out / "raster.png"))
    plt.close(fig)

    classes = net.n_outputs
    cm = np.zeros((classes, classes + 1), dtype=np.int64)  # last column: no decision
    pred = np.where(result.prediction < 0, classes, result.prediction)
    np.add.at(cm, (labels, pred), 1)
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(cm, cmap="Blues")
    ax.set_xlabel("predicted (last column: no decision)")
    ax.set_ylabel("label")
    ax.set_title(f"fixed point, golden model: {np.trace(cm[:, :classes]) / cm.sum():.2%}")
    fig.colorbar(im)
    fig.tight_layout()
    written.append(_save(fig, out / "confusion.png"))
    plt.close(fig)
    return written
