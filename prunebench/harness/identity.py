"""The data a run trained on, as a short fingerprint (part of a run's identity).

A checkpoint records the fingerprint and sizes of its data, a leaderboard run carries them as the tag
``prunebench.data_fingerprint`` and the row column ``data_fingerprint``: resuming on other data (other
images of the same size, or another size) is refused, and a finished run on other data does not count
for a grid cell. In-memory datasets hash their tensors (train and test images and labels, ~0.1 s for
CIFAR-10); folder datasets hash each file's path, size and modification time (no image is read). The
result is computed once per loaded dataset and kept on it.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np
import torch

FINGERPRINT_TAG = "prunebench.data_fingerprint"
_ATTR = "_prunebench_fingerprint"


def _hash_tensor(h, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}:{tuple(t.shape)}:".encode())
    h.update(t.view(torch.uint8).numpy().reshape(-1).data if t.numel() else b"")


def data_fingerprint(data: Any) -> str:
    """16 hex digits naming the content of ``data`` (a TensorData or FolderData)."""
    cached = getattr(data, _ATTR, None)
    if cached is not None:
        return cached
    h = hashlib.blake2b(digest_size=8)
    if hasattr(data, "x_train"):
        for t in (data.x_train, data.y_train, data.x_test, data.y_test):
            _hash_tensor(h, t)
    else:
        for part in (data.train, data.test):
            base = getattr(part, "base", part)
            root = str(getattr(base, "root", ""))
            for path, y in getattr(base, "samples", ()):
                try:
                    st = os.stat(path)
                    h.update(f"{os.path.relpath(path, root)}\0{y}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
                except OSError:
                    h.update(f"{path}\0missing\n".encode())
        _hash_tensor(h, data.labels)
    fp = h.hexdigest()
    try:
        object.__setattr__(data, _ATTR, fp)
    except (AttributeError, TypeError):
        pass
    return fp


def data_identity(data: Any) -> dict[str, Any]:
    """What a checkpoint records about its data: fingerprint and sizes."""
    test = data.x_test.shape[0] if hasattr(data, "x_test") else len(data.test)
    return {"fingerprint": data_fingerprint(data), "num_train": int(data.num_train), "num_test": int(test)}


def usage_size(state: dict[str, Any]) -> int | None:
    """The number of training samples a (possibly older) checkpoint was written for."""
    u = state.get("usage")
    if isinstance(u, (torch.Tensor, np.ndarray)):
        return int(u.shape[0])
    return None


def data_mismatch(saved_identity: dict[str, Any], state: dict[str, Any], now: dict[str, Any]) -> str | None:
    """Why a checkpoint (its ``identity`` and full ``state``) was written on other data than ``now``
    (:func:`data_identity`), or ``None``. Checkpoints older than the fingerprint are checked by size only."""
    saved = saved_identity.get("data")
    if isinstance(saved, dict):
        for k in ("num_train", "num_test", "fingerprint"):
            if saved.get(k) != now.get(k):
                what = "data with another fingerprint" if k == "fingerprint" else f"{k}={saved.get(k)}"
                return f"the checkpoint was written on {what} but this run's data has {k}={now.get(k)}"
        return None
    n = usage_size(state)
    if n is not None and n != now["num_train"]:
        return f"the checkpoint was written on num_train={n} but this run's data has num_train={now['num_train']}"
    return None


def run_identity(config, data: Any) -> dict[str, Any]:
    """The settings and the data (fingerprint and sizes) a checkpoint may be resumed with."""
    from prunebench.harness.config import EXECUTION_FIELDS

    return {**{k: v for k, v in config.to_dict().items() if k not in EXECUTION_FIELDS}, "data": data_identity(data)}


def check_resumable(state: dict[str, Any], now: dict[str, Any]) -> None:
    """Refuse (ConfigError) to resume checkpoint ``state`` with a run whose :func:`run_identity` is ``now``."""
    from prunebench.errors import ConfigError

    saved, now = dict(state["identity"]), dict(now)
    problem = data_mismatch(saved, state, now["data"])
    if problem:
        raise ConfigError(f"--resume: {problem}; resume on the same data or use another --checkpoint-dir")
    saved.pop("data", None)
    now.pop("data")
    diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if diff:
        k = diff[0]
        raise ConfigError(
            f"--resume: the checkpoint was written with {k}={saved.get(k)!r} but this run has "
            f"{k}={now.get(k)!r}; resume with the same settings or use another --checkpoint-dir"
        )
