"""Optuna sweeps declared in a study file: resumable, shareable between worker processes and machines.

Two kinds (``[sweeps.NAME] kind = ...``):

* ``split`` — OrderDP's split at a fixed budget: at prune ratio ``p``, search ``candidate_ratio`` in
  ``[1-p, 1]``; one objective, the final accuracy averaged over the sweep's seeds (maximised).
* ``pareto`` — accuracy vs compute: search the prune ratio and the ``split`` ``u`` in ``[0, 1]`` with
  ``candidate_ratio = 1 - p + u p`` (0: uniform random, 1: greedy top-q); two objectives (maximise
  accuracy, minimise realized relative compute); the Pareto front is ``study.best_trials``.

The Optuna study lives in RDB storage (``--storage``, else the file's ``storage``, else
``sqlite:///<out>/optuna.db``), so a killed sweep resumes and several workers can join one study: run
``prunebench sweep FILE --storage postgresql://...`` on each. Workers stop once the study holds
``n_trials`` finished (complete or early-stopped) trials; two workers that start their last trials at the
same moment can overshoot by one each. Trials of killed workers are found by Optuna's heartbeat and
marked failed.

Optuna's trial pruning is called *early stopping of trials* here (data pruning is what prunebench
measures); it is off unless the sweep sets ``early_stopping = true`` (median pruner on the per-epoch
test accuracy; the step is ``seed index x epochs + epoch``, so trials are compared seed by seed).

MLflow: one run per sweep (shared by its workers), one run per trial nested under it, and one run per
trial and seed nested under the trial's run.
"""

from __future__ import annotations

import math
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from prunebench.errors import ConfigError, PrunebenchError
from prunebench.harness.checkpoint import atomic_write
from prunebench.seeding import derive_seed
from prunebench.studies.spec import Study, SweepSpec

Log = Callable[[str], None]
PARENT_TAG = "mlflow.parentRunId"
HEARTBEAT_S = 10  # Optuna heartbeat of a running trial; a trial silent for GRACE_S is marked failed
GRACE_S = 60


def _schema_lock(url: str):
    """A fresh SQLite storage gets its schema from one worker at a time (``<db>.lock`` beside it)."""
    import contextlib

    from prunebench.safety import file_lock

    return file_lock(url[len("sqlite:///"):] + ".lock") if url.startswith("sqlite:///") else contextlib.nullcontext()


def _storage(url: str):
    import optuna

    if url.startswith(("postgresql", "postgres")):
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            raise ConfigError(f"storage {url.split('@')[-1]!r} needs the PostgreSQL driver: "
                              "pip install 'prunebench[postgres]' (psycopg2-binary)") from None
    if url.startswith("sqlite:///"):
        folder = Path(url[len("sqlite:///"):]).parent
        if not folder.is_dir():
            raise ConfigError(f"storage {url}: folder {folder} does not exist")
    last: Exception | None = None
    for attempt in range(5):  # workers starting together may race to create the schema
        try:
            with warnings.catch_warnings(), _schema_lock(url):  # heartbeats are "experimental" in Optuna since 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                                              engine_kwargs={"pool_pre_ping": True})
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
    return optuna.pruners.MedianPruner(n_startup_trials=sweep.early_stopping_startup_trials,
                                       n_warmup_steps=sweep.early_stopping_warmup_epochs)


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


