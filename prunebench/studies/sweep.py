"""Sweeps declared in a study file: a pruner, a space over its declared options and the prune ratio.

``[sweeps.NAME]`` names a pruner, fixed ``options``, a fixed ``prune_ratio`` or a ``space.prune_ratio``
axis, and a ``space`` over any of the pruner's options (its Options dataclass fields). Two kinds:

* ``accuracy`` — the mean final accuracy over the sweep's seeds (e.g. OrderDP's candidate/top-q split at
  a fixed budget, the OrderDP paper's Figure 4; InfoBatch's ``delta``; UCB's ``c``);
* ``pareto`` — accuracy against total relative compute (training + scoring, the leaderboard's cost axis).

Samplers. ``grid`` (the default for a one-dimensional space, or when every axis lists values or points)
runs every point x seed as a leaderboard cell of a derived study (``<study>`` with one method per point,
named ``<sweep>[axis=value,...]``, plus ``full``): each cell has a stable run key, so a killed sweep
resumes where it stopped, finished cells are never retrained, and ``full`` is shared with the study's
leaderboard when both use one MLflow store. ``tpe``, ``random`` and ``nsga2`` are Optuna samplers over
the space's ranges: the Optuna study lives in RDB storage (``--storage``, else the file's ``storage``,
else ``sqlite:///<sweep folder>/optuna.db``), so a killed sweep resumes and several workers can join one
study; workers stop once the study holds ``n_trials`` finished (complete or early-stopped) trials. Optuna
sweeps train no ``full`` reference themselves (workers may share one study from several machines): its
runs are included when the MLflow store (the study's leaderboard) or an imported table has them.

A relative axis (``{ low = 0, high = 1, relative = true }``) searches an option by its position in the
range the pruner declares for it at the run's prune ratio (``Pruner.option_range``): OrderDP's split
``candidate_ratio = 1 - p + u p`` for ``u`` in ``[0, 1]``, without OrderDP-specific code here.

Optuna's trial pruning is called *early stopping of trials* here (data pruning is what prunebench
measures); it is off unless the sweep sets ``early_stopping = true`` (median pruner on the test accuracy
at the same epoch of the same seed, i.e. at equal progress of the schedule; no trial is stopped before
``early_stopping_warmup`` of its run). Early-stopped trials never count as "best": they are listed, and a
warning says when fewer trials completed than were asked.

Every sweep writes ``<out>/sweeps/<name>/``: ``results.csv`` (one row per run, ``full`` included, with
the columns ``sweep``, ``point``, ``axis.<axis>``; the report reads this), ``points.csv`` (per point: mean,
95% CI, paired comparison with the best), ``sweep.json`` (the spec) and, for Optuna, ``trials.csv``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from prunebench.errors import ConfigError, PrunebenchError
from prunebench.harness.checkpoint import atomic_write
from prunebench.seeding import derive_seed
from prunebench.studies.spec import REFERENCE, MethodSpec, Study, SweepSpec, full_options

Log = Callable[[str], None]
PARENT_TAG = "mlflow.parentRunId"
HEARTBEAT_S = 10  # Optuna heartbeat of a running trial; a trial silent for GRACE_S is marked failed
GRACE_S = 60


def _schema_lock(url: str):
    """A fresh SQLite storage gets its schema from one worker at a time (``<db>.lock`` beside it)."""
    import contextlib

    from prunebench.safety import file_lock

    return file_lock(url[len("sqlite:///") :] + ".lock") if url.startswith("sqlite:///") else contextlib.nullcontext()


def _storage(url: str):
    import optuna

    if url.startswith(("postgresql", "postgres")):
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            raise ConfigError(
                f"storage {url.split('@')[-1]!r} needs the PostgreSQL driver: "
                "pip install 'prunebench[postgres]' (psycopg2-binary)"
            ) from None
    if url.startswith("sqlite:///"):
        folder = Path(url[len("sqlite:///") :]).parent
        if not folder.is_dir():
            raise ConfigError(f"storage {url}: folder {folder} does not exist")
    last: Exception | None = None
    for attempt in range(5):  # workers starting together may race to create the schema
        try:
            with warnings.catch_warnings(), _schema_lock(url):  # heartbeats are "experimental" in Optuna since 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S, engine_kwargs={"pool_pre_ping": True}
                )
        except Exception as e:  # noqa: PERF203
            last = e
            time.sleep(0.5 + attempt)
    msg = str(last).splitlines()[0][:300] if last else ""
    raise PrunebenchError(f"Optuna storage {_redact(url)} is unusable: {msg}")


def _redact(url: str) -> str:
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, _, _ = head.partition("://")
    return f"{scheme}://***@{tail}"


def _sampler(sweep: SweepSpec):
    import optuna

    # the sampler's seed mixes the file's seed with this worker's identity: workers joining one study
    # must not propose the same points
    seed = derive_seed(sweep.seed, f"optuna/{sweep.study_name}/{socket.gethostname()}/{os.getpid()}") % (2**32)
    if sweep.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if sweep.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, multivariate=sweep.kind == "pareto")


def _pruner(sweep: SweepSpec, early_stopping: bool):
    import optuna

    if not early_stopping:
        return optuna.pruners.NopPruner()
    # warm-up is applied per run by the objective (a fraction of each seed's schedule), not here
    return optuna.pruners.MedianPruner(n_startup_trials=sweep.early_stopping_startup_trials, n_warmup_steps=0)


def pick_sweep(study: Study, name: str | None) -> SweepSpec:
    if not study.sweeps:
        raise ConfigError(f"{study.path}: sweeps: the study declares no [sweeps.NAME] table")
    if name is None:
        if len(study.sweeps) > 1:
            raise ConfigError(f"{study.path}: sweeps: several sweeps declared; choose one of {', '.join(study.sweeps)}")
        return next(iter(study.sweeps.values()))
    if name not in study.sweeps:
        raise ConfigError(f"{study.path}: sweeps.{name}: no such sweep; valid: {', '.join(study.sweeps)}")
    return study.sweeps[name]


def _finished_count(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)))


@dataclasses.dataclass
class SweepResult:
    """What a sweep leaves: its runs (one row per point x seed, ``full`` included), the per-point summary,
    the Optuna trials (``None`` for a grid) and warnings (e.g. fewer trials completed than asked)."""

    spec: SweepSpec
    folder: Path
    results: pd.DataFrame
    points: pd.DataFrame
    trials: pd.DataFrame | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)


def sweep_folder(out: Path, spec: SweepSpec) -> Path:
    return out / "sweeps" / spec.name


def _same_options(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a.keys() != b.keys():
        return False
    for k, va in a.items():
        vb = b[k]
        if isinstance(va, float) or isinstance(vb, float):
            try:
                if not math.isclose(float(va), float(vb), rel_tol=0, abs_tol=1e-9):
                    return False
            except (TypeError, ValueError):
                return False
        elif va != vb:
            return False
    return True


def point_methods(study: Study, spec: SweepSpec, points: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Method name -> grid point. A point that IS a cell of one of the study's own methods (same pruner, same
    options once defaults are filled in, its prune ratio among the method's) takes that method's name, so its
    run keys are the leaderboard's and its finished runs (in the store or ``--import``-ed) are not trained
    again; any other point is named by :meth:`SweepSpec.label`."""
    names: dict[str, dict[str, Any]] = {}
    for pt in points:
        p, opts = spec.resolve(pt)
        full = full_options(spec.pruner, opts)
        same = [
            m
            for m in study.methods
            if m.name != REFERENCE
            and m.pruner == spec.pruner
            and any(math.isclose(p, q, abs_tol=1e-9) for q in m.prune_ratios)
            and _same_options(full_options(m.pruner, m.options), full)
        ]
        name = same[0].name if same else spec.label(pt)
        if name in names:  # two points are one cell of the study (cannot happen for a grid of distinct points)
            name = spec.label(pt)
        names[name] = pt
    return names


