"""``from-indices``: train on a fixed subset read from an index file (e.g. a coreset exported from a dynamic
run with ``prunebench export-coreset``), so one method's choice can be evaluated on another model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from prunebench.errors import ConfigError
from prunebench.pruners.base import Pruner, Selection, register_pruner
from prunebench.pruners.rules import shuffle
from prunebench.safety import atomic_write, npy_bytes


def read_indices(path: str | Path) -> np.ndarray:
    """Read a 1-D array of integer dataset indices from ``.npy`` or ``.csv``/``.txt`` (one per line; an
    optional ``index`` header; ``#`` comments). Raises :class:`ConfigError` (one line) if the file is
    missing, unreadable or not integers."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"indices_file {str(p)!r} does not exist (write one with: prunebench export-coreset)")
    try:
        if p.suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        elif p.suffix in (".csv", ".txt"):
            lines = [ln.split(",")[0].strip() for ln in p.read_text().splitlines()]
            lines = [ln for ln in lines if ln and not ln.startswith("#")]
            if lines and lines[0].lower() == "index":
                lines = lines[1:]
            arr = np.array([int(v) for v in lines], dtype=np.int64)
        else:
            raise ConfigError(f"indices_file {str(p)!r}: unknown extension {p.suffix!r}; valid: .npy, .csv, .txt")
    except ConfigError:
        raise
    except Exception as e:  # corrupt npy, non-integer csv entries, ...
        msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise ConfigError(f"indices_file {str(p)!r} is not a readable index file: {msg}") from None
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise ConfigError(
            f"indices_file {str(p)!r} must hold a 1-D array of integers, got dtype {arr.dtype} shape {arr.shape}"
        )
    return arr.astype(np.int64)


def write_indices(path: str | Path, indices: np.ndarray) -> Path:
    """Write ``indices`` (1-D integers) as ``.npy`` or ``.csv`` (header ``index``, one per line)."""
    p = Path(path)
    idx = np.asarray(indices, dtype=np.int64)
    if p.suffix == ".npy":
        atomic_write(p, lambda t: t.write_bytes(npy_bytes(idx)))  # never through a symlink at p
    elif p.suffix in (".csv", ".txt"):
        text = "index\n" + "".join(f"{int(i)}\n" for i in idx)
        atomic_write(p, lambda t: t.write_text(text))
    else:
        raise ConfigError(f"output {str(p)!r}: unknown extension {p.suffix!r}; valid: .npy, .csv, .txt")
    return p


@dataclass(frozen=True)
class FromIndicesOptions:
    indices_file: str = ""  # .npy or .csv of dataset indices to train on (prunebench export-coreset writes one)


@register_pruner("from-indices")
class FromIndices(Pruner):
    """Train every epoch on exactly the samples listed in ``indices_file`` (reshuffled each epoch).

    A static coreset given from outside, e.g. the most-used samples of a dynamic run (see
    ``prunebench export-coreset``), so that a dynamic method's choice can be evaluated as a static subset
    on another architecture (the transfer protocol of coreset papers such as DeepCore, Guo et al. 2022).

    Validation (one-line :class:`ConfigError` otherwise): the file exists and holds a 1-D integer array;
    every index lies in ``[0, N)``; no index repeats; and the count equals ``q = round((1-p)N)`` for the
    run's ``prune_ratio`` — the file fixes the budget, so a mismatch is an error naming the ratio that
    matches (``p = 1 - count/N``) rather than a silent change of the realized ratio.
    """

    granularity: ClassVar[str] = "static"
    description: ClassVar[str] = (
        "a fixed subset read from indices_file (e.g. exported from a dynamic run; DeepCore-style transfer)"
    )
    family: ClassVar[str] = "given subset"
    paper: ClassVar[str] = (
        "none: trains a subset chosen elsewhere (the transfer protocol of DeepCore, Guo, Zhao & Bai, DEXA 2022)"
    )
    cost_profile: ClassVar[tuple[str, ...]] = ()
    defaults_source: ClassVar[str] = "no defaults: indices_file is required and fixes the budget"
    Options = FromIndicesOptions
    short_names: ClassVar[dict[str, str]] = {"indices_file": "file"}
    state_attrs = ("subset",)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        f = self.options.indices_file
        if not f:
            raise ConfigError(
                "from-indices needs indices_file=PATH (.npy or .csv of dataset indices; "
                "prunebench export-coreset writes one)"
            )
        arr = read_indices(f)
        n, q = self.num_samples, self.keep_count
        if arr.size and (arr.min() < 0 or arr.max() >= n):
            bad = int(arr[(arr < 0) | (arr >= n)][0])
            raise ConfigError(
                f"indices_file {f!r}: index {bad} is out of range; valid: 0 <= index < {n} (N of this dataset)"
            )
        if np.unique(arr).size != arr.size:
            raise ConfigError(
                f"indices_file {f!r} repeats indices ({arr.size - np.unique(arr).size} duplicates); "
                f"valid: unique indices"
            )
        if arr.size != q:
            raise ConfigError(
                f"indices_file {f!r} holds {arr.size} indices but prune_ratio={self.prune_ratio:g} keeps "
                f"round((1-p)*{n}) = {q}; valid: prune_ratio={1 - arr.size / n:.10g} for this file"
            )
        self.subset = torch.from_numpy(arr.copy())

    @property
    def label(self) -> str:
        return f"from-indices[file={Path(self.options.indices_file).name},p={self.prune_ratio:g}]"

    def plan_epoch(self, epoch: int) -> Selection:
        return Selection(shuffle(self.subset, self.generator))
