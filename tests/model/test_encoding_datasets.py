"""Input encoding (docs/spec.md section 3), register widths (section 4) and dataset loaders."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

import model
from model import Encoding
from model.datasets import DatasetError, load_dataset
from model.network import potential_bits, signed_bits, weight_sum_bits


def test_encoding_formula_every_pixel():
    enc = Encoding(t_in_max=31, p_min=1)
    p = np.arange(256)
    t = model.encode(p, enc, 8)
    assert t[0] == 255 and t[255] == 0 and t[1] == ((254 * 31 + 127) // 255) == 31
    expected = [((255 - v) * 31 + 127) // 255 if v >= 1 else 255 for v in range(256)]
    np.testing.assert_array_equal(t, expected)
    assert np.all(np.diff(t[1:]) <= 0), "brighter pixels never spike later"


def test_encoding_p_min_and_range():
    t = model.encode(np.array([0, 9, 10, 255]), Encoding(t_in_max=100, p_min=10), 8)
    np.testing.assert_array_equal(t, [255, 255, 96, 0])
    assert model.encode(np.array([0]), Encoding(t_in_max=5, p_min=0), 4)[0] == 5
    with pytest.raises(ValueError, match="0..255"):
        model.encode(np.array([256]), Encoding(), 8)
    with pytest.raises(ValueError, match="integer"):
        model.encode(np.array([0.5]), Encoding(), 8)


def test_widths():
    assert signed_bits(-128, 127) == 8 and signed_bits(-129, 0) == 9 and signed_bits(0, 128) == 9
    assert weight_sum_bits(784, 8) == 18  # 784 * 128 = 100352 < 2**17
    assert potential_bits(784, 8, 254) == 26  # 100352 * 254 = 25,489,408 < 2**25
    assert potential_bits(1, 2, 1, threshold_bits=16) == 17  # widened to hold every threshold


def write_idx(path, arr):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_idx_folder(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (7, 5, 4))
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", imgs)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(7) % 10)
    s = load_dataset(f"mnist:{tmp_path}", "test")
    assert s.images.shape == (7, 1, 5, 4) and s.images.dtype == np.uint8
    np.testing.assert_array_equal(s.images[:, 0], imgs)
    np.testing.assert_array_equal(s.labels, np.arange(7) % 10)
    with pytest.raises(DatasetError, match="missing train-images-idx3-ubyte"):
        load_dataset(f"idx:{tmp_path}", "train")


def test_missing_and_unknown_datasets(tmp_path):
    with pytest.raises(DatasetError, match="no such dataset folder"):
        load_dataset(f"idx:{tmp_path / 'nope'}")
    with pytest.raises(DatasetError, match="unknown 'cifar'"):
        load_dataset("cifar")


def test_digits():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert train.images.shape == (1437, 1, 8, 8) and test.images.shape == (360, 1, 8, 8)
    assert test.images.max() == 255 and test.images.dtype == np.uint8


def test_fashion_mnist_if_installed():
    from model.datasets import FASHION_MNIST_DIR

    if not FASHION_MNIST_DIR.is_dir():
        with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
            load_dataset("fashion-mnist")
        return
    s = load_dataset("fashion-mnist", "test")
    assert s.images.shape == (10000, 1, 28, 28) and sorted(set(s.labels.tolist())) == list(range(10))


def test_network_build_errors():
    d = model.Dense(weight=np.zeros((3, 2), np.int64), threshold=np.ones(2, np.int64))
    with pytest.raises(model.NetworkError, match="layers: a network needs at least one layer"):
        model.Network.build(input_shape=(3,), layers=[])
    with pytest.raises(model.NetworkError, match="time_bits: 17 is outside the allowed range 2..16"):
        model.Network.build(input_shape=(3,), layers=[d], time_bits=17)
    pool = model.MaxPool2d(in_shape=(1, 2, 2), kernel=2, stride=2)
    with pytest.raises(model.NetworkError, match="the output layer must be dense or conv2d"):
        model.Network.build(input_shape=(1, 2, 2), layers=[pool])
    with pytest.raises(model.NetworkError, match=r"in_shape: expected \(1, 4, 4\)"):
        model.Network.build(input_shape=(1, 4, 4), layers=[pool, d])