def sweep_study(study: Study, spec: SweepSpec, points: list[dict[str, Any]] | None = None) -> Study:
    """The leaderboard study of a grid sweep: ``full`` plus one method per point, on the sweep's seeds.

    The study name and recipe are the study's own, so ``full``'s run keys are the leaderboard's, and so are
    those of a point that is one of the study's own cells (:func:`point_methods`)."""
    methods = [m for m in study.methods if m.name == REFERENCE]
    for name, pt in point_methods(study, spec, points or []).items():
        p, opts = spec.resolve(pt)
        own = next((m for m in study.methods if m.name == name), None)
        methods.append(MethodSpec(name, spec.pruner, dict(own.options) if own else opts, (p,)))
    return dataclasses.replace(study, methods=tuple(methods), seeds=spec.seeds, sweeps={})


def run_sweep(
    study: Study,
    storage: str | None = None,
    n_trials: int | None = None,
    *,
    sweep: str | None = None,
    out_dir: str | Path | None = None,
    tracking_uri: str | None = None,
    data_dir: str | None = None,
    early_stopping: bool | None = None,
    log: Log | None = None,
    jobs: int = 1,
    imports=None,
    train: bool = True,
    show=None,
    executor=None,
) -> SweepResult:
    """Run (or resume, or join) one sweep of ``study``; returns a :class:`SweepResult`.

    Writes ``<out>/sweeps/<name>/`` (``out``: ``out_dir``, else ``results/<study>/``). ``storage``,
    ``n_trials`` and ``early_stopping`` apply to Optuna samplers; ``jobs`` and ``imports`` (results tables
    whose finished cells count as done, e.g. the study's leaderboard for ``full``) to grids and to the
    ``full`` reference of every sweep; ``executor`` (an :class:`~prunebench.studies.executors.ExecutorSpec`,
    default the study's ``[executor]``) to grids: Optuna sweeps scale out by starting ``prunebench sweep``
    workers on each machine with one shared ``--storage``. ``train=False`` trains nothing: the tables hold what is done so far
    (e.g. to report on a sweep that is still running).
    """
    from prunebench.studies.leaderboard import default_out_dir, run_leaderboard

    spec = pick_sweep(study, sweep)
    log = log or (lambda s: None)
    early = spec.early_stopping if early_stopping is None else bool(early_stopping)
    ex = executor if executor is not None else study.executor
    _check_sweep_run(study, spec, n_trials, early, ex, train)
    out = sweep_folder(Path(out_dir) if out_dir is not None else default_out_dir(study), spec)
    out.mkdir(parents=True, exist_ok=True)
    if spec.sampler == "grid":
        pts = spec.grid()
        log(
            f"{study.name}/{spec.name}: grid sweep of {spec.pruner}, {len(pts)} points x {len(spec.seeds)} seeds (+ full)"
        )
        res = run_leaderboard(
            sweep_study(study, spec, pts),
            out,
            jobs=jobs,
            tracking_uri=tracking_uri,
            data_dir=data_dir,
            log=log,
            imports=imports,
            train=train,
            show=show,
            executor=ex,
        )
        trials = None
        warns: list[str] = []
    else:
        trials, res, warns = _optuna_sweep(
            study, spec, out, storage, n_trials, tracking_uri, data_dir, early, log, imports, train, show
        )
    return _write_sweep(out, spec, annotate(res, spec, study), trials, warns)


