"""Paths derived from data, and writes that never follow a symlink.

Anything read from a file (a study name in a results table or a study TOML, a run key, a method label)
may be hostile: before it names a path it is checked with :func:`safe_component` (one path component of
letters, digits and ``_ . + -``, not starting with a symbol, so never ``..`` nor ``/any/dir``).
:func:`open_nofollow` opens a file for writing without following a symlink at its name, and
:func:`staged_dir` builds a folder's new contents beside it and swaps them in whole, so a failure part
way (a full disk, a bad label) leaves the previous contents as they were.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prunebench.errors import ConfigError, Terminated

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")


def safe_component(name: object, what: str) -> str:
    """``name`` if it is a safe single path component, else :class:`ConfigError` (one line)."""
    s = str(name)
    if not NAME_RE.match(s):
        shown = s if len(s) <= 60 else s[:57] + "..."
        raise ConfigError(
            f"{what} {shown!r} cannot name a folder; valid: letters, digits and _ . + - "
            f"(not starting with a symbol, at most 128 characters)"
        )
    return s


def open_nofollow(path: str | os.PathLike, flags: int, mode: int = 0o644) -> int:
    """``os.open`` that refuses a symlink at ``path`` (``O_NOFOLLOW``): one line, not a write to its target."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError:
        if Path(path).is_symlink():
            raise ConfigError(
                f"{path} is a symbolic link; prunebench does not write through links (remove it)"
            ) from None
        raise


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created, never through a symlink) inside the block; waits
    for another holder. The kernel releases it when a holder dies."""
    import fcntl

    fd = open_nofollow(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def refuse_symlink(path: str | os.PathLike, what: str) -> None:
    if Path(path).is_symlink():
        raise ConfigError(f"{what} {path} is a symbolic link; prunebench does not write through links (remove it)")


@contextlib.contextmanager
def staged_dir(out: str | os.PathLike, entries: tuple[str, ...]) -> Iterator[Path]:
    """Yield an empty staging folder inside ``out``; on success move its ``entries`` into ``out``.

    Each old entry is renamed aside first, the new one renamed in, then the old one deleted, so the old
    contents survive any failure before the swap (the staging folder is removed). Symlinked entries in
    ``out`` are refused before anything is written.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for e in entries:
        refuse_symlink(out / e, "report entry")
    stage = Path(tempfile.mkdtemp(dir=out, prefix=".staging-"))
    try:
        yield stage
        trash = Path(tempfile.mkdtemp(dir=out, prefix=".old-"))
        try:
            for e in entries:
                new, old = stage / e, out / e
                if not (new.exists() or new.is_symlink()):
                    continue
                if old.exists() or old.is_symlink():
                    os.rename(old, trash / e)
                os.rename(new, old)
        finally:
            shutil.rmtree(trash, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def npy_bytes(arr) -> bytes:
    """``arr`` as the bytes of a ``.npy`` file (no pickled objects)."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


def atomic_write(path: str | Path, write: Callable[[Path], Any], *, durable: bool = False) -> Path:
    """Write ``path`` by calling ``write(tmp)`` on a unique hidden temporary path beside it, then renaming.

    Readers see the old file or the new one, never a torn one; writers racing on the same ``path`` each
    rename their own complete file (the last rename wins). ``durable`` also fsyncs the file and its folder.
    On any error (or Ctrl-C) the temporary file is removed and ``path`` is left as it was.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(final)
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.{os.getpid()}.", suffix=".tmp")
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


def remove_stale_temps(final: str | Path) -> None:
    """Remove temporaries of ``final`` left by a writer killed mid-write (kill -9, power cut): the name
    holds the writer's pid, and a temporary whose pid no longer runs is deleted (it may be full-size)."""
    final = Path(final)
    with contextlib.suppress(OSError):
        for t in final.parent.glob(f".{glob.escape(final.name)}.*.tmp"):
            parts = t.name[len(final.name) + 2 :].split(".")
            if not parts or not parts[0].isdigit() or int(parts[0]) == os.getpid():
                continue
            try:
                os.kill(int(parts[0]), 0)
            except ProcessLookupError:
                t.unlink(missing_ok=True)
            except OSError:
                pass  # alive (another user's process): leave it


def raise_terminated(signum, frame) -> None:
    """A SIGTERM handler: raise :class:`~prunebench.errors.Terminated` (a KeyboardInterrupt) in the main thread."""
    raise Terminated


def handle_sigterm() -> None:
    """Install :func:`raise_terminated` for SIGTERM (main thread only)."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, raise_terminated)
