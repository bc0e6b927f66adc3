"""Datasets: bundled digits, npz loading and validation, the real CIFAR-10 file when present."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA

from prunebench.datasets import list_datasets, load_dataset
from prunebench.errors import ConfigError, DataError


def test_registry():
    assert {"digits", "synthetic", "cifar10", "cifar100", "imagenet", "imagefolder"} <= set(list_datasets())


def test_digits(digits):
    assert digits.x_train.dtype == torch.uint8 and digits.x_train.shape[1:] == (1, 8, 8)
    assert digits.num_train + digits.y_test.numel() == 1797
    assert digits.num_classes == 10 and set(digits.y_train.tolist()) == set(range(10))
    assert int(digits.x_train.max()) == 255


def _write_npz(path, n=20, shape=(8, 8, 3), k=10, **over):
    rng = np.random.default_rng(0)
    arrays = dict(
        x_train=rng.integers(0, 256, (n, *shape), dtype=np.uint8),
        y_train=np.arange(n) % k,
        x_test=rng.integers(0, 256, (n // 2, *shape), dtype=np.uint8),
        y_test=np.arange(n // 2) % k,
    )
    arrays.update(over)
    arrays = {k_: v for k_, v in arrays.items() if v is not None}
    np.savez(path, **arrays)


def test_npz_loads(tmp_path):
    _write_npz(tmp_path / "cifar10.npz")
    d = load_dataset("cifar10", tmp_path)
    assert d.x_train.shape == (20, 3, 8, 8) and d.y_train.dtype == torch.int64 and d.num_classes == 10


@pytest.mark.parametrize(
    "over,message",
    [
        (dict(y_train=np.arange(20) % 10 + 5), "labels in [5, 14]; valid: 0..9"),
        (dict(x_train=np.zeros((20, 8, 8, 3), dtype=np.float32)), "must be uint8"),
        (dict(y_test=np.arange(7)), "has 10 images but y_test has 7 labels"),
        (dict(x_test=np.zeros((10, 4, 4, 3), dtype=np.uint8)), "image shapes differ"),
        (dict(x_train=np.zeros((20, 8, 8, 5), dtype=np.uint8)), "1 or 3 channels"),
        (dict(y_test=None), "missing arrays y_test"),
    ],
)
def test_bad_npz_is_a_clear_error(tmp_path, over, message):
    _write_npz(tmp_path / "cifar10.npz", **over)
    with pytest.raises(DataError) as ei:
        load_dataset("cifar10", tmp_path)
    assert message in str(ei.value)


def test_corrupt_npz(tmp_path):
    (tmp_path / "cifar10.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_dataset("cifar10", tmp_path)


def test_synthetic_arguments():
    d = load_dataset("synthetic:n=100,classes=5,size=6,channels=3")
    assert d.x_train.shape == (100, 3, 6, 6) and d.num_classes == 5
    with pytest.raises(ConfigError, match="valid: synthetic:k=v"):
        load_dataset("synthetic:bogus=1")


def test_imagefolder_needs_path():
    with pytest.raises(ConfigError, match="needs a path"):
        load_dataset("imagefolder")


@pytest.mark.skipif(not (SHARED_DATA / "cifar10.npz").exists(), reason="shared/data/cifar10.npz not present")
def test_real_cifar10_file():
    d = load_dataset("cifar10", SHARED_DATA)
    assert d.x_train.shape == (50000, 3, 32, 32) and d.x_test.shape == (10000, 3, 32, 32)
    assert torch.bincount(d.y_train).tolist() == [5000] * 10
    assert d.mean == pytest.approx((0.4913, 0.4821, 0.4465), abs=2e-4)
    assert d.classes[0] == "airplane" and d.augment == "crop+flip" and d.crop_padding == 4


def test_digits_file_reader_equals_sklearn():
    from sklearn.datasets import load_digits as sk_load

    from prunebench.datasets.digits import _read_sklearn_digits

    images, target = _read_sklearn_digits()
    d = sk_load()
    assert np.array_equal(images, d.images) and np.array_equal(target, d.target)