def _optuna_sweep(
    study: Study,
    spec: SweepSpec,
    out: Path,
    storage: str | None,
    n_trials: int | None,
    tracking_uri: str | None,
    data_dir: str | None,
    early: bool,
    log: Log,
    imports: Any,
    train: bool,
    show: Any,
) -> tuple[Any, pd.DataFrame, list[str]]:
    """The Optuna branch of :func:`run_sweep`: (trials, result rows with full data's, warnings)."""
    from prunebench.studies.leaderboard import run_leaderboard

    # full data as the reference when the store (or an imported table) already holds it: Optuna workers
    # may run on several machines at once, so they do not train it themselves
    try:
        ref = run_leaderboard(
            sweep_study(study, spec),
            out,
            tracking_uri=tracking_uri,
            data_dir=data_dir,
            log=log,
            imports=imports,
            train=False,
        )
    except PrunebenchError:
        ref = pd.DataFrame()
    trials, rows, warns = _run_optuna(
        study, spec, out, storage, n_trials, tracking_uri, data_dir, early, log, train, show
    )
    res = pd.concat([ref, pd.DataFrame(rows)], ignore_index=True) if rows else ref
    if res.empty:
        res = pd.DataFrame(columns=["method", "seed", "status", "final_acc", "relative_compute"])
    return trials, res, warns


