"""Datasets: a registry of loaders returning tensors (small data) or ImageFolder datasets (large data).

>>> from prunebench.datasets import load_dataset
>>> d = load_dataset("digits")
>>> d.x_train.shape, d.num_classes
(torch.Size([1438, 1, 8, 8]), 10)
"""

from __future__ import annotations

import importlib

from prunebench.datasets.base import (
    FolderData,
    TensorData,
    dataset_description,
    default_data_dir,
    list_datasets,
    load_dataset,
    register_dataset,
)

for _m in ("digits", "synthetic", "cifar", "imagefolder"):
    importlib.import_module(f"prunebench.datasets.{_m}")

__all__ = [
    "FolderData",
    "TensorData",
    "dataset_description",
    "default_data_dir",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]
