"""``digits``: scikit-learn's bundled handwritten digits (real data, 1,797 8x8 images, no download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prunebench.datasets.base import TensorData, register_dataset, tensor_data_from_arrays

TEST_FRACTION = 0.2


@register_dataset("digits", "scikit-learn's handwritten digits: 1,438 train / 359 test, 8x8 grey, 10 classes (bundled)")
def load_digits(root: Path, *, download: bool, arg: str | None, image_size: int | None) -> TensorData:
    from sklearn.datasets import load_digits as _load

    d = _load()
    # pixel values are 0..16; scale to uint8 so every dataset shares one input format
    x = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    y = d.target.astype(np.int64)
    # a fixed stratified split (independent of any run seed): the same test set for every run
    rng = np.random.default_rng(0)
    test = np.zeros(len(y), dtype=bool)
    for c in range(10):
        idx = np.flatnonzero(y == c)
        test[rng.choice(idx, int(round(TEST_FRACTION * len(idx))), replace=False)] = True
    tr, te = np.flatnonzero(~test), np.flatnonzero(test)
    tr = tr[rng.permutation(len(tr))]
    return tensor_data_from_arrays(
        "digits", x[tr], y[tr], x[te], y[te], num_classes=10, where="digits",
        channels_last_input=False, augment="crop", crop_padding=1, key="digits-sklearn",
        classes=tuple(str(i) for i in range(10)), default_epochs=15, source="sklearn.datasets.load_digits",
    )