def _check_sweep_run(study: Study, spec: SweepSpec, n_trials: int | None, early: bool, ex: Any, train: bool) -> None:
    """Refuse settings the sweep cannot honour (one line each)."""
    if n_trials is not None and (isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1):
        raise ConfigError(f"n_trials must be an integer >= 1, got {n_trials!r}")
    if early and spec.kind == "pareto":
        raise ConfigError(
            f"{study.path}: sweeps.{spec.name}: early stopping of trials needs one objective; a pareto sweep has two"
        )
    if early and spec.sampler == "grid":
        raise ConfigError(
            f"{study.path}: sweeps.{spec.name}: a grid sweep runs every point to the end; early "
            "stopping of trials needs an Optuna sampler"
        )
    if spec.sampler != "grid" and ex is not None and ex.kind != "local" and train:
        raise ConfigError(
            f"{study.path}: sweeps.{spec.name}: executor {ex.kind} runs grid sweeps; an Optuna sweep "
            f"({spec.sampler}) scales out by starting `prunebench sweep` workers on several machines "
            f"with one shared --storage (e.g. inside `srun` or a Ray task)"
        )


def _write_sweep(
    out: Path, spec: SweepSpec, results: pd.DataFrame, trials: pd.DataFrame | None, warns: list[str]
) -> SweepResult:
    """Write the sweep's tables (``results.csv``, ``points.csv``, ``trials.csv``, ``sweep.json``) atomically."""
    from prunebench.reports import sweeps as sweep_stats

    pts_table = sweep_stats.point_table(results, spec.kind)
    atomic_write(out / "results.csv", lambda t: results.to_csv(t, index=False))
    atomic_write(out / "points.csv", lambda t: pts_table.to_csv(t, index=False))
    if trials is not None:
        atomic_write(out / "trials.csv", lambda t: trials.to_csv(t, index=False))
    atomic_write(out / "sweep.json", lambda t: Path(t).write_text(json.dumps(spec_dict(spec), indent=1)))
    return SweepResult(spec, out, results, pts_table, trials, warns)


def spec_dict(spec: SweepSpec) -> dict[str, Any]:
    d = dataclasses.asdict(spec)
    d["storage"] = _redact(spec.storage) if spec.storage else None
    return d


def annotate(results: pd.DataFrame, spec: SweepSpec, study: Study | None = None) -> pd.DataFrame:
    """The sweep's columns on a results table: ``sweep``, ``point`` (the method name; ``full`` for the
    reference) and ``axis.<axis column>`` (the point's value on each axis, as searched)."""
    df = results.copy()
    df["sweep"] = spec.name
    df["kind"] = spec.kind
    df["point"] = df["method"]
    cols = [f"axis.{a.column}" for a in spec.axes]
    for c in cols:
        if c not in df.columns:
            df[c] = np.nan
    labels = {}
    if spec.sampler == "grid":
        labels = {spec.label(pt): pt for pt in spec.grid()}
        if study is not None:
            labels.update(point_methods(study, spec, spec.grid()))
    for i, m in df["method"].items():
        pt = labels.get(m)
        if pt is not None:
            for a in spec.axes:
                df.at[i, f"axis.{a.column}"] = pt[a.name]
    return df


def _run_optuna(
    study: Study,
    spec: SweepSpec,
    out: Path,
    storage: str | None,
    n_trials: int | None,
    tracking_uri: str | None,
    data_dir: str | None,
    early: bool,
    log: Log,
    train: bool = True,
    show=None,
):
    from prunebench.harness.tracking import MLflowTracker, resolve_tracking_uri
    from prunebench.reports import sweeps as sweep_stats
    from prunebench.studies.leaderboard import _data_for

    target = n_trials or spec.n_trials
    url = storage or spec.storage or f"sqlite:///{(out / 'optuna.db').resolve()}"
    uri = resolve_tracking_uri(tracking_uri or study.tracking_uri)
    base = study.base_config(tracking_uri=uri, **({"data_dir": data_dir} if data_dir else {}))
    data = _data_for(base)
    epochs = base.epochs or data.default_epochs

    ostudy, creator = _open_study(spec, url, early)
    tracker = MLflowTracker(uri, study.experiment)
    parent = _sweep_run(ostudy, creator, tracker, study, spec, url, early, target)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    log(
        f"{study.name}/{spec.name}: {spec.kind} sweep ({spec.sampler}), study {spec.study_name!r} in {_redact(url)}; "
        f"{len(ostudy.trials)} trials so far, target {target} finished; early stopping of trials "
        f"{'on' if early else 'off'}"
    )

    def objective(trial):
        return _objective(trial, study, spec, base, data, epochs, tracker.uri, parent, early, worker, log, show)

    t0 = time.perf_counter()
    ran = _optimize(ostudy, objective, spec, target, worker) if train else 0
    if not train:
        _fail_stale(ostudy)  # the tables then count a dead worker's trial as failed, as a run would
    log(
        f"{study.name}/{spec.name}: this worker ran {ran} trials in {time.perf_counter() - t0:.1f}s; "
        f"the study holds {len(ostudy.trials)} trials"
    )
    trials = trials_table(ostudy, spec)
    book = sweep_stats.trial_bookkeeping(trials, target)
    rows = _completed_rows(ostudy, study, spec)
    _close_sweep_run(tracker, parent, book)
    return trials, rows, book["warnings"]


