"""Atomic checkpoints and pre-flight checks (disk space, writable folders, reachable tracking server).

Files prunebench rewrites in place (checkpoints, sweep tables, proxy scores) go through
:func:`atomic_write` (the leaderboard writes its four tables into a temporary folder of its own first, then
renames them, so a failed write leaves all the old ones): it is written to a hidden temporary name of its own in the same folder
(unique per call, so concurrent writers never share one), then renamed over the target (``os.replace``
is atomic on POSIX). A checkpoint is written that way over ``<dir>/checkpoint.pt`` and also fsync'd (file
and folder), so a run killed at any moment, even by a power cut, leaves either the previous checkpoint or
the new one, never a torn file. SIGINT during the write is deferred until the rename is done ("Ctrl-C
finishes the checkpoint").

Nothing read from disk may run code: checkpoints are loaded with ``torch.load(weights_only=True)``, whose
unpickler accepts only tensors and plain containers. Numpy arrays and scalars in the state (pruner state,
kept masks, plan scores) are stored as tensors tagged ``{"__ndarray__": tensor}`` and turned back into
arrays on load, so every state survives the round trip without pickled classes.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import signal
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch

from prunebench.errors import ConfigError, Terminated
from prunebench.safety import atomic_write  # noqa: F401  (re-exported: sweeps and proxies import it from here)

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 2  # 2: numpy as tagged tensors; 1 (still read): plain numpy arrays, read with 3 numpy globals allowed
_ND = "__ndarray__"
# what unpickling a plain numeric numpy array needs (no object, string or structured dtypes)
_NUMPY_ARRAY_GLOBALS = [np._core.multiarray._reconstruct, np.ndarray, np.dtype] + [  # type: ignore[attr-defined]
    getattr(np.dtypes, n)
    for n in (
        "BoolDType",
        "Int8DType",
        "UInt8DType",
        "Int16DType",
        "UInt16DType",
        "Int32DType",
        "UInt32DType",
        "Int64DType",
        "UInt64DType",
        "Float16DType",
        "Float32DType",
        "Float64DType",
        "LongDType",
        "ULongDType",
        "LongLongDType",
        "ULongLongDType",
    )
    if hasattr(np.dtypes, n)
]
REQUIRED_KEYS = (
    "identity",
    "epoch",
    "model",
    "optimizer",
    "pruner",
    "rng_global",
    "rng_augment",
    "counters",
    "usage",
    "history",
)


@contextlib.contextmanager
def deferred_sigint():
    """Hold back Ctrl-C and SIGTERM inside the block; re-raise them (KeyboardInterrupt, Terminated) after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum, frame):
        pending.append(signum)

    for s in previous:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if pending:
            if signal.SIGTERM in pending:
                raise Terminated
            raise KeyboardInterrupt


def to_safe(obj: Any) -> Any:
    """``obj`` with numpy arrays as tagged tensors and numpy scalars as Python numbers (weights_only-safe)."""
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError("a checkpoint cannot hold numpy object arrays")
        return {_ND: torch.from_numpy(np.ascontiguousarray(obj).copy())}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        new = {k: to_safe(v) for k, v in obj.items()}
        if all(new[k] is v for k, v in obj.items()):
            return obj  # unchanged (keeps an OrderedDict's _metadata, e.g. a model's state_dict)
        return new
    if isinstance(obj, (list, tuple)):
        new_seq = [to_safe(v) for v in obj]
        if all(a is b for a, b in zip(new_seq, obj)):
            return obj
        return type(obj)(new_seq) if isinstance(obj, list) else tuple(new_seq)
    return obj


