"""Leaderboards: run a study's grid (methods x prune ratios x seeds, plus ``full``), resumably, and rank.

Resumption rule
---------------
Every run carries the MLflow tag ``prunebench.run_key`` (a hash of study, method, options, ratio, seed
and recipe). Before running, the study's runs are looked up in MLflow:

* a FINISHED run with the key is done: its row (the ``run.json`` artifact) goes into the table and it is
  not run again (if several exist, the earliest one is used);
* a FAILED or KILLED run is not done: it is run again (``retry_failed=False`` keeps the failure
  instead); if that attempt fails too, the table holds the latest failure;
* a RUNNING run with the key is a leftover of a killed leaderboard (a lock file in the out dir keeps two
  leaderboards of one out dir from running at once): it is marked KILLED and the run is redone.

So the table holds exactly one row per (method, prune ratio, seed), however often the leaderboard was
killed and re-run. The table files are written at the end of each invocation, atomically.

Moving and sharding grids
-------------------------
An MLflow store is local to a machine; a results table is portable. ``imports`` (CLI ``--import``) names
results tables of earlier invocations (``results.parquet``/``results.csv``, a folder holding one, or a
report's ``tables/runs.csv``): a FINISHED row whose ``run_key`` is a cell of this grid counts as done when
MLflow has no finished run for it, and its row is carried into the new table as it was (``run_id`` and
``tracking_uri`` still name the store it ran in). Run keys hash the recipe, so a changed recipe matches
nothing. ``seeds`` (CLI ``--seeds``) restricts the grid to some of the study's seeds: run seed 0 on one
machine and seed 1 on another, then import one table into the other's leaderboard.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import fcntl
import json
import math
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prunebench.errors import ConfigError, PrunebenchError, TrackingUnavailable
from prunebench.harness.identity import FINGERPRINT_TAG, data_fingerprint, data_identity
from prunebench.harness.tracking import download_artifact
from prunebench.plugins import loaded_plugins
from prunebench.safety import open_nofollow
from prunebench.studies.claims import Claim, ClaimLost, heartbeat_s, is_fresh
from prunebench.studies.progress import CellProgress, QueueShow, Show
from prunebench.studies.spec import RunSpec, Study

Log = Callable[[str], None]
KEY_TAG = "prunebench.run_key"


def default_out_dir(study: Study) -> Path:
    """``results/<study name>/`` under the working directory."""
    return Path.cwd() / "results" / study.name


# ---------------------------------------------------------------------------------------------------
# MLflow look-up
# ---------------------------------------------------------------------------------------------------


def _client(tracking_uri: str):
    from prunebench.harness.tracking import open_client

    return open_client(tracking_uri)


def study_runs(study: Study, tracking_uri: str, fingerprint: str | None = None) -> dict[str, list[Any]]:
    """MLflow runs of ``study`` (leaderboard runs only), grouped by run key, oldest first.

    With ``fingerprint`` (:func:`~prunebench.harness.identity.data_fingerprint`), runs tagged with another
    data fingerprint are left out (they trained on other data); runs older than the tag count."""
    from mlflow.entities import ViewType

    client = _client(tracking_uri)
    exp = client.get_experiment_by_name(study.experiment)
    if exp is None:
        return {}
    out: dict[str, list[Any]] = {}
    token = None
    flt = f"tags.`prunebench.study` = '{study.name}' and tags.`prunebench.kind` = 'leaderboard'"
    while True:
        page = client.search_runs(
            [exp.experiment_id],
            filter_string=flt,
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=1000,
            page_token=token,
        )
        for r in page:
            key = r.data.tags.get(KEY_TAG)
            fp = r.data.tags.get(FINGERPRINT_TAG)
            if key and (fingerprint is None or fp is None or fp == fingerprint):
                out.setdefault(key, []).append(r)
        token = page.token
        if not token:
            break
    for runs in out.values():
        runs.sort(key=lambda r: (r.info.start_time or 0, r.info.run_id))
    return out


def _load_row(client, run) -> dict[str, Any] | None:
    """The flat row a run logged as ``run.json`` (``None`` if it has none)."""
    with tempfile.TemporaryDirectory() as d:
        try:
            path = download_artifact(client, run.info.run_id, "run.json", d)
        except Exception:
            return None
        return json.loads(Path(path).read_text()).get("row")


def _classify(
    spec: RunSpec, runs: list[Any], client, retry_failed: bool, imported: dict[str, dict[str, Any]] | None = None
) -> tuple[str, dict | None, list[Any]]:
    """(state, row of the run that counts, leftover RUNNING runs) for one grid cell.

    state: ``done`` (a FINISHED run with a row), ``imported`` (no FINISHED run in MLflow, but a FINISHED
    row in an imported results table), ``elsewhere`` (a RUNNING run with a fresh heartbeat: another
    leaderboard trains it; see :mod:`prunebench.studies.claims`), ``failed`` (the latest attempt failed and ``retry_failed`` is off),
    ``retry`` (failed before, will run again) or ``todo``.
    """
    finished = [r for r in runs if r.info.status == "FINISHED"]
    for r in finished:
        row = _load_row(client, r)
        if row is not None:
            return "done", row, []
    running = [r for r in runs if r.info.status == "RUNNING"]
    if imported and spec.run_key in imported:
        return "imported", imported[spec.run_key], []
    if any(is_fresh(r) for r in running):  # alive in another process (another --out, another machine)
        return "elsewhere", None, []
    failed = [r for r in runs if r.info.status in ("FAILED", "KILLED")]
    if failed:
        if not retry_failed:
            row = _load_row(client, failed[-1]) or _failed_row_from_run(spec, failed[-1])
            return "failed", row, running
        return "retry", None, running
    return "todo", None, running


def _failed_row_from_run(spec: RunSpec, run) -> dict[str, Any]:
    return {
        **_minimal_row(spec),
        "run_id": run.info.run_id,
        "status": run.info.status,
        "error": run.data.tags.get("prunebench.error", ""),
    }


# ---------------------------------------------------------------------------------------------------
# executing one run (in this process or a worker process)
# ---------------------------------------------------------------------------------------------------

_DATA_CACHE: dict[tuple, Any] = {}


def _data_for(config) -> Any:
    """Load a dataset once per process (runs of a study share it; the loop never mutates it)."""
    from prunebench.datasets import load_dataset

    key = (config.dataset, config.data_dir, config.download, config.image_size)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()
        _DATA_CACHE[key] = load_dataset(
            config.dataset, config.data_dir, download=config.download, image_size=config.image_size
        )
    return _DATA_CACHE[key]


def _minimal_row(spec: RunSpec) -> dict[str, Any]:
    cfg = spec.config
    return {
        "run_id": None,
        "status": "FAILED",
        "error": "",
        "dataset": cfg.dataset,
        "model": cfg.model,
        "pruner": spec.pruner,
        "label": spec.method,
        "seed": spec.seed,
        "prune_ratio": spec.prune_ratio,
        "final_acc": float("nan"),
        "best_acc": float("nan"),
    }


def cell_name(spec: RunSpec) -> str:
    """How progress lines name a grid cell."""
    return f"{spec.method} p={spec.prune_ratio:g} seed={spec.seed}"


def execute_run(
    spec: RunSpec, show: Show | None = None, step_check: Callable[..., None] | None = None
) -> dict[str, Any]:
    """Train one grid cell; never raises for a failed run (exception, NaN loss): returns a FAILED row.

    The failed row is logged to the failed MLflow run as ``run.json`` so that it can be read back like
    a finished one. ``KeyboardInterrupt`` propagates (the loop marks the run KILLED). ``show`` receives
    the cell's progress after each epoch (:class:`~prunebench.studies.progress.CellProgress`).
    """
    from prunebench.harness.loop import Trainer

    progress = CellProgress(cell_name(spec), show) if show is not None else None
    try:
        return _execute_run(spec, progress, Trainer, step_check)
    finally:
        if progress is not None:
            progress.end()


def _execute_run(spec: RunSpec, progress, Trainer, step_check=None) -> dict[str, Any]:
    from prunebench.harness.ending import record_failure

    trainer = None
    claim = None
    try:
        data = _data_for(spec.config)
        trainer = Trainer(spec.config, data=data, progress=progress)
        if step_check is not None:  # called after every optimizer step (a pool worker's SIGTERM check)
            trainer.step_observers.append(step_check)
        if spec.config.tracking:
            claim = Claim(
                spec.config.tracking_uri,
                spec.config.experiment,
                spec.run_key,
                data_fingerprint(data),
                resumed=spec.config.resume,
            )
            trainer.on_start = claim
        row = trainer.run().row
        if spec.config.checkpoint_dir:  # finished: MLflow holds the result, the checkpoint is no longer needed
            shutil.rmtree(spec.config.checkpoint_dir, ignore_errors=True)
        return row
    except ClaimLost as e:  # another leaderboard trains (or trained) this cell: wait for its row
        return {**_minimal_row(spec), "status": ELSEWHERE, "run_id": e.other_run_id, "error": str(e)}
    except TrackingUnavailable:  # not this cell's fault: stop the leaderboard (checkpoints stay resumable)
        raise
    except Exception as e:  # the harness's failure path: a FAILED row, logged to the run as run.json
        return record_failure(e, spec.config, trainer, _minimal_row(spec), spec.method)
    finally:
        if claim is not None:
            claim.release()


def execute_cell(
    spec: RunSpec, show: Show | None = None, step_check: Callable[..., None] | None = None, log: Log | None = None
) -> dict[str, Any]:
    """:func:`execute_run` in a worker that runs a cell later or elsewhere (a Ray task, a Slurm array task):
    whether the cell's checkpoint is resumed is decided now, so a retried cell continues from its last epoch."""
    if spec.config.checkpoint_dir:
        root = Path(spec.config.checkpoint_dir).parent
        spec = with_checkpoint(
            dataclasses.replace(spec, config=spec.config.replace(resume=False)), root, log, _data_for(spec.config)
        )
    return execute_run(spec, show, step_check)