def run_sweep(study: Study, storage: str | None = None, n_trials: int | None = None, *, sweep: str | None = None,
              out_dir: str | Path | None = None, tracking_uri: str | None = None, data_dir: str | None = None,
              early_stopping: bool | None = None, log: Log | None = None):
    """Run (or join, or resume) one sweep of ``study``; returns the ``optuna.Study``.

    ``storage``: Optuna RDB URL (else the sweep's ``storage``, else ``sqlite:///<out>/optuna.db``).
    ``n_trials``: finished trials the study should reach over all workers (else the file's).
    ``early_stopping``: override the file's setting. Writes ``<out>/sweep-<name>.csv`` (all trials) and,
    for a pareto sweep, ``<out>/sweep-<name>-pareto.csv``.
    """
    import optuna
    from optuna.trial import TrialState

    from prunebench.harness.tracking import MLflowTracker, resolve_tracking_uri
    from prunebench.studies.leaderboard import _data_for, default_out_dir

    spec = pick_sweep(study, sweep)
    log = log or (lambda s: None)
    if n_trials is not None and (isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1):
        raise ConfigError(f"n_trials must be an integer >= 1, got {n_trials!r}")
    target = n_trials or spec.n_trials
    early = spec.early_stopping if early_stopping is None else bool(early_stopping)
    if early and spec.kind == "pareto":
        raise ConfigError(f"{study.path}: sweeps.{spec.name}: early stopping of trials needs one objective; "
                          "a pareto sweep has two")
    out = Path(out_dir) if out_dir is not None else default_out_dir(study)
    url = storage or spec.storage
    if url is None:
        out.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{(out / 'optuna.db').resolve()}"
    uri = resolve_tracking_uri(tracking_uri or study.tracking_uri)
    base = study.base_config(tracking_uri=uri, **({"data_dir": data_dir} if data_dir else {}))
    data = _data_for(base)  # fail fast on missing data
    epochs = base.epochs or data.default_epochs

    directions = ["maximize"] if spec.kind == "split" else ["maximize", "minimize"]
    rdb = _storage(url)
    ostudy, creator = None, False
    for attempt in range(5):
        try:  # the storage's unique study name makes exactly one worker the creator
            ostudy = optuna.create_study(storage=rdb, study_name=spec.study_name, directions=directions,
                                         sampler=_sampler(spec), pruner=_pruner(spec, early))
            creator = True
            break
        except optuna.exceptions.DuplicatedStudyError:
            ostudy = optuna.load_study(storage=rdb, study_name=spec.study_name, sampler=_sampler(spec),
                                       pruner=_pruner(spec, early))
            break
        except Exception as e:  # noqa: PERF203 - e.g. two workers creating the schema at the same moment
            if attempt == 4:
                raise PrunebenchError(f"cannot create or load Optuna study {spec.study_name!r} in "
                                      f"{_redact(url)}: {str(e).splitlines()[0][:300]}") from None
            time.sleep(0.5 + attempt)
    if [d.name.lower() for d in ostudy.directions] != directions:
        raise ConfigError(f"Optuna study {spec.study_name!r} in {_redact(url)} has directions "
                          f"{[d.name.lower() for d in ostudy.directions]}, this {spec.kind} sweep needs {directions}")

    # the sweep's MLflow run, shared by all workers (its id lives in the Optuna study)
    tracker = MLflowTracker(uri, study.experiment)
    parent = _sweep_run(ostudy, creator, tracker, study, spec, url, early, target)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    log(f"{study.name}/{spec.name}: {spec.kind} sweep, study {spec.study_name!r} in {_redact(url)}; "
        f"{len(ostudy.trials)} trials so far, target {target} finished; early stopping of trials "
        f"{'on' if early else 'off'}")

    def objective(trial) -> float | tuple[float, float]:
        return _objective(trial, study, spec, base, data, epochs, tracker.uri, parent, early, worker, log)

    t0 = time.perf_counter()
    ran = 0
    consecutive_failures = 0
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(ostudy)
        if _finished_count(ostudy) >= target:
            break
        before = len(ostudy.trials)
        ostudy.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=False)
        ran += 1
        last = [t for t in ostudy.get_trials(deepcopy=False)[before:] if t.user_attrs.get("worker") == worker]
        if last and last[-1].state == TrialState.FAIL:
            consecutive_failures += 1
            if consecutive_failures >= 3:
                raise PrunebenchError(f"sweep {spec.name}: 3 trials in a row failed (last: "
                                      f"{last[-1].user_attrs.get('error', '?')}); stopping this worker")
        else:
            consecutive_failures = 0
    log(f"{study.name}/{spec.name}: this worker ran {ran} trials in {time.perf_counter() - t0:.1f}s; "
        f"the study holds {len(ostudy.trials)} trials")
    _summarise(ostudy, spec, tracker, parent, out)
    return ostudy


