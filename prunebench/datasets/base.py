"""Dataset containers and the dataset registry.

Small datasets (digits, CIFAR, synthetic) are :class:`TensorData`: one uint8 NCHW tensor per split,
moved once to the training device; the loop gathers planned indices and augments on the device.
Large ones (ImageNet, any ImageFolder) are :class:`FolderData`: torch datasets yielding
``(index, image, label)`` read by a DataLoader with workers and a sampler over the planned indices.
Datasets know nothing of pruners.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prunebench.errors import ConfigError, DataError


@dataclass
class TensorData:
    """An in-memory image-classification dataset.

    Attributes
    ----------
    x_train, x_test : uint8 tensors [N, C, H, W]
    y_train, y_test : int64 tensors [N]
    num_classes : number of classes (labels are 0..num_classes-1)
    mean, std : per-channel normalisation on the 0-1 scale (computed from the training split)
    augment : default augmentation: "crop+flip", "crop" or "none"
    crop_padding : padding (pixels) of the random crop
    key : identifies the data (for caches and run parameters)
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str = "none"
    crop_padding: int = 0
    key: str = ""
    classes: tuple[str, ...] = ()
    default_epochs: int = 20
    source: str = ""

    @property
    def num_train(self) -> int:
        return int(self.y_train.numel())

    @property
    def labels(self) -> torch.Tensor:
        return self.y_train

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]


@dataclass
class FolderData:
    """A dataset read from image files through DataLoader workers.

    ``train`` and ``test`` are torch datasets whose items are ``(index, image_tensor, label)``; images
    come out as float tensors in 0-1 (augmented for ``train``), normalised on the device by the loop.
    """

    name: str
    train: Any
    test: Any
    labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: int
    key: str = ""
    classes: tuple[str, ...] = ()
    default_epochs: int = 90
    source: str = ""

    @property
    def num_train(self) -> int:
        return int(self.labels.numel())

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    loader: Callable[..., TensorData | FolderData]
    description: str
    arg: str | None = None  # e.g. "path" for imagefolder:<path>


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(name: str, description: str, arg: str | None = None):
    """Register ``loader(data_dir: Path, download: bool, arg: str | None, image_size: int | None)``."""

    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"dataset {name!r} is already registered")
        _REGISTRY[name] = DatasetSpec(name, fn, description, arg)
        return fn

    return deco


def list_datasets(pattern: str = "*") -> list[str]:
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def dataset_description(name: str) -> str:
    spec = _REGISTRY[name]
    return spec.description


def default_data_dir() -> Path:
    """``$PRUNEBENCH_DATA``, else ``$XDG_CACHE_HOME/prunebench/data`` (``~/.cache/prunebench/data``)."""
    env = os.environ.get("PRUNEBENCH_DATA")
    if env:
        return Path(env).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "prunebench" / "data"


@dataclass(frozen=True)
class SubsetSpec:
    """``NAME:n=K[,seed=S]``: a class-stratified random subset of ``K`` training images (test set unchanged)."""

    n: int
    seed: int = 0

    @property
    def key(self) -> str:
        return f"subset-n{self.n}-seed{self.seed}"


SUBSET_KEYS = ("n", "seed")


def _split_subset(name: str, spec: DatasetSpec, arg: str) -> tuple[str | None, SubsetSpec | None]:
    """Separate the subset keys (``n=``, ``seed=``) from a dataset's own ``:`` argument.

    Datasets without an argument take ``NAME:n=K[,seed=S]``; ``imagefolder:<path>,n=K[,seed=S]`` takes
    them after its path; ``synthetic`` has its own ``n`` (the generated size) and no subset.
    """
    if not arg or spec.name == "synthetic":
        return (arg or None), None
    parts = arg.split(",")
    own: list[str] = []
    sub: dict[str, str] = {}
    for i, part in enumerate(parts):
        k, sep, v = part.partition("=")
        if spec.arg is not None and i == 0:
            own.append(part)  # imagefolder's path
            continue
        if not sep or k.strip() not in SUBSET_KEYS:
            if spec.arg is None:
                raise ConfigError(
                    f"dataset {spec.name!r}: bad argument {part!r} in {name!r}; valid: "
                    f"{spec.name}:n=K[,seed=S] (a class-stratified subset of K training images)"
                )
            own.append(part)
            continue
        k = k.strip()
        if k in sub:
            raise ConfigError(f"dataset {name!r}: {k} given twice")
        sub[k] = v.strip()
    if not sub:
        return ",".join(own) or None, None
    if "n" not in sub:
        raise ConfigError(f"dataset {name!r}: a subset needs n=K (K training images), e.g. {spec.name}:n=5000")
    try:
        n, seed = int(sub["n"]), int(sub.get("seed", "0"))
    except ValueError:
        raise ConfigError(
            f"dataset {name!r}: n and seed must be integers, got n={sub['n']!r}"
            f"{', seed=' + repr(sub['seed']) if 'seed' in sub else ''}"
        ) from None
    if n < 1 or seed < 0:
        raise ConfigError(f"dataset {name!r}: need n >= 1 and seed >= 0")
    return ",".join(own) or None, SubsetSpec(n, seed)