ELSEWHERE = "ELSEWHERE"  # execute_run's status for a cell another leaderboard holds (never in a table)


def _die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGTERM this worker when its parent dies (Linux ``PR_SET_PDEATHSIG``; elsewhere a
    thread polls the parent), so a leaderboard killed with kill -9 leaves no orphans: a worker marks its
    run KILLED, keeps its checkpoint and exits."""
    import signal
    import sys
    import threading

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0:
                if os.getppid() != parent_pid:  # the parent died before prctl
                    os.kill(os.getpid(), signal.SIGTERM)
                return
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="prunebench-parent-watch").start()


_IN_RUN = False  # a pool worker is inside execute_run
_PROGRESS_QUEUE: Any = None  # a pool worker's progress queue to the leaderboard (None: no progress lines)
_TERM_AT: float | None = None  # when a pool worker got SIGTERM
TERM_GRACE_S = 30.0  # then the run stops at its next optimizer step; if none comes, it is interrupted


def _worker_sigterm(signum, frame) -> None:
    """In a pool worker: SIGTERM (its parent died, or the leaderboard was terminated) ends the run in
    progress as KILLED (checkpoint kept) and then the process; an idle worker exits at once.

    The run stops at its next optimizer step (:func:`_stop_if_terminated`), not wherever the signal lands:
    an exception raised inside a half-done MLflow/SQLite write could leave the store locked and the run
    RUNNING. A run with no step for ``TERM_GRACE_S`` (a proxy run, evaluation) is interrupted then, and a
    worker still alive ``3 * TERM_GRACE_S`` after the signal exits regardless."""
    import threading

    from prunebench.errors import Terminated

    global _TERM_AT
    if not _IN_RUN:
        os._exit(143)
    if _TERM_AT is None:
        _TERM_AT = time.monotonic()
        for delay in (TERM_GRACE_S, 3 * TERM_GRACE_S):
            t = threading.Timer(
                delay, os.kill if delay == TERM_GRACE_S else (lambda *a: os._exit(143)), (os.getpid(), signum)
            )
            t.daemon = True
            t.start()
        return
    raise Terminated  # the grace period passed without an optimizer step


def _stop_if_terminated(*_: Any) -> None:
    from prunebench.errors import Terminated

    if _TERM_AT is not None:
        raise Terminated


def _pool_execute(spec: RunSpec) -> dict[str, Any]:
    """:func:`execute_run` in a pool worker; after SIGTERM the worker exits instead of waiting for work
    from a parent that may be gone."""
    from prunebench.errors import Terminated

    global _IN_RUN
    _IN_RUN = True
    try:
        show = QueueShow(_PROGRESS_QUEUE) if _PROGRESS_QUEUE is not None else None
        return execute_run(spec, show, step_check=_stop_if_terminated)
    except Terminated:
        os._exit(143)
    finally:
        _IN_RUN = False


def _worker_init(
    threads: int, parent_pid: int | None = None, queue: Any = None, slots: Any = None, plugins: tuple[str, ...] = ()
) -> None:
    import logging

    if slots is not None:  # this worker's GPU(s), set before torch can initialise CUDA
        os.environ.update(slots.get())
    import torch

    from prunebench.plugins import load_plugins

    load_plugins(plugins)  # the parent's (--plugin, the study file's): the same pruners registered here

    global _PROGRESS_QUEUE
    _PROGRESS_QUEUE = queue

    if parent_pid is not None:
        import signal

        signal.signal(signal.SIGTERM, _worker_sigterm)
        _die_with_parent(parent_pid)

    torch.set_num_threads(threads)
    for name in ("alembic", "mlflow", "optuna"):
        logging.getLogger(name).setLevel(logging.WARNING)


# ---------------------------------------------------------------------------------------------------
# the leaderboard
# ---------------------------------------------------------------------------------------------------


class _Lock:
    """An exclusive ``flock`` on ``<out>/.leaderboard.lock``: two leaderboards must not run the same cells at once.

    The kernel holds the lock, so of two leaderboards started together exactly one gets it, and a killed
    leaderboard's lock is released with its process (a leftover file is no obstacle). The file holds the
    holder's pid for the error message, and is removed on exit.
    """

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / ".leaderboard.lock"
        self._fd: int | None = None

    def __enter__(self):
        while True:
            fd = open_nofollow(self.path, os.O_RDWR | os.O_CREAT)  # a symlink there: refused, its target untouched
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip()
                os.close(fd)
                who = f"another leaderboard (pid {holder})" if holder.isdigit() else "another leaderboard"
                raise PrunebenchError(f"{who} is writing {self.path.parent}; wait for it to finish") from None
            try:  # the previous holder removes the file on exit: a lock on a file no longer there guards nothing
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)  # still holding the lock: a newcomer then sees the file gone and retries
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        return False


def read_results_table(path: str | os.PathLike) -> pd.DataFrame:
    """A results table written by an earlier leaderboard or report: ``results.parquet``/``results.csv``,
    a folder holding one (or a report folder's ``tables/runs.csv``), or any ``.csv``/``.parquet`` with
    ``run_key`` and ``status`` columns."""
    p = Path(path)
    if p.is_dir():
        cands = [p / "results.parquet", p / "results.csv", p / "tables" / "runs.csv"]
        found = [c for c in cands if c.is_file()]
        if not found:
            raise ConfigError(
                f"--import {p}: no results table there (expected one of "
                f"{', '.join(c.name if c.parent == p else 'tables/runs.csv' for c in cands)})"
            )
        p = found[0]
    elif not p.is_file():
        raise ConfigError(
            f"--import {p}: no such file or folder (a results folder, results.csv/.parquet, or a report folder)"
        )
    try:
        if p.suffix == ".parquet":
            df = pd.read_parquet(p)
        elif p.suffix == ".csv":
            df = pd.read_csv(p, dtype={"run_key": str})  # a key of digits only stays a string
        else:
            raise ConfigError(f"--import {p}: expected a .csv or .parquet results table")
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(
            f"--import {p}: unreadable results table ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:160] if str(e) else ''})"
        ) from None
    missing = [c for c in ("run_key", "status", "final_acc") if c not in df.columns]
    if missing:
        raise ConfigError(
            f"--import {p}: the table lacks column(s) {', '.join(missing)}; import a table "
            f"written by prunebench leaderboard or report"
        )
    return df


def imported_rows(
    paths, specs: list[RunSpec], fingerprint: str | None = None, aliases: dict[str, str] | None = None
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """FINISHED rows of the tables at ``paths`` whose run key is a cell of ``specs`` (the first table
    naming a key wins), and one summary line per table. Every table is validated first
    (:func:`~prunebench.studies.imports.validate_results_table`). With ``fingerprint``, a row whose
    ``data_fingerprint`` names other data is not a cell of this grid; rows without one (written before
    the column existed) are matched by their run key alone. ``aliases`` (:meth:`Study.reused_keys`) maps
    run keys of other studies' cells to this grid's cells of the same configuration: such rows are
    imported under this grid's key."""
    from prunebench.studies.imports import validate_results_table

    keys = {s.run_key for s in specs}
    aliases = {k: v for k, v in (aliases or {}).items() if v in keys}
    rows: dict[str, dict[str, Any]] = {}
    lines = []
    for path in paths or ():
        df = validate_results_table(read_results_table(path), path)
        if aliases:
            df = df.assign(run_key=[aliases.get(str(k), str(k)) for k in df["run_key"]])
        ok = df[(df["status"].astype(str) == "FINISHED") & df["run_key"].astype(str).isin(keys)]
        other = 0
        if fingerprint is not None and "data_fingerprint" in df.columns:
            fps = ok["data_fingerprint"]
            same = fps.isna() | (fps.astype(str) == fingerprint)
            other = int((~same).sum())
            ok = ok[same]
        new = 0
        for rec in ok.to_dict("records"):
            row = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()}
            row["run_key"] = str(row["run_key"])
            if row["run_key"] not in rows:
                rows[row["run_key"]] = row
                new += 1
        lines.append(
            f"{path}: {len(ok)} of its {len(df)} rows are finished cells of this grid"
            + (f" ({len(ok) - new} already imported from an earlier table)" if len(ok) > new else "")
            + (f"; {other} ran on other data (data_fingerprint) and are not imported" if other else "")
        )
    return rows, lines