def _sweep_run(ostudy, creator: bool, tracker, study: Study, spec: SweepSpec, url: str, early: bool,
               target: int) -> str:
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
    tracker.start(f"sweep {spec.name}", {"kind": spec.kind, "pruner": spec.pruner, "prune_ratio": spec.prune_ratio,
                                         "space": spec.space, "seeds": list(spec.seeds), "n_trials": target,
                                         "optuna_study": spec.study_name, "storage": _redact(url),
                                         "early_stopping": early, "sampler": spec.sampler, **study.recipe},
                  {"prunebench.study": study.name, "prunebench.sweep": spec.name, "prunebench.kind": "sweep"})
    ostudy.set_user_attr(key, tracker.run_id)
    return tracker.run_id


def _objective(trial, study: Study, spec: SweepSpec, base, data, epochs: int, uri: str, parent: str, early: bool,
               worker: str, log: Log):
    import optuna

    from prunebench.harness import train
    from prunebench.harness.tracking import MLflowTracker

    trial.set_user_attr("worker", worker)
    if spec.kind == "split":
        p = float(spec.prune_ratio)
        c = trial.suggest_float("candidate_ratio", *spec.space["candidate_ratio"])
    else:
        p = trial.suggest_float("prune_ratio", *spec.space["prune_ratio"])
        u = trial.suggest_float("split", *spec.space["split"])
        c = min(1.0, 1.0 - p + u * p)
        trial.set_user_attr("candidate_ratio", c)
    tags = {"prunebench.study": study.name, "prunebench.sweep": spec.name, "prunebench.kind": "trial",
            "prunebench.trial": str(trial.number), PARENT_TAG: parent}
    tr = MLflowTracker(uri, study.experiment)
    tr.start(f"{spec.name} trial {trial.number}", {"prune_ratio": p, "candidate_ratio": c, **trial.params,
                                                   "pruner": spec.pruner, "optuna_trial": trial.number}, tags)
    trial.set_user_attr("mlflow_run_id", tr.run_id)
    accs, computes, realized, times, run_ids = [], [], [], [], []
    try:
        for i, seed in enumerate(spec.seeds):
            def progress(m: dict[str, Any], i: int = i) -> None:
                if early and "test_acc" in m:
                    trial.report(m["test_acc"], step=i * epochs + m["epoch"])
                    if trial.should_prune():
                        raise optuna.TrialPruned(f"early-stopped at seed {spec.seeds[i]}, epoch {m['epoch']}")

            cfg = base.replace(pruner=spec.pruner, prune_ratio=p, seed=seed,
                               pruner_options={**spec.options, "candidate_ratio": c},
                               run_name=f"{spec.name} trial {trial.number} seed {seed}",
                               tags={**tags, "prunebench.kind": "sweep-run", PARENT_TAG: tr.run_id})
            r = train(cfg, data=data, progress=progress).row
            accs.append(r["final_acc"])
            computes.append(r["relative_compute"])
            realized.append(r["realized_prune_ratio"])
            times.append(r["train_time_s"])
            run_ids.append(r["run_id"])
    except optuna.TrialPruned as e:
        tr.set_tags({"prunebench.early_stopped": str(e)})
        tr.end("KILLED")
        log(f"  trial {trial.number}: c={c:.4f} p={p:g}: early-stopped ({e})")
        raise
    except BaseException as e:
        msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        trial.set_user_attr("error", msg[:1000])
        tr.set_tags({"prunebench.error": msg[:5000]})
        tr.end("KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        log(f"  trial {trial.number}: c={c:.4f} p={p:g}: FAILED: {msg}")
        raise
    acc, comp = float(np.mean(accs)), float(np.mean(computes))
    summary = {"acc_mean": acc, "acc_std": float(np.std(accs, ddof=1)) if len(accs) > 1 else float("nan"),
               "relative_compute": comp, "realized_prune_ratio": float(np.mean(realized)),
               "train_time_s": float(np.mean(times))}
    for k, v in summary.items():
        trial.set_user_attr(k, v)
    trial.set_user_attr("run_ids", run_ids)
    tr.log_metrics(summary)
    tr.end("FINISHED")
    log(f"  trial {trial.number}: c={c:.4f} p={p:g}: acc {acc:.4f}  compute {comp:.3f}")
    return acc if spec.kind == "split" else (acc, comp)


def _summarise(ostudy, spec: SweepSpec, tracker, parent: str, out: Path) -> None:
    """Trials table (and Pareto front) to the out dir; best values to the sweep's MLflow run."""
    from optuna.trial import TrialState

    out.mkdir(parents=True, exist_ok=True)
    df = ostudy.trials_dataframe()
    # several workers (one shared storage) summarise into the same folder: each writes a file of its own
    atomic_write(out / f"sweep-{spec.name}.csv", lambda t: df.to_csv(t, index=False))
    tracker.run_id = parent
    done = [t for t in ostudy.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    metrics: dict[str, float] = {"trials_complete": len(done),
                                 "trials_early_stopped": sum(t.state == TrialState.PRUNED for t in ostudy.trials)}
    if done and spec.kind == "split":
        best = ostudy.best_trial
        metrics.update(best_acc_mean=best.value, best_candidate_ratio=best.params["candidate_ratio"],
                       best_trial=best.number)
    elif done:
        front = pareto_front(ostudy)
        atomic_write(out / f"sweep-{spec.name}-pareto.csv", lambda t: front.to_csv(t, index=False))
        metrics["pareto_size"] = len(front)
    try:
        tracker.log_metrics(metrics)
        tracker.client.set_terminated(parent, status="FINISHED")
    except Exception:
        pass


def pareto_front(ostudy):
    """``study.best_trials`` as a table sorted by compute: trial, prune_ratio, split, candidate_ratio,
    acc_mean, relative_compute."""
    import pandas as pd

    rows = [{"trial": t.number, "prune_ratio": t.params.get("prune_ratio"), "split": t.params.get("split"),
             "candidate_ratio": t.user_attrs.get("candidate_ratio", t.params.get("candidate_ratio")),
             "acc_mean": t.values[0], "relative_compute": t.values[1] if len(t.values) > 1 else math.nan}
            for t in ostudy.best_trials]
    return pd.DataFrame(rows).sort_values("relative_compute").reset_index(drop=True) if rows else pd.DataFrame(rows)


def format_sweep(ostudy, spec: SweepSpec) -> str:
    """Best trial (split) or the Pareto front (pareto) as text."""
    from optuna.trial import TrialState

    states = [t.state for t in ostudy.trials]
    head = (f"{spec.study_name}: {states.count(TrialState.COMPLETE)} complete, "
            f"{states.count(TrialState.PRUNED)} early-stopped, {states.count(TrialState.FAIL)} failed trials")
    if not states.count(TrialState.COMPLETE):
        return head
    if spec.kind == "split":
        b = ostudy.best_trial
        return (f"{head}\nbest: trial {b.number}  candidate_ratio {b.params['candidate_ratio']:.4f}  "
                f"acc {100 * b.value:.2f}%  (p = {spec.prune_ratio:g}, mean over seeds {list(spec.seeds)})")
    front = pareto_front(ostudy)
    lines = [head, "Pareto front (accuracy vs relative compute):",
             f"{'trial':>5}  {'p':>6}  {'split':>6}  {'c':>6}  {'acc %':>7}  {'compute':>7}"]
    for _, r in front.iterrows():
        lines.append(f"{int(r['trial']):>5}  {r['prune_ratio']:>6.3f}  {r['split']:>6.3f}  {r['candidate_ratio']:>6.3f}  "
                     f"{100 * r['acc_mean']:>7.2f}  {r['relative_compute']:>7.3f}")
    return "\n".join(lines)