def _completed_rows(ostudy: Any, study: Study, spec: SweepSpec) -> list[dict[str, Any]]:
    """One result row per run of each completed trial of the Optuna study ``ostudy``."""
    rows = []
    for t in ostudy.get_trials(deepcopy=False):
        if t.state.name != "COMPLETE":
            continue  # early-stopped and failed trials are listed in trials.csv, never in the results
        pt = _trial_point(t, spec)
        for r in t.user_attrs.get("runs", []):
            rows.append(
                {
                    **r,
                    "study": study.name,
                    "method": spec.label(pt),
                    "pruner": spec.pruner,
                    "status": "FINISHED",
                    "trial": t.number,
                    **{f"axis.{a.column}": pt[a.name] for a in spec.axes},
                }
            )
    return rows


def _close_sweep_run(tracker: Any, parent: str, book: dict[str, Any]) -> None:
    """Log the trial counts on the sweep's parent MLflow run and end it (best effort)."""
    tracker.run_id = parent
    try:
        tracker.log_metrics(
            {
                "trials_complete": len(book["complete"]),
                "trials_early_stopped": len(book["stopped"]),
                "trials_failed": len(book["failed"]),
            }
        )
        tracker.client.set_terminated(parent, status="FINISHED")
    except Exception:
        pass


def _open_study(spec: SweepSpec, url: str, early: bool):
    """The Optuna study of ``spec`` in the storage ``url``, created by exactly one worker: (study, created)."""
    import optuna

    directions: list[Literal["minimize", "maximize"]] = (
        ["maximize"] if spec.kind == "accuracy" else ["maximize", "minimize"]
    )
    rdb = _storage(url)
    ostudy: optuna.Study | None = None
    creator = False
    for attempt in range(5):
        try:  # the storage's unique study name makes exactly one worker the creator
            ostudy = optuna.create_study(
                storage=rdb,
                study_name=spec.study_name,
                directions=directions,
                sampler=_sampler(spec),
                pruner=_pruner(spec, early),
            )
            creator = True
            break
        except optuna.exceptions.DuplicatedStudyError:
            ostudy = optuna.load_study(
                storage=rdb, study_name=spec.study_name, sampler=_sampler(spec), pruner=_pruner(spec, early)
            )
            break
        except Exception as e:  # noqa: PERF203 - e.g. two workers creating the schema at the same moment
            if attempt == 4:
                raise PrunebenchError(
                    f"cannot create or load Optuna study {spec.study_name!r} in "
                    f"{_redact(url)}: {str(e).splitlines()[0][:300]}"
                ) from None
            time.sleep(0.5 + attempt)
    assert ostudy is not None  # the loop either set it or raised
    if [d.name.lower() for d in ostudy.directions] != directions:
        raise ConfigError(
            f"Optuna study {spec.study_name!r} in {_redact(url)} has directions "
            f"{[d.name.lower() for d in ostudy.directions]}, this {spec.kind} sweep needs {directions}"
        )
    return ostudy, creator