def select_seeds(study: Study, seeds) -> Study:
    """``study`` restricted to ``seeds`` (a subset of its own, in the study's order); run keys unchanged."""
    if seeds is None:
        return study
    want = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise ConfigError(f"seeds must be integers, got {s!r}")
        want.append(int(s))
    bad = [s for s in want if s not in study.seeds]
    if bad or not want:
        raise ConfigError(
            f"--seeds {','.join(map(str, want)) or '(none)'}: {study.path} has seeds "
            f"{', '.join(map(str, study.seeds))}; pick one or more of them"
        )
    return dataclasses.replace(study, seeds=tuple(s for s in study.seeds if s in want))


def select_methods(study: Study, methods) -> Study:
    """``study`` restricted to the named methods (``full`` included only when named); run keys unchanged."""
    if methods is None:
        return study
    names = [str(m) for m in methods]
    valid = [m.name for m in study.methods]
    bad = [m for m in names if m not in valid]
    if bad or not names:
        raise ConfigError(
            f"--methods {','.join(names) or '(none)'}: {study.path} has no method "
            f"{', '.join(bad) or '(none given)'}; valid: {', '.join(valid)}"
        )
    return dataclasses.replace(study, methods=tuple(m for m in study.methods if m.name in names))


def plan(
    study: Study, tracking_uri: str | None = None, data_dir: str | None = None, retry_failed: bool = True, imports=None
) -> pd.DataFrame:
    """What :func:`run_leaderboard` would do: one row per grid cell with its state and MLflow run."""
    from prunebench.harness.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri or study.tracking_uri)
    specs = study.runs(**({"data_dir": data_dir} if data_dir else {}))
    imported, _ = imported_rows(imports, specs, aliases=study.reused_keys())
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).exists():
        existing = {}  # no store yet: nothing is done, and a dry run creates none
    else:
        existing = study_runs(study, uri)
    client = _client(uri) if existing else None
    rows = []
    for s in specs:
        state, row, _ = _classify(s, existing.get(s.run_key, []), client, retry_failed, imported)
        rows.append(
            {
                "method": s.method,
                "pruner": s.pruner,
                "prune_ratio": s.prune_ratio,
                "seed": s.seed,
                "run_key": s.run_key,
                "state": state,
                "run_id": (row or {}).get("run_id"),
            }
        )
    return pd.DataFrame(rows)


