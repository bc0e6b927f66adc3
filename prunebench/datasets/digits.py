"""``digits``: scikit-learn's bundled handwritten digits (real data, 1,797 8x8 images, no download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prunebench.datasets.base import TensorData, register_dataset, tensor_data_from_arrays

TEST_FRACTION = 0.2


def _read_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's ``load_digits()`` images and targets, read from the file it reads.

    ``sklearn/datasets/data/digits.csv.gz`` (64 pixels then the label per row) is located without
    importing scikit-learn, whose import (scipy and more) costs about a second; if the file is not where
    scikit-learn keeps it, ``load_digits()`` itself is used. ``tests/test_datasets.py`` checks both agree.
    """
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        path = Path(loc) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            data = np.loadtxt(path, delimiter=",")
            return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)
    from sklearn.datasets import load_digits as _load

    d = _load()
    return d.images, d.target


@register_dataset("digits", "scikit-learn's handwritten digits: 1,438 train / 359 test, 8x8 grey, 10 classes (bundled)")
def load_digits(root: Path, *, download: bool, arg: str | None, image_size: int | None) -> TensorData:
    images, target = _read_sklearn_digits()
    # pixel values are 0..16; scale to uint8 so every dataset shares one input format
    x = np.clip(np.rint(images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    y = target.astype(np.int64)
    # a fixed stratified split (independent of any run seed): the same test set for every run
    rng = np.random.default_rng(0)
    test = np.zeros(len(y), dtype=bool)
    for c in range(10):
        idx = np.flatnonzero(y == c)
        test[rng.choice(idx, int(round(TEST_FRACTION * len(idx))), replace=False)] = True
    tr, te = np.flatnonzero(~test), np.flatnonzero(test)
    tr = tr[rng.permutation(len(tr))]
    return tensor_data_from_arrays(
        "digits",
        x[tr],
        y[tr],
        x[te],
        y[te],
        num_classes=10,
        where="digits",
        channels_last_input=False,
        augment="crop",
        crop_padding=1,
        key="digits-sklearn",
        classes=tuple(str(i) for i in range(10)),
        default_epochs=15,
        source="sklearn.datasets.load_digits",
    )