def _fail_stale(ostudy) -> None:
    """Trials of workers that died (no heartbeat) are marked failed, so they count neither way."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(ostudy)


def _optimize(ostudy, objective, spec: SweepSpec, target: int, worker: str) -> int:
    """Run trials one at a time until the study holds ``target`` finished ones; the number this worker ran.

    Three failed trials of this worker in a row stop it (the data or the recipe is broken, not a point)."""
    ran = 0
    consecutive_failures = 0
    while True:
        _fail_stale(ostudy)
        if _finished_count(ostudy) >= target:
            break
        before = len(ostudy.trials)
        ostudy.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=False)
        ran += 1
        last = [t for t in ostudy.get_trials(deepcopy=False)[before:] if t.user_attrs.get("worker") == worker]
        if last and last[-1].state.name == "FAIL":
            consecutive_failures += 1
            if consecutive_failures >= 3:
                raise PrunebenchError(
                    f"sweep {spec.name}: 3 trials in a row failed (last: "
                    f"{last[-1].user_attrs.get('error', '?')}); stopping this worker"
                )
        else:
            consecutive_failures = 0
    return ran


def _trial_point(t, spec: SweepSpec) -> dict[str, Any]:
    return {a.name: t.params[a.column] for a in spec.axes}


def trials_table(ostudy, spec: SweepSpec) -> pd.DataFrame:
    """One row per Optuna trial: number, state, axis values, mean accuracy and compute, where it stopped."""
    recs = []
    for t in ostudy.get_trials(deepcopy=False):
        rec = {"trial": t.number, "state": t.state.name}
        rec.update({f"axis.{a.column}": t.params.get(a.column) for a in spec.axes})
        for k in ("acc_mean", "acc_std", "total_compute", "n_seeds", "stopped_at", "error"):
            rec[k] = t.user_attrs.get(k)
        recs.append(rec)
    return pd.DataFrame(recs, columns=None if recs else ["trial", "state", "acc_mean", "stopped_at"])


def _sweep_run(
    ostudy, creator: bool, tracker, study: Study, spec: SweepSpec, url: str, early: bool, target: int
) -> str:
    """Find or create the sweep's MLflow run; its id is a user attribute of the Optuna study, set by the
    worker that created the study (the others wait for it)."""
    key = "mlflow_run_id"
    deadline = time.monotonic() + (0 if creator else 60)
    rid = ostudy.user_attrs.get(key)
    while not rid and time.monotonic() < deadline:
        time.sleep(0.5)
        rid = ostudy.user_attrs.get(key)
    if rid:
        try:
            tracker.client.update_run(rid, status="RUNNING")
            return rid
        except Exception:
            pass  # deleted, or another tracking store: make a new one
    tracker.start(
        f"sweep {spec.name}",
        {
            "kind": spec.kind,
            "pruner": spec.pruner,
            "prune_ratio": spec.prune_ratio,
            "space": {a.column: [a.low, a.high] if a.values is None else list(a.values) for a in spec.axes},
            "seeds": list(spec.seeds),
            "n_trials": target,
            "optuna_study": spec.study_name,
            "storage": _redact(url),
            "early_stopping": early,
            "sampler": spec.sampler,
            **study.recipe,
        },
        {"prunebench.study": study.name, "prunebench.sweep": spec.name, "prunebench.kind": "sweep"},
    )
    ostudy.set_user_attr(key, tracker.run_id)
    return tracker.run_id


def _suggest(trial, a) -> Any:
    if a.values is not None:
        return trial.suggest_categorical(a.column, list(a.values))
    if a.kind == "int":
        return trial.suggest_int(a.column, int(a.low), int(a.high))
    return trial.suggest_float(a.column, a.low, a.high)


def _objective(
    trial,
    study: Study,
    spec: SweepSpec,
    base,
    data,
    epochs: int,
    uri: str,
    parent: str,
    early: bool,
    worker: str,
    log: Log,
    show=None,
):
    import optuna

    from prunebench.harness.ending import StopRun, describe, mark_ended
    from prunebench.harness.tracking import MLflowTracker

    trial.set_user_attr("worker", worker)
    point = {a.name: _suggest(trial, a) for a in spec.axes}
    p, opts = spec.resolve(point)
    where = spec.label(point)
    tags = {
        "prunebench.study": study.name,
        "prunebench.sweep": spec.name,
        "prunebench.kind": "trial",
        "prunebench.trial": str(trial.number),
        PARENT_TAG: parent,
    }
    tr = MLflowTracker(uri, study.experiment)
    tr.start(
        f"{spec.name} trial {trial.number}",
        {
            "prune_ratio": p,
            **{f"pruner.{k}": v for k, v in opts.items()},
            "pruner": spec.pruner,
            "optuna_trial": trial.number,
        },
        tags,
    )
    trial.set_user_attr("mlflow_run_id", tr.run_id)
    warm = max(1, math.ceil(spec.early_stopping_warmup * epochs))  # epochs each run trains before it may stop
    runs: list[dict[str, Any]] = []
    try:
        for i, seed in enumerate(spec.seeds):
            runs.append(
                _trial_seed_run(trial, spec, base, data, epochs, warm, early, i, seed, p, opts, tags, tr.run_id, show)
            )
    except StopRun as e:  # the harness ended the run KILLED; the trial is early-stopped in Optuna's terms
        mark_ended(tr, e, str(e))
        log(f"  trial {trial.number}: {where}: early-stopped ({e})")
        raise optuna.TrialPruned(str(e)) from e
    except BaseException as e:
        trial.set_user_attr("error", describe(e)[:1000])
        mark_ended(tr, e, "")
        log(f"  trial {trial.number}: {where}: FAILED: {describe(e)}")
        raise
    return _finish_trial(trial, tr, runs, spec, where, log)


def _trial_seed_run(
    trial,
    spec: SweepSpec,
    base,
    data,
    epochs: int,
    warm: int,
    early: bool,
    i: int,
    seed: int,
    p: float,
    opts: dict[str, Any],
    tags: dict[str, str],
    trial_run_id: str | None,
    show=None,
) -> dict[str, Any]:
    """Train seed ``seed`` (the ``i``-th) of an Optuna trial of :func:`_objective`; its result row. With ``early``,
    reports the test accuracy to Optuna and raises StopRun once Optuna prunes the trial (after ``warm`` epochs)."""
    from prunebench.harness import train
    from prunebench.harness.ending import StopRun
    from prunebench.studies.progress import CellProgress

    live = CellProgress(f"trial {trial.number} seed {seed}", show) if show is not None else None

    def progress(m: dict[str, Any]) -> None:
        # the step is (seed index, epoch): trials are compared at equal progress of the same seed's
        # schedule, and only once the warm-up fraction of the run is behind them
        if live is not None:  # the live line: epoch, accuracy so far, ETA
            live(m)
        if early and "test_acc" in m:
            trial.report(m["test_acc"], step=i * epochs + m["epoch"])
            if m["epoch"] + 1 >= warm and trial.should_prune():
                trial.set_user_attr("stopped_at", f"seed {seed}, epoch {m['epoch'] + 1} of {epochs}")
                raise StopRun(f"early-stopped at seed {seed}, epoch {m['epoch'] + 1}/{epochs}")

    cfg = base.replace(
        pruner=spec.pruner,
        prune_ratio=p,
        seed=seed,
        pruner_options=opts,
        run_name=f"{spec.name} trial {trial.number} seed {seed}",
        tags={**tags, "prunebench.kind": "sweep-run", PARENT_TAG: trial_run_id},
    )
    try:
        r = train(cfg, data=data, progress=progress).row
    finally:
        if live is not None:
            live.end()
    return {k: r.get(k) for k in RUN_COLUMNS} | {"seed": seed, "prune_ratio": p}


def _finish_trial(trial, tr, runs: list[dict[str, Any]], spec: SweepSpec, where: str, log: Log):
    """A trial whose runs all finished: its mean accuracy and compute on the trial and its MLflow run; the
    objective's value (accuracy, or accuracy and compute for a pareto sweep)."""
    from prunebench.reports import sweeps as sweep_stats

    accs = [r["final_acc"] for r in runs]
    cost = [sweep_stats.total_cost(r) for r in runs]
    acc, comp = float(np.mean(accs)), float(np.mean(cost))
    summary = {
        "acc_mean": acc,
        "acc_std": float(np.std(accs, ddof=1)) if len(accs) > 1 else float("nan"),
        "total_compute": comp,
        "n_seeds": len(runs),
    }
    for k, v in summary.items():
        trial.set_user_attr(k, v)
    trial.set_user_attr("runs", runs)
    tr.log_metrics({k: v for k, v in summary.items() if k != "n_seeds"})
    tr.end("FINISHED")
    log(f"  trial {trial.number}: {where}: acc {acc:.4f}  total compute {comp:.3f}")
    return acc if spec.kind == "accuracy" else (acc, comp)


#: the columns of a run's row kept per Optuna trial (the trial's user attribute ``runs``)
RUN_COLUMNS = (
    "final_acc",
    "best_acc",
    "relative_compute",
    "scoring_relative_compute",
    "realized_prune_ratio",
    "train_time_s",
    "scoring_time_s",
    "run_id",
    "dataset",
    "model",
    "epochs",
)


def format_sweep(result: SweepResult) -> str:
    """The per-point table (mean, 95% CI), the best point and those not distinguishable from it (accuracy),
    or the front (pareto); then the trial bookkeeping and warnings."""
    from prunebench.reports import sweeps as sweep_stats

    return sweep_stats.format_points(result.points, result.spec.kind, result.trials, result.warnings)
