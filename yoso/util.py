"""Small helpers shared by the CLI commands."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; rename it into place only if the block succeeds."""
    path = Path(path)
    if not path.parent.is_dir():
        raise CliError(f"{path}: folder {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_inputs(net, *, dataset: str | None, input_times: str | None, limit: int | None,
                split: str = "test") -> tuple[np.ndarray, np.ndarray | None]:
    """Input spike times (images x inputs) and labels (or None) for a network, from a dataset split
    (encoded with the network's encoding) or a raw ``.npy`` of integer times. ``limit``: first N only."""
    import model
    from model.datasets import load_dataset

    if dataset:
        data = load_dataset(dataset, split)
        if int(np.prod(data.shape)) != net.n_inputs:
            raise CliError(f"--dataset: images of shape {data.shape} do not fit the network input {net.input_shape}")
        pixels, labels = data.images[:limit], data.labels[:limit]
        return model.encode(pixels.reshape(len(pixels), -1), net.encoding, net.time_bits), labels
    try:
        times = np.load(input_times, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CliError(f"--input-times: cannot read {input_times} ({e})") from None
    try:
        return model.golden.check_input_times(net, times[:limit]), None
    except ValueError as e:
        raise CliError(f"--input-times: {e}") from None
