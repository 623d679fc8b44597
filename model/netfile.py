"""The network file: a versioned, self-describing ``.npz`` readable with numpy alone (docs/spec.md,
"Network file format"). No pickle: :func:`load` uses ``allow_pickle=False``.

Layout: an array ``header`` (0-d unicode string holding JSON) plus, per layer n with weights,
``layer{n}.weight`` and ``layer{n}.threshold`` integer arrays.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .network import (
    FORMAT_NAME,
    FORMAT_VERSION,
    Conv2d,
    Dense,
    Encoding,
    MaxPool2d,
    Network,
    NetworkError,
)
from .network import MAX_LAYER_SYNAPSES as MAX_ARRAY_ELEMENTS

#: Largest JSON header, in characters.
MAX_HEADER_CHARS = 1 << 20

__all__ = ["NetworkFileError", "load", "save", "header_of"]


class NetworkFileError(NetworkError):
    """A network file is unreadable or violates the format; the message names the file, field and limit."""


def _int_dtype(bits: int):
    for dt in (np.int8, np.int16, np.int32, np.int64):
        if np.iinfo(dt).bits >= bits:
            return dt
    raise AssertionError(bits)


def header_of(net: Network, metadata: dict | None = None) -> dict:
    """The JSON header describing ``net`` (every width, t_end, encoding, layer kinds and shapes)."""
    layers = []
    for layer in net.layers:
        if isinstance(layer, Dense):
            layers.append({"kind": "dense", "in": int(layer.weight.shape[0]), "out": int(layer.weight.shape[1])})
        elif isinstance(layer, Conv2d):
            layers.append({
                "kind": "conv2d", "in_shape": list(layer.in_shape), "out_channels": int(layer.weight.shape[0]),
                "kernel": [int(layer.weight.shape[2]), int(layer.weight.shape[3])],
                "stride": layer.stride, "padding": layer.padding,
            })
        else:
            layers.append({"kind": "maxpool2d", "in_shape": list(layer.in_shape), "kernel": layer.kernel,
                           "stride": layer.stride})
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "time_bits": net.time_bits,
        "t_end": net.t_end,
        "weight_bits": net.weight_bits,
        "threshold_bits": net.threshold_bits,
        "input_shape": list(net.input_shape),
        "encoding": {"kind": Encoding.kind, "t_in_max": net.encoding.t_in_max, "p_min": net.encoding.p_min},
        "layers": layers,
        "decision": "earliest-spike-lowest-index",
        "metadata": metadata or {},
    }


def save(net: Network, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write ``net`` to ``path`` atomically (a temporary file renamed into place: no partial file on error).

    ``metadata`` is free-form JSON-serialisable provenance (training run, accuracy, ...).
    """
    path = Path(path)
    header = header_of(net, metadata)
    arrays = {"header": np.array(json.dumps(header, indent=1, sort_keys=True))}
    wdt = _int_dtype(net.weight_bits)
    tdt = _int_dtype(net.threshold_bits + 1)
    for n, layer in enumerate(net.layers):
        if isinstance(layer, (Dense, Conv2d)):
            arrays[f"layer{n}.weight"] = layer.weight.astype(wdt)
            arrays[f"layer{n}.threshold"] = layer.threshold.astype(tdt)
    # A temporary name next to the target, created like any other file (default permissions), renamed into
    # place only once complete.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _field(obj: dict, key: str, where: str, kind=int):
    if not isinstance(obj, dict) or key not in obj:
        raise NetworkFileError(f"{where}{key}: missing field")
    value = obj[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise NetworkFileError(f"{where}{key}: expected an integer, got {value!r}")
    if kind is list and not (isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool)
                                                              for v in value)):
        raise NetworkFileError(f"{where}{key}: expected a list of integers, got {value!r}")
    if kind is str and not isinstance(value, str):
        raise NetworkFileError(f"{where}{key}: expected a string, got {value!r}")
    return value


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """One ``.npy`` member, its header checked before any data is read: numpy magic, no pickled objects, and
    at most :data:`MAX_ARRAY_ELEMENTS` values (a header claiming more is refused, not allocated)."""
    key = info.filename[:-4]
    with zf.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
        except ValueError:
            raise NetworkFileError(f"{key}: not a .npy array (no numpy magic)") from None
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise NetworkFileError(f"{key}: unsupported .npy format version {version[0]}.{version[1]}")
    if dtype.hasobject:
        raise NetworkFileError(f"{key}: holds Python objects (dtype {dtype}); network files are not pickled")
    size = math.prod(shape)
    limit = MAX_HEADER_CHARS if key == "header" else MAX_ARRAY_ELEMENTS
    if size > limit:
        raise NetworkFileError(f"{key}: shape {shape} has {size:,} values, above the limit of {limit:,}")
    with zf.open(info) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def _read(path: Path) -> tuple[dict, dict]:
    if path.is_dir():
        raise NetworkFileError(f"{path}: is a folder, not a network file")
    try:
        with zipfile.ZipFile(path) as zf:
            arrays = {}
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    raise NetworkFileError(f"{info.filename}: unexpected zip member (a network file holds .npy "
                                           "arrays only)")
                key = info.filename[:-4]
                if key in arrays:
                    raise NetworkFileError(f"{key}: array stored twice")
                arrays[key] = _read_member(zf, info)
    except FileNotFoundError:
        raise NetworkFileError(f"{path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError) as e:
        if isinstance(e, NetworkFileError):
            raise
        raise NetworkFileError(f"{path}: not a readable .npz network file ({e})") from None
    if "header" not in arrays:
        raise NetworkFileError("header: missing array (the file must hold a JSON header string)")
    raw = arrays.pop("header")
    if raw.dtype.kind != "U" or raw.ndim != 0:
        raise NetworkFileError(f"header: expected a 0-d unicode string array, got dtype {raw.dtype} "
                               f"shape {raw.shape}")
    try:
        header = json.loads(str(raw))
    except json.JSONDecodeError as e:
        raise NetworkFileError(f"header: invalid JSON ({e})") from None
    except RecursionError:
        raise NetworkFileError("header: JSON nested too deeply") from None
    if not isinstance(header, dict):
        raise NetworkFileError("header: expected a JSON object")
    if not isinstance(header.get("metadata", {}), dict):
        raise NetworkFileError(f"metadata: expected a JSON object, got {type(header['metadata']).__name__}")
    return header, arrays


def load(path: str | os.PathLike) -> Network:
    """Read and validate a network file. Any problem raises :class:`NetworkFileError` naming the file, the
    field and the limit; nothing is returned half-loaded."""
    path = Path(path)
    try:
        return _load(path)
    except NetworkFileError as e:
        if str(e).startswith(str(path)):
            raise
        raise NetworkFileError(f"{path}: {e}") from None
    except NetworkError as e:
        raise NetworkFileError(f"{path}: {e}") from None


def _load(path: Path) -> Network:
    header, arrays = _read(path)
    fmt = _field(header, "format", "", str)
    if fmt != FORMAT_NAME:
        raise NetworkFileError(f"format: expected {FORMAT_NAME!r}, got {fmt!r}")
    version = _field(header, "version", "")
    if version != FORMAT_VERSION:
        raise NetworkFileError(f"version: unsupported version {version}; this reader supports {FORMAT_VERSION}")
    enc = header.get("encoding")
    if not isinstance(enc, dict):
        raise NetworkFileError("encoding: missing field (object with kind, t_in_max, p_min)")
    kind = _field(enc, "kind", "encoding.", str)
    if kind != Encoding.kind:
        raise NetworkFileError(f"encoding.kind: unsupported {kind!r}; supported: {Encoding.kind!r}")
    decision = header.get("decision", "earliest-spike-lowest-index")
    if decision != "earliest-spike-lowest-index":
        raise NetworkFileError(f"decision: unsupported {decision!r}; supported: 'earliest-spike-lowest-index'")
    specs = header.get("layers")
    if not isinstance(specs, list) or not specs:
        raise NetworkFileError("layers: missing field (a non-empty list of layer objects)")
    used = set()
    layers = []
    for n, spec in enumerate(specs):
        where = f"layers[{n}]."
        kind = _field(spec, "kind", where, str)
        if kind in ("dense", "conv2d"):
            wkey, tkey = f"layer{n}.weight", f"layer{n}.threshold"
            for key in (wkey, tkey):
                if key not in arrays:
                    raise NetworkFileError(f"{key}: missing array")
            used |= {wkey, tkey}
            weight, threshold = arrays[wkey], arrays[tkey]
            if kind == "dense":
                shape = (_field(spec, "in", where), _field(spec, "out", where))
                if weight.shape != shape:
                    raise NetworkFileError(f"{wkey}: expected shape {shape} from the header, got {weight.shape}")
                layers.append(Dense(weight=weight, threshold=threshold))
            else:
                in_shape = tuple(_field(spec, "in_shape", where, list))
                if len(in_shape) != 3:
                    raise NetworkFileError(f"{where}in_shape: expected [C, H, W], got {list(in_shape)}")
                kernel = _field(spec, "kernel", where, list)
                if len(kernel) != 2 or min(kernel) < 1:
                    raise NetworkFileError(f"{where}kernel: expected [KH, KW] with KH, KW >= 1, got {kernel}")
                kh, kw = kernel
                shape = (_field(spec, "out_channels", where), in_shape[0], kh, kw)
                if weight.shape != shape:
                    raise NetworkFileError(f"{wkey}: expected shape {shape} from the header, got {weight.shape}")
                layers.append(Conv2d(in_shape=in_shape, weight=weight, threshold=threshold,
                                     stride=_field(spec, "stride", where), padding=_field(spec, "padding", where)))
        elif kind == "maxpool2d":
            layers.append(MaxPool2d(in_shape=tuple(_field(spec, "in_shape", where, list)),
                                    kernel=_field(spec, "kernel", where), stride=_field(spec, "stride", where)))
        else:
            raise NetworkFileError(f"{where}kind: unsupported layer kind {kind!r}; supported: dense, conv2d, "
                                   "maxpool2d")
    extra = sorted(set(arrays) - used)
    if extra:
        raise NetworkFileError(f"{extra[0]}: unexpected array (not described by the header)")
    return Network.build(
        input_shape=tuple(_field(header, "input_shape", "", list)),
        layers=layers,
        time_bits=_field(header, "time_bits", ""),
        t_end=_field(header, "t_end", ""),
        weight_bits=_field(header, "weight_bits", ""),
        threshold_bits=_field(header, "threshold_bits", ""),
        encoding=Encoding(t_in_max=_field(enc, "t_in_max", "encoding."), p_min=_field(enc, "p_min", "encoding.")),
    )


def metadata_of(path: str | os.PathLike) -> dict:
    """The free-form ``metadata`` object of a network file's header (provenance); {} when absent."""
    header, _ = _read(Path(path))
    return header.get("metadata", {})
