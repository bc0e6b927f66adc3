"""Export a static coreset from a (dynamic) run: the ``(1-p)N`` most-used samples as an index file.

A dynamic pruner's choice, summarised by how often each sample was backpropagated (``RunResult.usage``,
MLflow artifact ``usage_counts.npy``), becomes a fixed subset that the ``from-indices`` pruner trains on,
e.g. on another architecture::

    prunebench export-coreset RUN_ID --out coreset.npy            # keeps round((1-p)N), p = the run's ratio
    prunebench run --pruner from-indices --prune-ratio 0.4 --set indices_file=coreset.npy --model resnet18

:func:`export_arrays` writes a static method's per-sample scores (``prunebench scores``) as ``.npy`` or CSV.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prunebench.errors import ConfigError, PrunebenchError
from prunebench.harness.config import TrainConfig
from prunebench.harness.loop import Trainer
from prunebench.harness.tracking import download_artifact
from prunebench.pruners.base import keep_count
from prunebench.pruners.from_indices import write_indices
from prunebench.pruners.rules import topk_random_ties
from prunebench.safety import atomic_write, npy_bytes
from prunebench.seeding import make_generator


def most_used(usage: np.ndarray, keep: int, seed: int = 0) -> np.ndarray:
    """Indices of the ``keep`` samples with the largest usage counts, sorted ascending.

    Ties (common: counts are small integers) are broken uniformly at random by a generator derived
    from ``seed``, so the export is reproducible.
    """
    u = np.asarray(usage)
    if u.ndim != 1:
        raise ConfigError(f"usage counts must be a 1-D array, got shape {u.shape}")
    if not 1 <= keep <= u.size:
        raise ConfigError(f"cannot keep {keep} of {u.size} samples; valid: 1 <= keep <= {u.size}")
    kept = topk_random_ties(torch.from_numpy(u.astype(np.float64)), keep, make_generator(seed, "export-coreset"))
    return np.sort(kept.numpy()).astype(np.int64)


def load_run_usage(run_id: str, tracking_uri: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """``(usage counts, result row)`` of an MLflow run logged by prunebench."""
    from mlflow.tracking import MlflowClient

    from prunebench.harness.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        raise ConfigError(f"tracking store {uri} does not exist (give --tracking-uri)")
    client = MlflowClient(tracking_uri=uri)
    with tempfile.TemporaryDirectory() as d:
        try:
            client.get_run(run_id)
            path = download_artifact(client, run_id, "usage_counts.npy", d)
            usage = np.load(path, allow_pickle=False)
        except Exception as e:
            msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            raise PrunebenchError(f"run {run_id!r} in {uri}: no readable usage_counts.npy ({msg})") from None
        try:
            row = json.loads(Path(download_artifact(client, run_id, "run.json", d)).read_text())["row"]
        except Exception:
            row = {}
    return usage, row


def _write_counts(path: str | Path, counts: np.ndarray) -> None:
    """One usage count per sample, in dataset order (``.npy``, or ``.csv`` with columns index,usage)."""
    p = Path(path)
    if p.suffix == ".npy":
        atomic_write(p, lambda t: t.write_bytes(npy_bytes(counts)))  # never through a symlink at p
    elif p.suffix in (".csv", ".txt"):
        text = "index,usage\n" + "".join(f"{i},{int(c)}\n" for i, c in enumerate(counts))
        atomic_write(p, lambda t: t.write_text(text))
    else:
        raise ConfigError(f"output {str(p)!r}: unknown extension {p.suffix!r}; valid: .npy, .csv, .txt")


def export_coreset(
    usage: np.ndarray, prune_ratio: float, out: str | Path, seed: int = 0, usage_out: str | Path | None = None
) -> dict[str, Any]:
    """Write the ``round((1-p)N)`` most-used samples to ``out`` (.npy or .csv); optionally the counts too.

    Returns a summary: how many were kept, the usage threshold, and how many kept samples were drawn
    from a tie at that threshold.
    """
    if not 0.0 <= prune_ratio < 1.0:
        raise ConfigError(f"prune_ratio must be in [0, 1), got {prune_ratio!r}")
    usage = np.asarray(usage)
    k = keep_count(usage.size, prune_ratio)
    idx = most_used(usage, k, seed)
    path = write_indices(out, idx)
    if usage_out is not None:
        _write_counts(usage_out, usage.astype(np.int64))
    threshold = int(usage[idx].min())
    return {
        "out": str(path),
        "num_samples": int(usage.size),
        "kept": int(k),
        "prune_ratio": float(prune_ratio),
        "min_usage_kept": threshold,
        "tied_at_threshold": int((usage[idx] == threshold).sum()),
        "tie_pool": int((usage == threshold).sum()),
    }


def export_arrays(arrays: dict[str, np.ndarray], out_dir: str | Path, fmt: str = "npy") -> list[Path]:
    """Write ``arrays`` to ``out_dir``: one ``.npy`` each, or CSV (``scores.csv``: one row per sample
    with every per-sample array as a column and a ``kept`` flag; ``kept_indices.csv`` in selection order)."""
    if fmt not in ("npy", "csv"):
        raise ConfigError(f"export format {fmt!r} is not valid; valid: npy, csv")
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if fmt == "npy":
        for k, v in arrays.items():
            _write_npy(out / f"{k}.npy", v)
            written.append(out / f"{k}.npy")
        return written
    import pandas as pd

    n = len(arrays["labels"]) if "labels" in arrays else None
    kept = arrays.get("kept_indices")
    cols = {"index": np.arange(n)} if n is not None else {}
    for k, v in arrays.items():
        if n is not None and v.ndim == 1 and v.shape[0] == n and k != "kept_indices":
            cols[k] = v
    if n is not None and kept is not None:
        mask = np.zeros(n, dtype=bool)
        mask[kept] = True
        cols["kept"] = mask
    atomic_write(out / "scores.csv", lambda t: pd.DataFrame(cols).to_csv(t, index=False))
    written.append(out / "scores.csv")
    if kept is not None:
        extra = {"order": np.arange(len(kept)), "index": kept}
        if "kept_weights" in arrays:
            extra["weight"] = arrays["kept_weights"]
        atomic_write(out / "kept_indices.csv", lambda t: pd.DataFrame(extra).to_csv(t, index=False))
        written.append(out / "kept_indices.csv")
    return written


def _write_npy(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda t: t.write_bytes(npy_bytes(array)))


def static_scores(config: TrainConfig | dict[str, Any]) -> dict[str, np.ndarray]:
    """Score and select with the static pruner of ``config`` without training the final model.

    Returns the pruner's artifacts (``scores``, ``kept_indices``, ...) plus ``labels``; the proxy cache
    is used as in a run.
    """
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    tr = Trainer(config)
    if tr.pruner.granularity != "static":
        raise ConfigError(
            f"pruner {config.pruner!r} has no static scores to export; valid: the static pruners (prunebench list)"
        )
    tr.pruner.prepare(tr.context())
    return {**tr.pruner.artifacts(), "labels": tr.data.labels.cpu().numpy()}