def from_safe(obj: Any) -> Any:
    """Inverse of :func:`to_safe`."""
    if isinstance(obj, dict):
        if len(obj) == 1 and _ND in obj and isinstance(obj[_ND], torch.Tensor):
            return obj[_ND].numpy()
        return {k: from_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_safe(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(from_safe(v) for v in obj)
    return obj


def save_checkpoint(directory: str | Path, state: dict[str, Any]) -> Path:
    """Atomically write ``state`` to ``directory/checkpoint.pt``."""
    buf = io.BytesIO()
    torch.save(to_safe({"format_version": FORMAT_VERSION, **state}), buf)
    with deferred_sigint():
        try:
            return atomic_write(
                Path(directory) / CHECKPOINT_NAME, lambda t: t.write_bytes(buf.getbuffer()), durable=True
            )
        except OSError as e:  # e.g. a full disk: the temporary is gone, the previous checkpoint intact
            raise ConfigError(
                f"checkpoint dir {directory}: writing the checkpoint failed "
                f"({e.strerror or type(e).__name__}); the previous checkpoint is intact"
            ) from None


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load one checkpoint file without running code; raises :class:`ConfigError` for anything unusable
    (not a file, unreadable, torn, crafted with pickled code, another format, missing keys)."""
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        raise ConfigError(f"checkpoint {path} is not a regular file; remove it to start over")
    try:
        # format 1 (before weights_only) pickled plain numpy arrays: the globals that rebuild a numeric one are
        # allowed (object arrays would need further globals, which stay refused)
        with torch.serialization.safe_globals(_NUMPY_ARRAY_GLOBALS):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        kind = (
            "holds objects other than tensors (refused: loading it could run code)"
            if "Unsupported global" in str(e) or "weights_only" in str(e).lower()
            else f"is unreadable ({type(e).__name__})"
        )
        raise ConfigError(f"checkpoint {path} {kind}; delete it to start over") from None
    if not isinstance(state, dict):
        raise ConfigError(f"checkpoint {path} is not a prunebench checkpoint; delete it to start over")
    if state.get("format_version") not in (1, FORMAT_VERSION):
        raise ConfigError(
            f"checkpoint {path} has format {state.get('format_version')!r}, expected {FORMAT_VERSION} "
            f"(written by another prunebench version); delete it to start over"
        )
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise ConfigError(f"checkpoint {path} lacks {', '.join(missing)}; delete it to start over")
    return from_safe(state)


def resume_or_start(config):
    """``config`` with ``resume`` dropped when its checkpoint folder holds no checkpoint yet, and the line
    that says so (else ``None``): a requeued job runs the same ``--resume`` command as its first attempt."""
    if not config.resume or not config.checkpoint_dir:
        return config, None
    path = Path(config.checkpoint_dir) / CHECKPOINT_NAME
    if path.exists() or path.is_symlink():
        return config, None
    return config.replace(resume=False), f"--resume: no checkpoint at {path} yet: starting from scratch"


def load_checkpoint(directory: str | Path) -> dict[str, Any]:
    d = Path(directory)
    path = d / CHECKPOINT_NAME
    if not path.exists() and not path.is_symlink():
        raise ConfigError(f"--resume: no checkpoint at {path}; run once without --resume to create it")
    try:
        return read_checkpoint(path)
    except ConfigError as e:
        raise ConfigError(f"--resume: {e}") from None


def check_writable_dir(directory: str | Path, need_bytes: int, what: str) -> None:
    """Fail before training if ``directory`` cannot be created/written or lacks ``need_bytes`` free."""
    d = Path(directory)
    try:
        d.mkdir(parents=True, exist_ok=True)
        # a probe of its own: parallel runs (leaderboard --jobs) check the same folder at once
        with tempfile.NamedTemporaryFile(dir=d, prefix=".prunebench-write-test-") as probe:
            probe.write(b"ok")
    except OSError as e:
        raise ConfigError(f"{what} {str(d)!r} is not writable ({e.strerror or type(e).__name__})") from None
    free = shutil.disk_usage(d).free
    if free < need_bytes:
        raise ConfigError(
            f"{what} {str(d)!r} has {free / 2**20:.1f} MiB free, needs at least {need_bytes / 2**20:.1f} MiB"
        )


def check_tracking_reachable(uri: str, timeout: float = 3.0) -> None:
    """For http(s) tracking URIs, one TCP connect so a dead server is a clear error, not minutes of retries."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            pass
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise ConfigError(
            f"MLflow tracking server {uri} is unreachable ({reason}); start it, or use a local store "
            f"(--tracking-uri sqlite:///mlflow.db) or --no-tracking"
        ) from None


def checkpoint_problem(
    directory: str | Path, root: str | Path, config, data: dict[str, Any] | None = None
) -> str | None:
    """Why the checkpoint in ``directory`` (a cell folder inside ``root``) must not be resumed for
    ``config``, ``""`` when there is none to resume, ``None`` when it can be resumed.

    Resumable only when ``directory`` is a real folder directly inside ``root`` (not a symlink leading
    elsewhere) holding a regular ``checkpoint.pt`` that loads without running code, has every key, and was
    written with the same settings as ``config`` (a :class:`~prunebench.harness.config.TrainConfig`) and,
    when ``data`` (:func:`~prunebench.harness.identity.data_identity`) is given, on the same data.
    """
    from prunebench.harness.config import EXECUTION_FIELDS

    d, root = Path(directory), Path(root)
    if d.is_symlink() or not d.is_dir() or d.resolve().parent != root.resolve():
        return f"{d} is not a folder inside {root}"
    path = d / CHECKPOINT_NAME
    if not path.exists() and not path.is_symlink():
        return ""
    try:
        state = read_checkpoint(path)
    except ConfigError as e:
        return str(e).split("; delete it")[0]
    from prunebench.harness.identity import data_mismatch

    now = {k: v for k, v in config.to_dict().items() if k not in EXECUTION_FIELDS}
    saved = dict(state["identity"]) if isinstance(state["identity"], dict) else {}
    if data is not None:
        problem = data_mismatch(saved, state, data)
        if problem:
            return f"checkpoint {path}: {problem}"
    saved.pop("data", None)
    diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if diff:
        return f"checkpoint {path} was written with other settings ({diff[0]}={saved.get(diff[0])!r})"
    return None


def trainer_state(tr: Any) -> dict[str, Any]:
    """The full training state of trainer ``tr`` (model, optimizer, every RNG, pruner, counters, records)."""
    return {
        "identity": tr.identity(),
        "epoch": tr.epoch,
        "model": tr.model.state_dict(),
        "optimizer": tr.optimizer.state_dict(),
        "pruner": tr.pruner.state_dict(),
        "rng_global": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state(tr.device) if tr.device.type == "cuda" else None,
        "rng_augment": tr.aug_gen.get_state(),
        "rng_probe": tr.grad_probe.gen.get_state(),
        "counters": tr.meter.state(),
        **tr.records.state(),
        "mlflow_run_id": tr.run_id,
    }


def load_trainer_state(tr: Any, state: dict[str, Any]) -> None:
    """Restore what :func:`trainer_state` saved into trainer ``tr``."""
    tr.epoch = state["epoch"]
    tr.model.load_state_dict(state["model"])
    tr.optimizer.load_state_dict(state["optimizer"])
    tr.pruner.load_state_dict(state["pruner"])
    torch.set_rng_state(state["rng_global"])
    if state["rng_cuda"] is not None and tr.device.type == "cuda":
        torch.cuda.set_rng_state(state["rng_cuda"], tr.device)
    tr.aug_gen.set_state(state["rng_augment"])
    tr.grad_probe.gen.set_state(state["rng_probe"])
    tr.meter.load(state["counters"])
    tr.records.load(state)
    tr.run_id = state["mlflow_run_id"]