def parse_dataset_spec(name: str) -> tuple[DatasetSpec, str | None, SubsetSpec | None]:
    """``name`` to its registry entry, its own ``:`` argument and its subset (or None)."""
    base, _, arg = name.partition(":")
    spec = _REGISTRY.get(base)
    if spec is None:
        valid = ", ".join(f"{n}:<{s.arg}>" if s.arg else n for n, s in sorted(_REGISTRY.items()))
        raise ConfigError(f"unknown dataset {name!r}; valid: {valid} (any but synthetic also as NAME:n=K[,seed=S])")
    own, subset = _split_subset(name, spec, arg)
    return spec, own, subset


def parse_dataset_name(name: str) -> tuple[DatasetSpec, str | None]:
    spec, arg, _ = parse_dataset_spec(name)
    return spec, arg


def stratified_subset(labels: np.ndarray, n: int, seed: int, num_classes: int) -> np.ndarray:
    """Sorted indices of a class-stratified random subset of ``n`` of ``labels``.

    Class ``c`` with ``N_c`` of the ``N`` samples gets ``floor(n N_c / N)`` places plus one of the
    ``n - sum floor(...)`` remaining places if its fractional part is among the largest (ties: lower
    class first), so class proportions are kept to within one sample; within each class the samples are
    drawn uniformly without replacement by ``numpy.random.default_rng(seed)``, classes in label order.
    """
    labels = np.asarray(labels)
    total = labels.shape[0]
    if not 1 <= n <= total:
        raise ConfigError(f"subset n={n} is not valid: the training split has {total} images; valid: 1..{total}")
    counts = np.bincount(labels, minlength=num_classes)
    exact = n * counts / total
    alloc = np.floor(exact).astype(np.int64)
    rest = n - int(alloc.sum())
    order = sorted(range(num_classes), key=lambda c: (-(exact[c] - alloc[c]), c))
    for c in order[:rest]:
        alloc[c] += 1
    empty = [c for c in range(num_classes) if counts[c] > 0 and alloc[c] == 0]
    if empty:
        raise ConfigError(
            f"subset n={n} leaves class {empty[0]} without a training image ({len(empty)} classes "
            f"empty); valid: n >= {int(np.ceil(total / counts[counts > 0].min()))} here"
        )
    rng = np.random.default_rng(seed)
    picked = [
        rng.choice(np.flatnonzero(labels == c), int(alloc[c]), replace=False)
        for c in range(num_classes)
        if alloc[c] > 0
    ]
    return np.sort(np.concatenate(picked))


def take_subset(data: TensorData | FolderData, subset: SubsetSpec) -> TensorData | FolderData:
    """``data`` with its training split cut to ``subset`` (test split, classes and augmentation kept).

    An in-memory dataset's normalisation statistics are recomputed on the subset (they always come from
    the training split); the data key gains ``-subset-n<K>-seed<S>`` (score caches, run parameters).
    """
    idx = stratified_subset(data.labels.numpy(), subset.n, subset.seed, data.num_classes)
    key = f"{data.key}-{subset.key}"
    if isinstance(data, TensorData):
        x = data.x_train[torch.from_numpy(idx)].contiguous()
        mean, std = channel_stats(x)
        return dataclasses.replace(
            data, x_train=x, y_train=data.y_train[torch.from_numpy(idx)].contiguous(), mean=mean, std=std, key=key
        )
    base = data.train.base if hasattr(data.train, "base") else data.train
    train = (
        type(data.train)(torch.utils.data.Subset(base, idx.tolist()))
        if hasattr(data.train, "base")
        else torch.utils.data.Subset(base, idx.tolist())
    )
    return dataclasses.replace(data, train=train, labels=data.labels[torch.from_numpy(idx)].contiguous(), key=key)


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    image_size: int | None = None,
) -> TensorData | FolderData:
    """Load dataset ``name`` (``digits``, ``cifar10``, ``imagefolder:/path``, ``cifar10:n=5000``, ...).

    ``NAME:n=K[,seed=S]`` (``imagefolder:<path>,n=K[,seed=S]``) keeps a class-stratified random subset of
    ``K`` training images drawn with seed ``S`` (default 0; see :func:`stratified_subset`); the test split
    is unchanged. The subset is part of the dataset string, hence of a run's config, run key and
    checkpoint identity.

    ``data_dir`` defaults to :func:`default_data_dir`. Missing or corrupt data raises
    :class:`~prunebench.errors.DataError` saying where it was looked for and how to provide it.
    """
    spec, arg, subset = parse_dataset_spec(name)
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if data_dir is not None and not root.is_dir():
        raise DataError(
            f"data dir {str(root)!r} does not exist (give an existing folder with --data-dir or PRUNEBENCH_DATA)"
        )
    if os.environ.get("PRUNEBENCH_OFFLINE", "").lower() in ("1", "true", "yes"):
        download = False
    data = spec.loader(root, download=download, arg=arg, image_size=image_size)
    return take_subset(data, subset) if subset is not None else data


