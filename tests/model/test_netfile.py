"""Network file format (docs/spec.md section 7): round trip, a hand-written file, and rejection of bad files
with one clear message naming the field and the limit."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

import model
from model import Conv2d, Dense, MaxPool2d, Network, NetworkFileError
from model.netfile import header_of

SPEC = Path(__file__).resolve().parents[2] / "docs" / "spec.md"


def write(path, header, **arrays):
    with open(path, "wb") as f:
        np.savez(f, header=np.array(json.dumps(header)), **arrays)
    return path


def good_header():
    return {"format": "yoso-relpsp", "version": 1, "time_bits": 8, "t_end": 254, "weight_bits": 8,
            "threshold_bits": 16, "input_shape": [6],
            "encoding": {"kind": "linear-intensity", "t_in_max": 31, "p_min": 1},
            "layers": [{"kind": "dense", "in": 6, "out": 3}]}


def good_arrays():
    return {"layer0.weight": np.arange(18, dtype=np.int8).reshape(6, 3) - 9,
            "layer0.threshold": np.array([5, 6, 7], dtype=np.int32)}


def test_round_trip_dense_and_conv(tmp_path):
    rng = np.random.default_rng(0)
    conv = Conv2d(in_shape=(1, 6, 6), weight=rng.integers(-8, 8, (2, 1, 3, 3)), threshold=np.array([9, 11]),
                  stride=1, padding=1)
    pool = MaxPool2d(in_shape=(2, 6, 6), kernel=2, stride=2)
    dense = Dense(weight=rng.integers(-2048, 2047, (18, 4)), threshold=np.array([1, 2, 3, 65535]))
    net = Network.build(input_shape=(1, 6, 6), layers=[conv, pool, dense], time_bits=10, t_end=700,
                        weight_bits=12, threshold_bits=16, encoding=model.Encoding(t_in_max=99, p_min=3))
    path = model.save(net, tmp_path / "n.npz", metadata={"note": "test"})
    back = model.load(path)
    assert header_of(back) == header_of(net)
    for a, b in zip(net.layers[::2], back.layers[::2], strict=True):
        np.testing.assert_array_equal(a.weight, b.weight)
        np.testing.assert_array_equal(a.threshold, b.threshold)
    assert model.netfile.metadata_of(path) == {"note": "test"}
    assert [p.name for p in tmp_path.iterdir()] == ["n.npz"]  # no temporary left behind
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask, "permissions as for any file the user creates"


def test_spec_snippet_written_by_hand_loads_and_runs(tmp_path, monkeypatch):
    """Run the numpy-only example of docs/spec.md verbatim, then load and run the file it wrote."""
    code = re.search(r"Writing\none by hand with numpy alone:\n\n```python\n(.*?)```", SPEC.read_text(), re.S)
    assert code, "docs/spec.md lost its hand-written example"
    monkeypatch.chdir(tmp_path)
    exec(compile(code.group(1), "spec-example", "exec"), {})
    net = model.load(tmp_path / "net.npz")
    assert net.describe() == "784-10" and net.t_end == 254
    pixels = np.random.default_rng(1).integers(0, 256, (5, 784))
    r = model.run(net, model.encode(pixels, net.encoding, net.time_bits))
    assert r.times[0].shape == (5, 10)


def test_good_file_loads(tmp_path):
    net = model.load(write(tmp_path / "g.npz", good_header(), **good_arrays()))
    assert net.layers[0].weight.dtype == np.int64 and not net.layers[0].weight.flags.writeable


def mutate(header=None, drop=(), **arrays):
    h = good_header()
    if header:
        header(h)
    a = good_arrays()
    for k in drop:
        a.pop(k)
    a.update(arrays)
    return h, a


BAD = {
    "version": (mutate(lambda h: h.update(version=2)), r"version: unsupported version 2; this reader supports 1"),
    "format": (mutate(lambda h: h.update(format="other")), r"format: expected 'yoso-relpsp'"),
    "missing t_end": (mutate(lambda h: h.pop("t_end")), r"t_end: missing field"),
    "t_end range": (mutate(lambda h: h.update(t_end=255)), r"t_end: 255 is outside the allowed range 1..254"),
    "time_bits type": (mutate(lambda h: h.update(time_bits="8")), r"time_bits: expected an integer"),
    "t_in_max": (mutate(lambda h: h["encoding"].update(t_in_max=300)),
                 r"encoding.t_in_max: 300 is outside the allowed range 0..254"),
    "encoding kind": (mutate(lambda h: h["encoding"].update(kind="rate")), r"encoding.kind: unsupported 'rate'"),
    "layer kind": (mutate(lambda h: h["layers"][0].update(kind="lstm")), r"layers\[0\].kind: unsupported layer"),
    "no layers": (mutate(lambda h: h.update(layers=[]), drop=("layer0.weight", "layer0.threshold")),
                  r"layers: missing field"),
    "weight shape": (mutate(**{"layer0.weight": np.zeros((5, 3), np.int8)}),
                     r"layer0.weight: expected shape \(6, 3\) from the header, got \(5, 3\)"),
    "input mismatch": (mutate(lambda h: h.update(input_shape=[7])),
                       r"layers\[0\].weight: expected 7 rows \(input_shape has 7 values\), got shape \(6, 3\)"),
    "weight dtype": (mutate(**{"layer0.weight": np.zeros((6, 3), np.float32)}),
                     r"layers\[0\].weight: expected an integer dtype, got float32"),
    "weight range": (mutate(**{"layer0.weight": np.full((6, 3), 128, np.int16)}),
                     r"layers\[0\].weight: value 128 is outside the allowed range -128..127"),
    "threshold zero": (mutate(**{"layer0.threshold": np.array([0, 1, 2])}),
                       r"layers\[0\].threshold: value 0 is outside the allowed range 1..65535"),
    "threshold shape": (mutate(**{"layer0.threshold": np.array([1, 2])}),
                        r"layers\[0\].threshold: expected shape \(3,\), got \(2,\)"),
    "missing array": (mutate(drop=("layer0.threshold",)), r"layer0.threshold: missing array"),
    "extra array": (mutate(**{"junk": np.zeros(1, np.int8)}), r"junk: unexpected array"),
    "weight_bits": (mutate(lambda h: h.update(weight_bits=17)), r"weight_bits: 17 is outside the allowed range 2..16"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_file_rejected(tmp_path, case):
    (header, arrays), message = BAD[case]
    path = write(tmp_path / "bad.npz", header, **arrays)
    with pytest.raises(NetworkFileError, match=message) as info:
        model.load(path)
    assert str(info.value).startswith(str(path)), "the message names the file"
    assert "\n" not in str(info.value)


def test_not_an_npz(tmp_path):
    p = tmp_path / "x.npz"
    p.write_bytes(b"hello")
    with pytest.raises(NetworkFileError, match="not a readable .npz network file"):
        model.load(p)
    with pytest.raises(NetworkFileError, match="no such file"):
        model.load(tmp_path / "missing.npz")


def test_pickled_object_array_refused(tmp_path):
    p = tmp_path / "p.npz"
    with open(p, "wb") as f:
        np.savez(f, header=np.array([{"format": "yoso-relpsp"}], dtype=object))
    with pytest.raises(NetworkFileError, match="header: holds Python objects"):
        model.load(p)


def test_bad_header(tmp_path):
    p = tmp_path / "h.npz"
    with open(p, "wb") as f:
        np.savez(f, header=np.array("{not json"))
    with pytest.raises(NetworkFileError, match="header: invalid JSON"):
        model.load(p)
    with open(p, "wb") as f:
        np.savez(f, header=np.arange(3))
    with pytest.raises(NetworkFileError, match="header: expected a 0-d unicode string array"):
        model.load(p)


def test_save_failure_leaves_nothing(tmp_path):
    net = model.random_network("4-3", seed=0)
    with pytest.raises(TypeError):
        model.save(net, tmp_path / "n.npz", metadata={"bad": object()})
    assert list(tmp_path.iterdir()) == []