def run_leaderboard(
    study: Study,
    out_dir: str | Path | None = None,
    jobs: int = 1,
    dry_run: bool = False,
    *,
    tracking_uri: str | None = None,
    data_dir: str | None = None,
    retry_failed: bool = True,
    log: Log | None = None,
    seeds=None,
    methods=None,
    imports=None,
    train: bool = True,
    show: Show | None = None,
    executor: Any = None,
) -> pd.DataFrame:
    """Run the grid of ``study`` (skipping cells already FINISHED in MLflow) and write the results.

    Writes ``<out>/results.parquet`` and ``<out>/results.csv`` (one row per run: the run's flat row plus
    ``study``, ``method``, ``run_key``, ``tracking_uri``, ``experiment``), ``<out>/study.toml`` and
    ``<out>/leaderboard.csv`` (:func:`leaderboard_table`). Returns the results table; with
    ``dry_run=True`` returns :func:`plan` instead and writes nothing.

    ``jobs > 1`` trains that many runs at once in spawned processes (each with
    ``cpu_count // jobs`` torch threads). ``seeds`` keeps only those of the study's seeds, ``methods``
    only the named methods (``full`` too only when named: the table's ``drop_vs_full`` needs it); ``imports``
    are results tables whose finished cells are not run again (see the module docstring). With
    ``train=False`` nothing is trained: the tables hold the cells done so far (finished in MLflow or
    imported), e.g. to report on a grid that is still running. ``show(cell, text)`` receives each running
    cell's progress after every epoch (epoch, accuracy so far, ETA; ``text=None`` when the cell ends).
    ``executor`` (:class:`~prunebench.studies.executors.ExecutorSpec`; default: the study's ``[executor]``
    table, else local) says where cells run: this machine's pool, a Ray cluster, or Slurm job arrays.
    """
    from prunebench.harness.tracking import resolve_tracking_uri

    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs must be an integer >= 1, got {jobs!r}")
    log = log or (lambda s: None)
    study = select_methods(select_seeds(study, seeds), methods)
    uri = resolve_tracking_uri(tracking_uri or study.tracking_uri)
    if dry_run:
        return plan(study, uri, data_dir, retry_failed, imports)
    out = _out_folder(study, out_dir)
    specs = study.runs(tracking_uri=uri, **({"data_dir": data_dir} if data_dir else {}))
    # fail fast on missing data (one line, exit 2) rather than recording every cell as failed
    data = _data_for(specs[0].config)
    # bad import tables fail here
    imported, import_lines = imported_rows(imports, specs, data_fingerprint(data), aliases=study.reused_keys())
    _check_on_data(study, specs)
    from prunebench.harness.tracking import MLflowTracker

    MLflowTracker(uri, study.experiment)  # creates the store and experiment once, before any worker
    out.mkdir(parents=True, exist_ok=True)
    # tabulating trains nothing and touches no run, so it may run beside a leaderboard of the same out dir
    with _Lock(out) if train else contextlib.nullcontext():
        return _run_and_write(
            study, specs, uri, jobs, retry_failed, log, out, imported, import_lines, train, show, data, executor
        )


