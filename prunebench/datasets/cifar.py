"""``cifar10`` / ``cifar100``: from an ``.npz`` in the data dir, or torchvision's standard folder.

Looked for, in order, inside the data dir:

1. ``cifar10.npz`` / ``cifar100.npz`` with ``x_train, y_train, x_test, y_test`` (uint8 HWC images),
   e.g. the JPEG-decoded CIFAR-10 in ``shared/data`` (``--data-dir ../shared/data``);
2. torchvision's extracted folder ``cifar-10-batches-py`` / ``cifar-100-python``;
3. with ``download`` (default; off when ``PRUNEBENCH_OFFLINE=1``) torchvision downloads (2).
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from prunebench.datasets.base import TensorData, register_dataset, tensor_data_from_arrays
from prunebench.errors import DataError


def file_fingerprint(path: Path) -> str:
    """Cheap content fingerprint: size plus sha256 of the first and last MiB."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if size > (1 << 20):
            f.seek(max(0, size - (1 << 20)))
            h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def load_npz(path: Path, name: str, num_classes: int, **kwargs) -> TensorData:
    try:
        with np.load(path, allow_pickle=False) as d:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in d.files]
            if missing:
                raise DataError(
                    f"{path}: missing arrays {', '.join(missing)}; an npz dataset needs x_train, y_train, x_test, y_test"
                )
            arrays = {k: d[k] for k in ("x_train", "y_train", "x_test", "y_test")}
            classes = tuple(str(c) for c in d["classes"]) if "classes" in d.files else ()
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(
            f"{path}: not a readable .npz file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    return tensor_data_from_arrays(
        name,
        arrays["x_train"],
        arrays["y_train"],
        arrays["x_test"],
        arrays["y_test"],
        num_classes=num_classes,
        where=str(path),
        classes=classes,
        key=f"{name}-npz-{file_fingerprint(path)}",
        source=str(path),
        **kwargs,
    )


def _load_cifar(name: str, num_classes: int, folder: str, root: Path, download: bool) -> TensorData:
    kwargs: dict[str, Any] = dict(augment="crop+flip", crop_padding=4, default_epochs=200)
    npz = root / f"{name}.npz"
    if npz.is_file():
        return load_npz(npz, name, num_classes, **kwargs)
    if (root / folder).is_dir() or download:
        import torchvision

        cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
        try:
            tr = cls(str(root), train=True, download=download)
            te = cls(str(root), train=False, download=False)
        except Exception as e:  # torchvision raises RuntimeError/URLError/OSError
            raise DataError(
                f"{name} not found in {root} (looked for {npz.name} and {folder}/) and could not be "
                f"downloaded ({type(e).__name__}); put {npz.name} there or pass --data-dir DIR"
            ) from None
        return tensor_data_from_arrays(
            name,
            np.asarray(tr.data),
            np.asarray(tr.targets),
            np.asarray(te.data),
            np.asarray(te.targets),
            num_classes=num_classes,
            where=str(root / folder),
            classes=tuple(tr.classes),
            key=f"{name}-torchvision",
            source=str(root / folder),
            **kwargs,
        )
    raise DataError(
        f"{name} not found in {root} (looked for {npz.name} and {folder}/); pass --data-dir DIR holding one "
        f"of them (e.g. --data-dir ../shared/data), or allow torchvision to download it (unset PRUNEBENCH_OFFLINE)"
    )


@register_dataset("cifar10", "CIFAR-10: 50,000 train / 10,000 test, 32x32 RGB, 10 classes (npz or torchvision)")
def load_cifar10(root: Path, *, download: bool, arg: str | None, image_size: int | None) -> TensorData:
    return _load_cifar("cifar10", 10, "cifar-10-batches-py", root, download)


@register_dataset("cifar100", "CIFAR-100: 50,000 train / 10,000 test, 32x32 RGB, 100 classes (npz or torchvision)")
def load_cifar100(root: Path, *, download: bool, arg: str | None, image_size: int | None) -> TensorData:
    return _load_cifar("cifar100", 100, "cifar-100-python", root, download)
