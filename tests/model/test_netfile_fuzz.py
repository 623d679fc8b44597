"""Fuzzing the network-file reader (issue 14): random headers, random arrays and damaged bytes. Whatever the
file holds, ``model.load`` either returns a valid :class:`Network` or raises :class:`NetworkFileError`; any
other exception (a traceback for the user) fails the test."""

from __future__ import annotations

import atexit
import copy
import io
import json
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import model
from model import NetworkFileError

DENSE = ({"format": "yoso-relpsp", "version": 1, "time_bits": 8, "t_end": 254, "weight_bits": 8,
          "threshold_bits": 16, "input_shape": [6],
          "encoding": {"kind": "linear-intensity", "t_in_max": 31, "p_min": 1},
          "layers": [{"kind": "dense", "in": 6, "out": 3}], "metadata": {"note": "x"}},
         {"layer0.weight": np.arange(18, dtype=np.int8).reshape(6, 3) - 9,
          "layer0.threshold": np.array([5, 6, 7], dtype=np.int32)})
CONV = ({**DENSE[0], "input_shape": [1, 6, 6],
         "layers": [{"kind": "conv2d", "in_shape": [1, 6, 6], "out_channels": 2, "kernel": [3, 3], "stride": 1,
                     "padding": 1},
                    {"kind": "maxpool2d", "in_shape": [2, 6, 6], "kernel": 2, "stride": 2},
                    {"kind": "dense", "in": 18, "out": 3}]},
        {"layer0.weight": np.ones((2, 1, 3, 3), np.int8), "layer0.threshold": np.array([9, 11], np.int16),
         "layer2.weight": np.ones((18, 3), np.int8), "layer2.threshold": np.array([1, 2, 3], np.int16)})

SCRATCH = Path(tempfile.mkdtemp(prefix="netfile-fuzz-"))
atexit.register(shutil.rmtree, SCRATCH, True)

small_ints = st.integers(-3, 40) | st.integers(-(2**70), 2**70)
json_values = st.recursive(
    st.none() | st.booleans() | small_ints | st.floats() | st.text(max_size=6)
    | st.sampled_from(["dense", "conv2d", "maxpool2d", "yoso-relpsp", "linear-intensity"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=8)
dtypes = st.sampled_from([np.int8, np.int16, np.int64, np.uint64, np.float32, np.bool_, "<U3", np.uint8])
shapes = st.lists(st.integers(0, 7), min_size=0, max_size=4).map(tuple)


@st.composite
def arrays(draw):
    dtype, shape = draw(dtypes), draw(shapes)
    size = int(np.prod(shape))
    if np.dtype(dtype).kind == "U":
        return np.array(draw(st.lists(st.text(max_size=3), min_size=size, max_size=size)), dtype=dtype).reshape(shape)
    vals = draw(st.lists(st.integers(-300, 300), min_size=size, max_size=size))
    return np.array(vals).astype(dtype).reshape(shape)


def paths(obj, prefix=()):
    """Every (container, key) position inside a JSON value."""
    out = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        out.append(prefix + (k,))
        out += paths(v, prefix + (k,))
    return out


def load_bytes(data: bytes, name: str):
    p = SCRATCH / name
    p.write_bytes(data)
    try:
        net = model.load(p)
    except NetworkFileError as e:
        assert str(e).startswith(str(p)) and "\n" not in str(e).strip(), str(e)
        return None
    assert isinstance(net, model.Network)
    return net


def npz_bytes(header, arrays_) -> bytes:
    buf = io.BytesIO()
    text = header if isinstance(header, str) else json.dumps(header)
    np.savez(buf, header=np.array(text), **arrays_)
    return buf.getvalue()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from([DENSE, CONV]), data=st.data())
def test_random_headers_and_arrays_load_or_raise_network_file_error(base, data):
    header, arrs = copy.deepcopy(base[0]), dict(base[1])
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(paths(header)))
        parent = header
        for k in where[:-1]:
            parent = parent[k]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[where[-1]]
        else:
            parent[where[-1]] = data.draw(json_values)
        if not paths(header):
            break
    for _ in range(data.draw(st.integers(0, 2))):
        key = data.draw(st.sampled_from([*arrs, "layer1.weight", "layer3.threshold", "extra"]))
        if data.draw(st.booleans()):
            arrs[key] = data.draw(arrays())
        else:
            arrs.pop(key, None)
    load_bytes(npz_bytes(header, arrs), "h.npz")


@settings(max_examples=200, deadline=None)
@given(base=st.sampled_from([DENSE, CONV]), cut=st.floats(0, 1), flips=st.lists(st.tuples(st.floats(0, 1),
                                                                                       st.integers(0, 255)),
                                                                             max_size=4))
def test_damaged_bytes_load_or_raise_network_file_error(base, cut, flips):
    data = bytearray(npz_bytes(*base))
    for pos, value in flips:
        data[int(pos * (len(data) - 1))] = value
    load_bytes(bytes(data[:max(1, int(cut * len(data))) if cut < 1 else len(data)]), "b.npz")


@settings(max_examples=100, deadline=None)
@given(member=st.binary(max_size=200), name=st.sampled_from(["layer0.weight.npy", "header.npy", "x.txt"]))
def test_foreign_zip_members_raise_network_file_error(member, name):
    buf = io.BytesIO(npz_bytes(*DENSE))
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "a") as z:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name it is asked to write
        z.writestr(name, member)
    assert load_bytes(buf.getvalue(), "z.npz") is None  # a duplicate, foreign or extra member is never valid