def _run_and_write(
    study: Study,
    specs: list,
    uri: str,
    jobs: int,
    retry_failed: bool,
    log: Log,
    out: Path,
    imported: Any,
    import_lines: list[str],
    train: bool,
    show: Show | None,
    data: Any,
    executor: Any,
) -> pd.DataFrame:
    """The locked part of :func:`run_leaderboard`: run (or, with ``train=False``, only collect) the grid's
    cells of ``specs``, write the tables into ``out`` and return the results table."""
    for line in import_lines:
        log(line)
    rows = _run_grid(
        study,
        specs,
        uri,
        jobs,
        retry_failed,
        log,
        checkpoints=out / "checkpoints",
        imported=imported,
        train=train,
        show=show,
        data=data,
        executor=executor if executor is not None else study.executor,
    )
    if not train:
        specs = [s for s in specs if s.run_key in rows]
        if not specs:
            raise PrunebenchError(
                f"{study.name}: no cell of the grid is done yet (in {uri} or the imported tables): nothing to tabulate"
            )
    results = _results_frame(study, specs, rows, uri)
    board = leaderboard_table(results, study.proxy_charge, study.baselines)
    _write_atomic(out, results, board, study)
    return results


def _out_folder(study: Study, out_dir: str | Path | None) -> Path:
    """The leaderboard's output folder (``out_dir``, else :func:`default_out_dir`); not a file."""
    out = Path(out_dir) if out_dir is not None else default_out_dir(study)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    return out


def _check_on_data(study: Study, specs: list[RunSpec]) -> None:
    """Now that N is known, build every method's pruner once (e.g. a ratio that keeps 0 samples)."""
    from prunebench.pruners import create_pruner

    n = _data_for(specs[0].config).num_train
    epochs = specs[0].config.epochs or _data_for(specs[0].config).default_epochs
    seen = set()
    for s in specs:
        if (s.method, s.prune_ratio) in seen:
            continue
        seen.add((s.method, s.prune_ratio))
        try:
            create_pruner(s.pruner, num_samples=n, num_epochs=epochs, prune_ratio=s.prune_ratio, seed=0, **s.options)
        except ConfigError as e:
            raise ConfigError(
                f"{study.path}: methods.{s.method}: at prune ratio {s.prune_ratio:g} on {s.config.dataset} (N={n}): {e}"
            ) from None


def with_checkpoint(spec: RunSpec, root: Path, log: Log | None = None, data: Any = None) -> RunSpec:
    """Give a grid cell its checkpoint folder ``<root>/<run_key>``; resume when a checkpoint is there
    (a run killed with its leaderboard continues from its last epoch, in the same MLflow run).

    A checkpoint is resumed only when it is a regular file inside ``root`` (no symlink out of it) that
    loads without running code, with every key, written by this cell's settings (and on ``data``, when
    given); anything else (torn,
    crafted, another format, a folder named ``checkpoint.pt``) is set aside as ``<run_key>.unusable-<time>``
    and the cell starts over, with one line saying so, instead of failing the cell on every re-run.
    """
    from prunebench.harness.checkpoint import checkpoint_problem

    d = root / spec.run_key
    resume = False
    if d.exists() or d.is_symlink():
        problem = checkpoint_problem(d, root, spec.config, data_identity(data) if data is not None else None)
        if problem is None:
            resume = True
        elif problem:
            aside = root / f"{spec.run_key}.unusable-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**9:09d}"
            os.rename(d, aside)  # renames a symlink itself, never what it points to
            (log or (lambda s: None))(
                f"{spec.method} p={spec.prune_ratio:g} seed={spec.seed}: {problem}; "
                f"set aside as {aside.name}, starting over"
            )
    cfg = spec.config.replace(checkpoint_dir=str(d), resume=resume)
    return dataclasses.replace(spec, config=cfg)


def _run_grid(
    study: Study,
    specs: list[RunSpec],
    uri: str,
    jobs: int,
    retry_failed: bool,
    log: Log,
    checkpoints: Path | None = None,
    imported: dict[str, dict[str, Any]] | None = None,
    train: bool = True,
    show: Show | None = None,
    data: Any = None,
    executor: Any = None,
) -> dict[str, dict[str, Any]]:
    from prunebench.studies.executors import ExecutorSpec, run_remote

    ex = executor or ExecutorSpec()
    rows, todo, elsewhere, n_imported = _sort_cells(
        study, specs, uri, retry_failed, log, checkpoints, imported, train, data
    )
    total = len(specs)
    done0 = total - len(todo) - len(elsewhere)
    log(_grid_summary(study, total, todo, elsewhere, n_imported, jobs, ex, train))
    if not train:
        return rows
    t_start = time.perf_counter()

    def report(i: int, s: RunSpec, row: dict[str, Any]) -> None:
        log(f"[{done0 + i}/{total}] {cell_name(s)}: {_cell_outcome(row)}")

    if ex.kind != "local" and todo:  # a Ray cluster or Slurm: rows come back as cells end
        for i, (s, row) in enumerate(
            run_remote(ex, todo, log, (checkpoints or Path.cwd() / "x").parent, execute_cell), 1
        ):
            rows[s.run_key] = row
            report(i, s, row)
    elif jobs == 1 or len(todo) <= 1:
        for i, s in enumerate(todo, 1):
            rows[s.run_key] = execute_run(s, show)
            report(i, s, rows[s.run_key])
    else:
        _run_pool(todo, jobs, ex, show, rows, report)
    elsewhere += [s for s in todo if rows[s.run_key].get("status") == ELSEWHERE]
    if todo:
        log(f"{study.name}: ran {len(todo)} runs in {time.perf_counter() - t_start:.1f}s")
    _await_elsewhere(study, elsewhere, uri, rows, retry_failed, log, checkpoints, imported, data)
    return rows


