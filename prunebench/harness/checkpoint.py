"""Atomic checkpoints and pre-flight checks (disk space, writable folders, reachable tracking server).

Files prunebench rewrites in place (checkpoints, sweep tables, proxy scores) go through
:func:`atomic_write` (the leaderboard writes its four tables into a temporary folder of its own first, then
renames them, so a failed write leaves all the old ones): it is written to a hidden temporary name of its own in the same folder
(unique per call, so concurrent writers never share one), then renamed over the target (``os.replace``
is atomic on POSIX). A checkpoint is written that way over ``<dir>/checkpoint.pt`` and also fsync'd (file
and folder), so a run killed at any moment, even by a power cut, leaves either the previous checkpoint or
the new one, never a torn file. SIGINT during the write is deferred until the rename is done ("Ctrl-C
finishes the checkpoint").
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import torch

from prunebench.errors import ConfigError

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 1


@contextlib.contextmanager
def deferred_sigint():
    """Hold back Ctrl-C inside the block; re-raise it as KeyboardInterrupt right after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[Any] = []
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        pending.append(signum)

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:
            raise KeyboardInterrupt


def atomic_write(path: str | Path, write: Callable[[Path], Any], *, durable: bool = False) -> Path:
    """Write ``path`` by calling ``write(tmp)`` on a unique hidden temporary path beside it, then renaming.

    Readers see the old file or the new one, never a torn one; writers racing on the same ``path`` each
    rename their own complete file (the last rename wins). ``durable`` also fsyncs the file and its folder.
    On any error (or Ctrl-C) the temporary file is removed and ``path`` is left as it was.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        with contextlib.suppress(OSError):  # make the rename durable too
            dfd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    return final


def save_checkpoint(directory: str | Path, state: dict[str, Any]) -> Path:
    """Atomically write ``state`` to ``directory/checkpoint.pt``."""
    buf = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **state}, buf)
    with deferred_sigint():
        return atomic_write(Path(directory) / CHECKPOINT_NAME, lambda t: t.write_bytes(buf.getbuffer()), durable=True)


def load_checkpoint(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CHECKPOINT_NAME
    if not path.is_file():
        raise ConfigError(f"--resume: no checkpoint at {path}; run once without --resume to create it")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ConfigError(f"--resume: checkpoint {path} is unreadable ({type(e).__name__}); delete it to start over") from None
    if state.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"--resume: checkpoint {path} has format {state.get('format_version')}, expected {FORMAT_VERSION}")
    return state


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
