"""Small helpers shared by the CLI commands: the user-facing error type, the output-path checks that run before
any command does its work, atomic writes, and the one loader of input arrays.

Output paths, decided once for every command: a path must not be an existing folder (for a file) or file (for a
folder), must not be one of the command's input files, and its nearest existing ancestor must be a writable
folder. Missing parent folders are created (like ``mkdir -p``), but only when the output is written, so a
command that fails leaves nothing behind.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np


class CliError(Exception):
    """A user-facing error: printed as one line, exit status :attr:`exit_code` (2: bad input or usage)."""

    exit_code = 2


def add_mapping_options(p, *, scope: str = "") -> None:
    """``--compact-weights`` and ``--balance`` (host.plan.plan_mesh's ``compact_weights`` and ``balance``) of a
    command that maps a network onto a mesh; ``scope`` starts their help (e.g. ``"with --mesh: "``)."""
    p.add_argument("--compact-weights", action="store_true",
                   help=f"{scope}every layer in conv mode (dense layers as 1x1 convolutions), the weight SRAM sized "
                        "to the largest kernel slice instead of fan-in x neurons (networks with conv layers; "
                        "docs/noc.md 'Mapping')")
    p.add_argument("--balance", action="store_true",
                   help=f"{scope}give the mesh's spare nodes to the layers with the most synapses per PE (smaller "
                        "tiles or neuron shares; the output layer keeps its PEs), instead of as few PEs per layer "
                        "as fit")


def mapping_options(args, *, refuse: str | None = None) -> dict:
    """The plan_mesh keyword arguments of :func:`add_mapping_options`; with ``refuse`` (why they do not apply
    here) a CliError names the first one given."""
    given = {"--compact-weights": args.compact_weights, "--balance": args.balance}
    if refuse is not None:
        for flag, on in given.items():
            if on:
                raise CliError(f"{flag}: {refuse}")
    return {"compact_weights": args.compact_weights, "balance": args.balance}


class Interrupted(CliError):
    """Ctrl-C: one line saying what was saved and how to continue, exit status 130 (128 + SIGINT)."""

    exit_code = 130


def _nearest_existing(path: Path) -> Path:
    p = path.parent
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_parent(path: Path, flag: str) -> None:
    anc = _nearest_existing(path)
    if not anc.is_dir():
        raise CliError(f"{flag}: {path} cannot be created: {anc} is a file, not a folder")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise CliError(f"{flag}: {path} cannot be created: folder {anc} is not writable")


def check_output_file(path: str | os.PathLike, flag: str, *, inputs: dict[str, str] | None = None) -> Path:
    """Check before the work starts that ``path`` can be written as a file (see the module docstring).
    ``inputs``: flag -> path of the command's input files, which an output must not replace."""
    if not str(path):
        raise CliError(f"{flag}: empty path")
    p = Path(path)
    if p.is_dir():
        raise CliError(f"{flag}: {p} is a folder; give a file name")
    if p.exists() and not p.is_file():  # a device, FIFO or socket: renaming over it would destroy it
        raise CliError(f"{flag}: {p} is not a regular file (a device, FIFO or socket); give a file name")
    if p.exists() and not os.access(p.parent, os.W_OK | os.X_OK):
        raise CliError(f"{flag}: {p} cannot be replaced: folder {p.parent} is not writable")
    for other, src in (inputs or {}).items():
        if src and p.exists() and Path(src).exists() and os.path.samefile(p, src):
            raise CliError(f"{flag}: {p} is also the input {other}; writing it would destroy the input")
    _check_parent(p, flag)
    return p


def check_output_dir(path: str | os.PathLike, flag: str) -> Path:
    """Check before the work starts that ``path`` is, or can be created as, a writable folder."""
    if not str(path):
        raise CliError(f"{flag}: empty path")
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CliError(f"{flag}: {p} is a file, not a folder")
    if p.is_dir():
        if not os.access(p, os.W_OK | os.X_OK):
            raise CliError(f"{flag}: folder {p} is not writable")
    else:
        _check_parent(p, flag)
    return p


def make_parents(path: str | os.PathLike) -> Path:
    """Create the missing parent folders of an output file, at write time (the decision of the module
    docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; rename it into place only if the block succeeds. Missing parent
    folders are created first (:func:`make_parents`)."""
    path = make_parents(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


NPY_MAGIC = b"\x93NUMPY"


def load_array(path: str | os.PathLike, flag: str, *, max_elements: int = 1 << 28) -> np.ndarray:
    """Read one ``.npy`` array for ``flag``, every problem a :class:`CliError` naming the flag: a missing file, a
    folder, an ``.npz`` archive or a text file (by magic, before numpy guesses), pickled objects, 0-d arrays,
    more than ``max_elements`` values (checked from the header, before the data is read)."""
    p = Path(path)
    if not p.exists():
        raise CliError(f"{flag}: {p}: no such file")
    if p.is_dir():
        raise CliError(f"{flag}: {p} is a folder, not a .npy file")
    try:
        with open(p, "rb") as f:
            magic = f.read(len(NPY_MAGIC))
    except OSError as e:
        raise CliError(f"{flag}: cannot read {p} ({e.strerror})") from None
    if magic.startswith(b"PK"):
        raise CliError(f"{flag}: {p} is an .npz archive; expected one .npy array (numpy.save)")
    if magic != NPY_MAGIC:
        raise CliError(f"{flag}: {p} is not a .npy file (no numpy magic; text is not read: convert it with "
                       "numpy.save)")
    try:
        arr = np.load(p, mmap_mode="r", allow_pickle=False)  # header only: shape and dtype before any data
    except ValueError as e:
        if "allow_pickle" in str(e) or "object" in str(e):
            raise CliError(f"{flag}: {p} holds Python objects (dtype object); expected an integer array") from None
        raise CliError(f"{flag}: {p} is not a readable .npy file ({e})") from None
    except OSError as e:
        raise CliError(f"{flag}: {p} is not a readable .npy file ({e})") from None
    if arr.ndim == 0:
        raise CliError(f"{flag}: {p} holds a 0-d array (a single value); expected (samples, inputs)")
    if arr.size > max_elements:
        raise CliError(f"{flag}: {p} has {arr.size:,} values, above the limit of {max_elements:,}")
    return arr


def load_inputs(net, *, dataset: str | None, input_times: str | None, limit: int | None,
                split: str = "test", flag: str = "--input-times") -> tuple[np.ndarray, np.ndarray | None]:
    """Input spike times (images x inputs) and labels (or None) for a network, from a dataset split
    (encoded with the network's encoding) or a raw ``.npy`` of integer times. ``limit``: first N only."""
    import model
    from model.datasets import load_dataset

    if dataset is not None:
        data = load_dataset(dataset, split)
        if int(np.prod(data.shape)) != net.n_inputs:
            raise CliError(f"--dataset: images of shape {data.shape} do not fit the network input {net.input_shape}")
        pixels, labels = data.images[:limit], data.labels[:limit]
        return model.encode(pixels.reshape(len(pixels), net.n_inputs), net.encoding, net.time_bits), labels
    times = load_array(input_times, flag)
    if len(times) == 0:
        raise CliError(f"{flag}: {input_times} holds 0 samples (shape {times.shape})")
    try:
        return model.golden.check_input_times(net, np.asarray(times[:limit])), None
    except ValueError as e:
        raise CliError(f"{flag}: {str(e).removeprefix('input times: ')}") from None