def _sort_cells(
    study: Study,
    specs: list[RunSpec],
    uri: str,
    retry_failed: bool,
    log: Log,
    checkpoints: Path | None,
    imported: dict[str, dict[str, Any]] | None,
    train: bool,
    data: Any,
) -> tuple[dict[str, dict[str, Any]], list[RunSpec], list[RunSpec], int]:
    """Sort the grid's cells by their state in MLflow (and the imported tables): the rows of the done
    ones, the cells to run here (with their checkpoint folders), the cells another leaderboard trains,
    and how many were imported."""
    client = _client(uri)
    existing = study_runs(study, uri, data_fingerprint(data) if data is not None else None)
    rows: dict[str, dict[str, Any]] = {}
    todo: list[RunSpec] = []
    elsewhere: list[RunSpec] = []
    n_imported = 0
    for s in specs:
        state, row, running = _classify(s, existing.get(s.run_key, []), client, retry_failed, imported)
        n_imported += state == "imported"
        if train:  # leftovers of a killed leaderboard, heartbeat stale (when tabulating, leave them)
            _abandon(client, running)
        if row is not None:
            rows[s.run_key] = row
        elif state == "elsewhere":
            elsewhere.append(s)
        else:
            todo.append(with_checkpoint(s, checkpoints, log, data) if checkpoints is not None else s)
    return rows, todo, elsewhere, n_imported


def _grid_summary(
    study: Study,
    total: int,
    todo: list[RunSpec],
    elsewhere: list[RunSpec],
    n_imported: int,
    jobs: int,
    ex: Any,
    train: bool,
) -> str:
    """The one line that says what a leaderboard is about to do."""
    resumed = sum(s.config.resume for s in todo)
    done0 = total - len(todo) - len(elsewhere)
    return (
        f"{study.name}: {total} runs, {done0 - n_imported} already in MLflow, "
        + (f"{n_imported} imported, " if n_imported else "")
        + f"{len(todo)} to run"
        + (f", {len(elsewhere)} running in another leaderboard" if elsewhere else "")
        + (f" ({resumed} from their checkpoints)" if resumed else "")
        + (f" ({jobs} at a time)" if jobs > 1 and todo and ex.kind == "local" else "")
        + (f" on {ex.describe()}" if ex.kind != "local" and todo else "")
        + ("; tabulating the done ones, training nothing" if not train else "")
    )


def _cell_outcome(row: dict[str, Any]) -> str:
    """How a cell ended, for its progress line."""
    if row.get("status") == "FINISHED":
        return (
            f"acc {row['final_acc']:.4f}  compute {row.get('relative_compute', float('nan')):.3f}  "
            f"{row.get('train_time_s', float('nan')):.1f}s"
        )
    if row.get("status") == ELSEWHERE:
        return f"another leaderboard trains it ({row.get('error', '')}); waiting for it"
    return f"FAILED: {row.get('error', '')}"


def _gpu_slots(ctx: Any, todo: list[RunSpec], jobs: int, ex: Any) -> Any:
    """A queue of each pool worker's CUDA_VISIBLE_DEVICES (executors.local_slots), taken once at its
    start; None when the cells use no GPU."""
    from prunebench.studies.executors import local_slots, visible_gpus

    gpus = ex.gpus if ex.gpus is not None else visible_gpus()
    per_run = (
        ex.gpus_per_run
        if ex.gpus_per_run is not None
        else (1.0 if todo[0].config.device == "cuda" or (todo[0].config.device == "auto" and gpus) else 0.0)
    )
    envs = local_slots(jobs, per_run, gpus)
    if envs is None:
        return None
    slots = ctx.Queue()
    for env in envs:
        slots.put(env)
    return slots


def _run_pool(
    todo: list[RunSpec],
    jobs: int,
    ex: Any,
    show: Show | None,
    rows: dict[str, dict[str, Any]],
    report: Callable[[int, RunSpec, dict[str, Any]], None],
) -> None:
    """Train ``todo`` on ``jobs`` spawned worker processes of this machine, filling ``rows``."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    ctx = multiprocessing.get_context("spawn")
    # workers' progress comes back on a queue handed to them at start (no manager process, which
    # would outlive a leaderboard killed with kill -9)
    queue = ctx.Queue() if show is not None else None
    slots = _gpu_slots(ctx, todo, jobs, ex)

    def drain() -> None:
        while queue is not None and show is not None:
            try:
                cell, text = queue.get_nowait()
            except Exception:
                return
            show(cell, text)

    try:
        with cf.ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=ctx,
            initializer=_worker_init,
            initargs=(threads, os.getpid(), queue, slots, tuple(loaded_plugins())),
        ) as pool:
            futures = {pool.submit(_pool_execute, s): s for s in todo}
            try:
                _collect(pool, futures, drain, show, rows, report)
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: workers mark their runs KILLED and exit
                pool.shutdown(wait=False, cancel_futures=True)
                for child in multiprocessing.active_children():
                    child.terminate()
                raise
    finally:
        drain()
        if queue is not None:
            queue.close()


def _collect(
    pool: cf.ProcessPoolExecutor,
    futures: dict[cf.Future, RunSpec],
    drain: Callable[[], None],
    show: Show | None,
    rows: dict[str, dict[str, Any]],
    report: Callable[[int, RunSpec, dict[str, Any]], None],
) -> None:
    """Take the pool's rows as its cells end (a worker that died gives its cell a failed row)."""
    pending, i = set(futures), 0
    while pending:
        done, pending = cf.wait(pending, timeout=0.5, return_when=cf.FIRST_COMPLETED)
        drain()
        for fut in done:
            i += 1
            s = futures[fut]
            try:
                rows[s.run_key] = fut.result()
            except TrackingUnavailable:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            except Exception as e:  # the worker process itself died
                rows[s.run_key] = {**_minimal_row(s), "error": f"{type(e).__name__}: {e}"}
                if show is not None:
                    show(cell_name(s), None)
            report(i, s, rows[s.run_key])