# ---------------------------------------------------------------------------------------------------
# helpers shared by the loaders
# ---------------------------------------------------------------------------------------------------


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (0-1 scale) of a uint8 NCHW tensor, in float64 chunks."""
    c = x.shape[1]
    s = torch.zeros(c, dtype=torch.float64)
    ss = torch.zeros(c, dtype=torch.float64)
    for chunk in torch.split(x, 8192):
        f = chunk.to(torch.float64) / 255.0
        s += f.sum(dim=(0, 2, 3))
        ss += (f * f).sum(dim=(0, 2, 3))
    n = x.shape[0] * x.shape[2] * x.shape[3]
    mean = s / n
    std = torch.sqrt(torch.clamp(ss / n - mean * mean, min=1e-12))
    return tuple(mean.tolist()), tuple(std.tolist())


def _check_arrays(arrays: dict[str, np.ndarray], num_classes: int | None, where: str, channels_last_input: bool) -> int:
    """Check the images and labels of :func:`tensor_data_from_arrays` (NHW images get a channel axis, in
    place in ``arrays``); returns the number of classes."""
    for k in ("x_train", "x_test"):
        a = arrays[k]
        if a.dtype != np.uint8:
            raise DataError(f"{where}: {k} must be uint8 images (0..255), got dtype {a.dtype}")
        if a.ndim == 3:
            arrays[k] = a = a[..., None] if channels_last_input else a[:, None]
        if a.ndim != 4:
            raise DataError(f"{where}: {k} must have shape (N, H, W, C) or (N, H, W), got {tuple(a.shape)}")
        c = a.shape[3] if channels_last_input else a.shape[1]
        if c not in (1, 3):
            raise DataError(f"{where}: {k} must have 1 or 3 channels, got shape {tuple(a.shape)}")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DataError(
            f"{where}: x_train and x_test image shapes differ: {arrays['x_train'].shape[1:]} vs {arrays['x_test'].shape[1:]}"
        )
    for xk, yk in (("x_train", "y_train"), ("x_test", "y_test")):
        y = arrays[yk]
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{where}: {yk} must be a 1-D integer array, got shape {tuple(y.shape)} dtype {y.dtype}")
        if y.shape[0] != arrays[xk].shape[0]:
            raise DataError(f"{where}: {xk} has {arrays[xk].shape[0]} images but {yk} has {y.shape[0]} labels")
        if y.shape[0] == 0:
            raise DataError(f"{where}: {yk} is empty")
    n_classes = (
        num_classes if num_classes is not None else int(max(arrays["y_train"].max(), arrays["y_test"].max())) + 1
    )
    for yk in ("y_train", "y_test"):
        y = arrays[yk]
        if y.min() < 0 or y.max() >= n_classes:
            raise DataError(f"{where}: {yk} has labels in [{y.min()}, {y.max()}]; valid: 0..{n_classes - 1}")
    return n_classes


def tensor_data_from_arrays(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    num_classes: int | None,
    where: str,
    channels_last_input: bool = True,
    **kwargs: Any,
) -> TensorData:
    """Validate uint8 image arrays and labels and pack them as a :class:`TensorData`.

    Images are NHWC (``channels_last_input``) or NHW uint8; labels integer in ``[0, num_classes)``.
    """
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    n_classes = _check_arrays(arrays, num_classes, where, channels_last_input)

    def to_nchw(a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a))
        return t.permute(0, 3, 1, 2).contiguous() if channels_last_input else t.contiguous()

    xtr, xte = to_nchw(arrays["x_train"]), to_nchw(arrays["x_test"])
    mean, std = channel_stats(xtr)
    return TensorData(
        name=name,
        x_train=xtr,
        y_train=torch.from_numpy(arrays["y_train"].astype(np.int64)),
        x_test=xte,
        y_test=torch.from_numpy(arrays["y_test"].astype(np.int64)),
        num_classes=n_classes,
        mean=mean,
        std=std,
        **kwargs,
    )
