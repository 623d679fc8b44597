"""Dataset loaders: IDX folders (MNIST, Fashion-MNIST; gz or raw), Fashion-MNIST at the Debian path, and
scikit-learn's 8x8 digits. Nothing is ever downloaded: a missing dataset raises :class:`DatasetError` with
the install hint.

Images come back as uint8 pixels (N, C, H, W) in 0..255 and labels as int64 (N,).
"""

from __future__ import annotations

import gzip
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DatasetError", "Split", "load_dataset", "FASHION_MNIST_DIR", "DATASET_HELP"]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
DATASET_HELP = "fashion-mnist | mnist:DIR | idx:DIR | digits"


class DatasetError(RuntimeError):
    """A dataset is missing or malformed; the message says what and how to install it."""


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8 (N, C, H, W)
    labels: np.ndarray  # int64 (N,)
    name: str

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:  # EOFError: a truncated .gz; zlib.error: a corrupt one
        raise DatasetError(f"{path}: cannot read IDX file ({str(e) or type(e).__name__})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise DatasetError(f"{path}: IDX header truncated ({len(data)} bytes, {ndim} dimensions announced)")
    dims = [int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != math.prod(dims):
        raise DatasetError(f"{path}: expected {math.prod(dims)} values for shape {dims}, found {body.size}")
    return body.reshape(dims)


def _find(folder: Path, stem: str) -> Path:
    for cand in (f"{stem}.gz", stem, stem.replace("-idx", ".idx")):
        p = folder / cand
        if p.exists():
            return p
    raise DatasetError(f"{folder}: missing {stem}[.gz]")


def load_idx(folder: str | Path, split: str) -> Split:
    """An MNIST-layout folder: {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such dataset folder (expected MNIST-style IDX files)")
    prefix = {"train": "train", "test": "t10k"}[split]
    images = _read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"))
    labels = _read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DatasetError(f"{folder}: {prefix} images {images.shape} and labels {labels.shape} do not match")
    if len(images) == 0 or 0 in images.shape[1:]:
        raise DatasetError(f"{folder}: {prefix} images have shape {images.shape}: no images to use")
    return Split(images=images[:, None, :, :].copy(), labels=labels, name=f"idx:{folder}:{split}")


def load_digits(split: str) -> Split:
    """scikit-learn's 1,797 8x8 digits, rescaled 0..16 -> 0..255 by (v*255 + 8)//16; a fixed split:
    a seed-0 permutation, the first 1,437 for training and the last 360 for testing."""
    try:
        from sklearn.datasets import load_digits as sk_digits
    except ImportError:
        raise DatasetError("digits: needs scikit-learn (pip install scikit-learn)") from None
    d = sk_digits()
    pixels = ((d.images.astype(np.int64) * 255 + 8) // 16).astype(np.uint8)[:, None, :, :]
    order = np.random.default_rng(0).permutation(len(pixels))
    idx = order[:1437] if split == "train" else order[1437:]
    return Split(images=pixels[idx], labels=d.target[idx].astype(np.int64), name=f"digits:{split}")


def load_dataset(spec: str, split: str = "test") -> Split:
    """``spec``: ``fashion-mnist`` (Debian path), ``mnist:DIR`` / ``idx:DIR`` (IDX folder), ``digits``."""
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    if spec == "fashion-mnist":
        if not FASHION_MNIST_DIR.is_dir():
            raise DatasetError(f"fashion-mnist: {FASHION_MNIST_DIR} not found; install it with "
                               "`apt-get install dataset-fashion-mnist` (or pass idx:DIR)")
        s = load_idx(FASHION_MNIST_DIR, split)
        return Split(s.images, s.labels, f"fashion-mnist:{split}")
    if spec.startswith(("mnist:", "idx:")):
        folder = spec.split(":", 1)[1]
        if not folder:
            raise DatasetError(f"dataset: {spec!r} names no folder; expected {spec}DIR")
        return load_idx(folder, split)
    if spec == "digits":
        return load_digits(split)
    raise DatasetError(f"dataset: unknown {spec!r}; expected {DATASET_HELP}")