def _abandon(client, running: list[Any]) -> None:
    """Mark RUNNING runs whose process is gone (stale heartbeat) KILLED, so they are redone."""
    for r in running:
        try:
            client.set_tag(r.info.run_id, "prunebench.error", "abandoned: its process stopped (stale heartbeat)")
            client.set_terminated(r.info.run_id, status="KILLED")
        except Exception:
            pass


def _await_elsewhere(
    study: Study,
    waiting: list[RunSpec],
    uri: str,
    rows: dict[str, dict[str, Any]],
    retry_failed: bool,
    log: Log,
    checkpoints: Path | None,
    imported,
    data,
) -> None:
    """Wait for the cells another leaderboard trains; take their rows, or train a cell here when its
    other run stopped (stale heartbeat) or failed."""
    pending = {s.run_key: s for s in waiting}
    if pending:
        log(f"{study.name}: waiting for {len(pending)} runs that another leaderboard is training on {uri}")
    fp = data_fingerprint(data) if data is not None else None
    while pending:
        time.sleep(max(0.5, min(5.0, heartbeat_s() / 2)))
        client = _client(uri)
        existing = study_runs(study, uri, fp)
        for key, s in list(pending.items()):
            state, row, running = _classify(s, existing.get(key, []), client, retry_failed, imported)
            if state == "elsewhere":
                continue
            _abandon(client, running)
            if row is None:
                row = execute_run(with_checkpoint(s, checkpoints, log, data) if checkpoints is not None else s)
                if row.get("status") == ELSEWHERE:
                    continue
            del pending[key]
            rows[key] = row
            log(
                f"{s.method} p={s.prune_ratio:g} seed={s.seed}: "
                + (
                    f"acc {row['final_acc']:.4f} (trained by another leaderboard)"
                    if row.get("status") == "FINISHED"
                    else f"{row.get('status')}: {row.get('error', '')}"
                )
            )


def _results_frame(study: Study, specs: list[RunSpec], rows: dict[str, dict[str, Any]], uri: str) -> pd.DataFrame:
    records = []
    for s in specs:
        row = dict(rows[s.run_key])
        # an imported row keeps the store it ran in (its own tracking_uri and experiment)
        row.update(
            study=study.name,
            method=s.method,
            run_key=s.run_key,
            tracking_uri=row.get("tracking_uri") or uri,
            experiment=row.get("experiment") or study.experiment,
        )
        # the grid's own values win (a row read back from MLflow carries the same ones)
        row.update(pruner=s.pruner, prune_ratio=s.prune_ratio, seed=s.seed)
        records.append(row)
    df = pd.DataFrame.from_records(records)
    first = [
        "study",
        "method",
        "pruner",
        "prune_ratio",
        "seed",
        "status",
        "final_acc",
        "best_acc",
        "relative_compute",
        "realized_prune_ratio",
        "train_time_s",
        "run_key",
        "run_id",
        "error",
    ]
    cols = [c for c in first if c in df.columns] + [c for c in df.columns if c not in first]
    return df[cols]


def _write_atomic(out: Path, results: pd.DataFrame, board: pd.DataFrame, study: Study) -> None:
    """Write to temporary names, then rename: a kill never leaves a half-written table behind."""
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=".tmp-"))  # a folder of its own: writers never share one
    try:
        parquet = results.copy()
        for c in parquet.columns:  # mixed-type object columns (e.g. None and str) as strings for parquet
            if parquet[c].dtype == object:
                vals = parquet[c].dropna()
                if not vals.map(lambda v: isinstance(v, str)).all():
                    parquet[c] = parquet[c].map(
                        lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
                    )
        parquet.to_parquet(tmp / "results.parquet", index=False)
        results.to_csv(tmp / "results.csv", index=False)
        board.to_csv(tmp / "leaderboard.csv", index=False)
        (tmp / "study.toml").write_text(study.source)
        for name in ("study.toml", "results.parquet", "results.csv", "leaderboard.csv"):
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------
# ranking
# ---------------------------------------------------------------------------------------------------


def leaderboard_table(
    results: pd.DataFrame, proxy_charge: str = "full", baselines: dict[str, str] | None = None
) -> pd.DataFrame:
    """Rank methods per prune ratio by mean final accuracy over seeds (FINISHED runs only), with the cost
    model and the paired statistics of :mod:`prunebench.reports.stats` (the report's table, plus counts).

    Columns: ``prune_ratio``, ``rank`` (1 = best within the ratio; ``full`` alone at ratio 0, unranked),
    ``method``, ``pruner``, ``n_seeds``, ``n_failed``, ``acc_mean``, ``acc_std`` (sample std),
    ``acc_ci95`` (half-width of the t-based 95% interval of the mean: ``t(0.975, n-1) * std / sqrt(n)``,
    NaN for one seed), ``vs_full_mean`` / ``vs_full_ci_low`` / ``vs_full_ci_high`` / ``vs_full_verdict``
    (paired by seed: method - full, positive = better), the same ``vs_baseline_*`` against ``baseline``
    (the study's baseline of the method's family), ``tied_with_leader``, ``realized_prune_ratio``,
    ``total_compute`` (training + scoring), ``compute_saved`` (``1 - total_compute``),
    ``train_compute_saved`` (training only), ``total_cost_s`` and ``time_saved`` (``1 - total_cost_s /
    full's`` on the same seeds), ``pareto``, and the rest of
    :func:`prunebench.reports.tables.leaderboard_table`'s columns. ``proxy_charge`` and ``baselines``:
    the study's ``[study]`` options (see :func:`prunebench.reports.stats.with_costs`).
    """
    if "epochs" in results.columns and results["epochs"].nunique() > 1:  # a budget axis: one board per budget
        boards = [
            leaderboard_table(part, proxy_charge, baselines).assign(epochs=int(e))
            for e, part in results.groupby("epochs", sort=True)
        ]
        board = pd.concat(boards, ignore_index=True)
        return board[["epochs", *[c for c in board.columns if c != "epochs"]]]
    from prunebench.reports.stats import PROXY_CHARGES
    from prunebench.reports.tables import leaderboard_table as report_table

    need = {"method", "prune_ratio", "status", "final_acc"}
    missing = need - set(results.columns)
    if missing:
        raise ConfigError(f"results table lacks column(s) {', '.join(sorted(missing))}")
    if proxy_charge not in PROXY_CHARGES:
        raise ConfigError(f"proxy_charge {proxy_charge!r} is not valid; valid: {', '.join(PROXY_CHARGES)}")
    df = results.copy()
    df["pruner"] = df["pruner"] if "pruner" in df.columns else df["method"]
    for c in ("seed", "best_acc", "realized_prune_ratio", "relative_compute", "train_time_s"):
        if c not in df.columns:
            df[c] = np.nan
    board = report_table(df, proxy_charge, baselines)
    counts = df.groupby(["method", "prune_ratio"]).size().rename("n_runs").reset_index()
    board = board.merge(counts, on=["method", "prune_ratio"], how="left")
    failed = df[df["status"] != "FINISHED"].groupby(["method", "prune_ratio"]).size()
    missing_cells = [k for k in failed.index if not ((board["method"] == k[0]) & (board["prune_ratio"] == k[1])).any()]
    if missing_cells:  # cells whose every run failed: listed, unranked
        board = pd.concat(
            [
                board,
                pd.DataFrame(
                    [{"method": m, "prune_ratio": p, "n_seeds": 0, "n_runs": failed[(m, p)]} for m, p in missing_cells]
                ),
            ],
            ignore_index=True,
        )
    board["n_failed"] = (board["n_runs"] - board["n_seeds"]).fillna(0).astype(int)
    board["acc_ci95"] = board["acc_ci_high"] - board["acc_mean"]
    board["time_saved"] = board["wallclock_saved"]
    first = ["prune_ratio", "rank", "method", "pruner", "n_seeds", "n_failed", "acc_mean", "acc_std", "acc_ci95"]
    rest = [c for c in board.columns if c not in first and c not in ("n_runs",)]
    return board[first + rest].reset_index(drop=True)


def _pct(v: float, nd: int = 2) -> str:
    return "-" if v is None or pd.isna(v) else f"{100 * v:.{nd}f}"


def _leaderboard_line(r: pd.Series, budgets: bool) -> list[str]:
    """The cells of one row ``r`` in :func:`format_leaderboard` (``budgets``: an epochs column first)."""
    from prunebench.reports.stats import format_diff

    seeds = f"{r['n_seeds']}" + (f" ({r['n_failed']} failed)" if r["n_failed"] else "")
    tied = not pd.isna(r["tied_with_leader"]) and bool(r["tied_with_leader"])
    rank = "-" if pd.isna(r["rank"]) else f"{int(r['rank'])}" + ("=" if tied and r["rank"] > 1 else "")
    base = (
        "-"
        if pd.isna(r.get("vs_baseline_mean"))
        else f"{format_diff(r['vs_baseline_mean'], r['vs_baseline_ci_low'], r['vs_baseline_ci_high'], r['vs_baseline_n_pairs'], r['vs_baseline_verdict'])} ({r['baseline']})"
    )
    full = (
        "-"
        if pd.isna(r.get("vs_full_mean"))
        else format_diff(
            r["vs_full_mean"], r["vs_full_ci_low"], r["vs_full_ci_high"], r["vs_full_n_pairs"], r["vs_full_verdict"]
        )
    )
    return [
        *([f"{int(r['epochs'])}"] if budgets else []),
        f"{r['prune_ratio']:g}",
        rank,
        r["method"],
        seeds,
        _pct(r["acc_mean"]),
        _pct(r["acc_ci95"]),
        full,
        base,
        _pct(r["compute_saved"], 1),
        _pct(r["train_compute_saved"], 1),
        "-" if pd.isna(r["total_cost_s"]) else f"{r['total_cost_s']:.1f}",
    ]


def format_leaderboard(board: pd.DataFrame) -> str:
    """The ranked table as aligned text (accuracies, differences and savings in percent), in the report's
    order, with a legend: differences are method - reference (positive = better), paired by seed."""
    from prunebench.reports.stats import COST_DEFINITION

    budgets = "epochs" in board.columns
    head = [
        *(["epochs"] if budgets else []),
        "p",
        "#",
        "method",
        "seeds",
        "acc %",
        "± ci95",
        "vs full pp [95% CI]",
        "vs baseline pp [95% CI]",
        "saved %",
        "train-only %",
        "cost s",
    ]
    lines = [_leaderboard_line(r, budgets) for _, r in board.iterrows()]
    widths = [max(len(h), *(len(row[i]) for row in lines)) if lines else len(h) for i, h in enumerate(head)]
    left = {i + budgets for i in (2, 3, 6, 7)}
    fmt = lambda cells: "  ".join(
        c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
    )
    rule = "  ".join("-" * w for w in widths)
    legend = [
        "",
        "# = rank by mean top-1 within the ratio; '=' = not distinguishable from rank 1 (paired by seed, "
        "95% t interval of the difference contains 0).",
        "vs full / vs baseline: method - reference in percentage points, paired by seed (positive = better), "
        "95% t interval, verdict better / worse / n.d. (not distinguishable); (n=2): fewer than 3 seeds paired.",
        f"saved % = 1 - total compute. {COST_DEFINITION} train-only % leaves the scoring out; cost s = total "
        f"seconds (mean over seeds).",
    ]
    return "\n".join([fmt(head), rule, *(fmt(l) for l in lines), *legend])
