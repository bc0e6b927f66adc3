"""Where a leaderboard's cells run: ``local`` (a process pool here), ``ray`` (a running Ray cluster) or
``slurm`` (job arrays through submitit).

The run key is a cell's identity on every executor. Whatever runs a cell, it claims the cell in the
tracking store (:mod:`prunebench.studies.claims`), so two drivers, on one machine or many, never train one
cell at once, and a re-run skips what is FINISHED. A remote worker decides at start whether the cell's
checkpoint (``<out>/checkpoints/<run_key>``, a folder all nodes share) can be resumed, so a cell retried
after a node loss, ``scancel`` or preemption continues from its last epoch in the same MLflow run.

Settings come from the CLI flags or an ``[executor]`` table of the study file (flags win)::

    [executor]
    kind = "slurm"            # local | ray | slurm
    gpus_per_run = 1          # GPUs each cell gets (local: a fraction, e.g. 0.5, puts 2 runs on one GPU)
    cpus_per_run = 4          # ray / slurm: CPU cores each cell gets (torch threads)
    partition = "gpu"         # slurm
    time_limit_min = 240      # slurm: per cell
    array_parallelism = 32    # slurm: cells running at once (0: no limit)
    sbatch = ["--qos=normal", "--account=lab"]   # slurm: extra sbatch options, "--key=value" each
    # address = "10.0.0.1:6379"                  # ray: the cluster's address (default: RAY_ADDRESS, else auto)
    # gpus = ["0", "1"]                          # local: which GPUs (default: CUDA_VISIBLE_DEVICES, else all)

What is not done: a cell needing several GPUs (``gpus_per_run > 1``) on ``ray``/``slurm`` would run DDP under
torchrun inside its allocation; that is refused with a one-line error for now (on ``local`` a run gets
``gpus_per_run`` devices in ``CUDA_VISIBLE_DEVICES`` and uses the first, as ``prunebench run`` does).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunebench.errors import ConfigError

KINDS = ("local", "ray", "slurm")
TABLE_KEYS = (
    "kind",
    "gpus_per_run",
    "cpus_per_run",
    "gpus",
    "address",
    "max_retries",
    "partition",
    "time_limit_min",
    "array_parallelism",
    "sbatch",
    "folder",
)


@dataclass(frozen=True)
class ExecutorSpec:
    """Where and with what resources a grid's cells run (see the module docstring)."""

    kind: str = "local"  # local | ray | slurm
    gpus_per_run: float | None = None  # None: 1 when the recipe trains on CUDA (or auto with GPUs here), else 0
    cpus_per_run: int = 1  # ray / slurm: CPU cores per cell (torch threads)
    gpus: tuple[str, ...] | None = None  # local: device ids to place runs on (None: CUDA_VISIBLE_DEVICES, else all)
    address: str | None = None  # ray: cluster address (None: $RAY_ADDRESS, else "auto")
    max_retries: int = 3  # ray: retries of a cell whose worker or node died
    partition: str | None = None  # slurm
    time_limit_min: int = 60  # slurm: wall-clock limit per cell, minutes
    array_parallelism: int = 0  # slurm: cells of the array running at once (0: no limit)
    sbatch: tuple[str, ...] = ()  # slurm: extra sbatch options, "--key=value" or "--flag"
    folder: str | None = None  # slurm: submitit's logs and pickles (default <out>/slurm)

    def describe(self) -> str:
        if self.kind == "ray":
            return f"ray ({self.address or os.environ.get('RAY_ADDRESS') or 'auto'})"
        if self.kind == "slurm":
            return f"slurm ({'partition ' + self.partition if self.partition else 'default partition'})"
        return "local"


def parse_executor(table: Any, where: str = "executor", **flags: Any) -> ExecutorSpec:
    """An :class:`ExecutorSpec` from a study file's ``[executor]`` table, overridden by ``flags`` that are
    not ``None``. Raises :class:`ConfigError` (one line naming the key and the valid values)."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table, got {type(table).__name__}")
    bad = [k for k in table if k not in TABLE_KEYS]
    if bad:
        raise ConfigError(f"{where}.{bad[0]}: unknown key; valid keys in executor: {', '.join(TABLE_KEYS)}")
    raw = {**table, **{k: v for k, v in flags.items() if v is not None}}
    unknown = [k for k in raw if k not in TABLE_KEYS]
    if unknown:
        raise ConfigError(f"executor: unknown setting {unknown[0]!r}")
    kind = raw.get("kind", "local")
    if kind not in KINDS:
        raise ConfigError(f"{where}.kind: {kind!r} is not an executor; valid: {', '.join(KINDS)}")
    out: dict[str, Any] = {"kind": kind}
    for key, cast, low in (
        ("gpus_per_run", float, 0),
        ("cpus_per_run", int, 1),
        ("max_retries", int, 0),
        ("time_limit_min", int, 1),
        ("array_parallelism", int, 0),
    ):
        if key in raw:
            out[key] = _number(raw[key], f"{where}.{key}", cast, low)
    _check_gpus_per_run(out.get("gpus_per_run"), where)
    for key in ("address", "partition", "folder"):
        if key in raw:
            if not isinstance(raw[key], str) or not raw[key].strip():
                raise ConfigError(f"{where}.{key}: expected a non-empty string, got {raw[key]!r}")
            out[key] = raw[key]
    if "gpus" in raw:
        out["gpus"] = _gpu_ids(raw["gpus"], where)
    if "sbatch" in raw:
        out["sbatch"] = _sbatch_options(raw["sbatch"], where)
    spec = ExecutorSpec(**out)
    if spec.kind != "local" and (spec.gpus_per_run or 0) > 1:
        raise ConfigError(
            f"{where}.gpus_per_run: {spec.gpus_per_run:g} GPUs per cell on {spec.kind} needs DDP under "
            f"torchrun inside the allocation, which prunebench does not do yet; use 1 (or local)"
        )
    return spec


def _number(v: Any, name: str, cast: type[int] | type[float], low: float) -> int | float:
    """``v`` as an ``int`` or ``float`` (``cast``) that is finite and ``>= low``; booleans and
    fractional integers are refused."""
    integer = cast is int
    try:
        if isinstance(v, bool):
            raise ValueError
        x = cast(v)
        if integer and float(v) != x:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected {'an integer' if integer else 'a number'} >= {low:g}, got {v!r}") from None
    if not x >= low or (isinstance(x, float) and not math.isfinite(x)):
        raise ConfigError(f"{name}: expected a value >= {low:g}, got {v!r}")
    return x


def _check_gpus_per_run(g: float | None, where: str) -> None:
    """A whole number of GPUs above 1, or a fraction 1/k below."""
    if g is not None and g > 1 and g != int(g):
        raise ConfigError(f"{where}.gpus_per_run: above 1 it must be a whole number of GPUs, got {g:g}")
    if g is not None and 0 < g < 1 and abs(1 / g - round(1 / g)) > 1e-9:
        raise ConfigError(f"{where}.gpus_per_run: a fraction of a GPU must be 1/k (0.5, 0.25, ...), got {g:g}")


def _gpu_ids(v: Any, where: str) -> tuple[str, ...]:
    """``["0", "1"]`` or ``"0,1"`` -> ``("0", "1")``."""
    ids = v.split(",") if isinstance(v, str) else v
    if not isinstance(ids, (list, tuple)) or not ids or not all(str(i).strip().isdigit() for i in ids):
        raise ConfigError(f'{where}.gpus: expected GPU indices, e.g. ["0", "1"] or "0,1", got {v!r}')
    return tuple(str(i).strip() for i in ids)


def _sbatch_options(v: Any, where: str) -> tuple[str, ...]:
    """A list of ``--key=value`` / ``--flag`` sbatch options."""
    if not isinstance(v, (list, tuple)) or not all(isinstance(o, str) and o.startswith("--") and len(o) > 2 for o in v):
        raise ConfigError(f'{where}.sbatch: expected a list of sbatch options like "--qos=normal", got {v!r}')
    return tuple(v)


def sbatch_parameters(options: tuple[str, ...]) -> dict[str, Any]:
    """``("--qos=normal", "--exclusive")`` -> ``{"qos": "normal", "exclusive": True}`` (submitit's
    ``slurm_additional_parameters``)."""
    out: dict[str, Any] = {}
    for o in options:
        key, eq, val = o[2:].partition("=")
        out[key.replace("-", "_")] = val if eq else True
    return out


# ---------------------------------------------------------------------------------------------------
# local: GPU placement of pool workers
# ---------------------------------------------------------------------------------------------------


def visible_gpus() -> tuple[str, ...]:
    """This machine's GPUs as ``CUDA_VISIBLE_DEVICES`` names them (else all, counted without initialising
    CUDA in this process)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return tuple(x.strip() for x in env.split(",") if x.strip() and x.strip() != "-1")
    try:
        import torch

        return tuple(str(i) for i in range(torch.cuda.device_count()))
    except Exception:
        return ()


def default_gpus_per_run(device: str, have_gpus: bool) -> float:
    return 1.0 if device == "cuda" or (device == "auto" and have_gpus) else 0.0


def local_slots(jobs: int, gpus_per_run: float, gpus: tuple[str, ...]) -> list[dict[str, str]] | None:
    """The environment of each of ``jobs`` pool workers: ``CUDA_VISIBLE_DEVICES`` naming its GPU(s).

    ``gpus_per_run = k >= 1``: worker i gets the i-th group of k devices; ``1/k``: k workers share each
    device. ``None`` when runs use no GPU (workers inherit this process's environment)."""
    if not gpus_per_run:
        return None
    if not gpus:
        raise ConfigError(
            f"gpus_per_run {gpus_per_run:g}: no GPU is visible here (CUDA_VISIBLE_DEVICES, "
            f"torch.cuda.device_count()); use gpus_per_run 0 to train on CPU"
        )
    if gpus_per_run >= 1:
        k = int(gpus_per_run)
        groups = [",".join(gpus[i : i + k]) for i in range(0, len(gpus) - k + 1, k)]
    else:
        share = round(1 / gpus_per_run)
        groups = [g for g in gpus for _ in range(share)]
    if not groups or jobs > len(groups):
        raise ConfigError(
            f"--jobs {jobs} with {gpus_per_run:g} GPU(s) per run needs {math.ceil(jobs * gpus_per_run)} "
            f"GPUs; {len(gpus)} visible ({','.join(gpus) or 'none'}): lower --jobs or --gpus-per-run"
        )
    # runs sharing a device go to different devices first: worker i -> slot (i * stride) spread over devices
    if gpus_per_run < 1:
        share = round(1 / gpus_per_run)
        order = [d * share + s for s in range(share) for d in range(len(gpus))]
        groups = [groups[i] for i in order]
    return [{"CUDA_VISIBLE_DEVICES": groups[i]} for i in range(jobs)]


# ---------------------------------------------------------------------------------------------------
# remote workers (Ray tasks, Slurm array tasks): one cell each
# ---------------------------------------------------------------------------------------------------


class _StopOnSigterm:
    """SIGTERM (scancel, preemption, ``ray stop``) ends the cell at its next optimizer step as KILLED, with
    its checkpoint kept (the same path as ``prunebench run``: :class:`~prunebench.errors.Terminated`)."""

    def __init__(self) -> None:
        self.at: float | None = None

    def __enter__(self):
        import signal
        import threading

        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        import signal

        if self._previous is not None:  # a Ray worker runs later tasks: give SIGTERM back to Ray
            signal.signal(signal.SIGTERM, self._previous)

    def _handler(self, signum, frame) -> None:
        import threading

        if self.at is None:
            self.at = time.monotonic()
            t = threading.Timer(60.0, lambda: os._exit(143))  # no optimizer step comes: go anyway
            t.daemon = True
            t.start()

    def __call__(self, *_: Any) -> None:
        from prunebench.errors import Terminated

        if self.at is not None:
            raise Terminated


def run_cell(spec, threads: int, execute: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """Train one cell in a remote worker (a Ray task, a Slurm array task) and return its row.

    Resumes from the cell's checkpoint when one is there now (a retried cell), quiets the libraries, and
    turns SIGTERM into a KILLED run with its checkpoint kept (the re-run resumes it)."""
    import logging

    import torch

    torch.set_num_threads(max(1, threads))
    for name in ("alembic", "mlflow", "optuna"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with _StopOnSigterm() as stop:
        return execute(spec, step_check=stop)


class SlurmCell:
    """The callable submitit pickles for each array task; on timeout or preemption (``--signal``/USR2)
    submitit requeues it and the requeued task resumes the cell from its checkpoint."""

    def __init__(self, threads: int, execute: Callable[..., dict[str, Any]]) -> None:
        self.threads, self.execute = threads, execute  # execute: leaderboard.execute_cell (pickled by name)

    def __call__(self, spec) -> dict[str, Any]:
        return run_cell(spec, self.threads, self.execute)

    def checkpoint(self, spec):  # submitit's hook: requeue the same cell (it resumes from its checkpoint)
        import submitit

        return submitit.helpers.DelayedSubmission(SlurmCell(self.threads, self.execute), spec)


def _failed_row(spec, error: str) -> dict[str, Any]:
    cfg = spec.config
    return {
        "run_id": None,
        "status": "FAILED",
        "error": error,
        "dataset": cfg.dataset,
        "model": cfg.model,
        "pruner": spec.pruner,
        "label": spec.method,
        "seed": spec.seed,
        "prune_ratio": spec.prune_ratio,
        "final_acc": float("nan"),
        "best_acc": float("nan"),
    }


def _first_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return f"{type(e).__name__}: {s[-1][:300] if s else ''}"


def _gpus_for(ex: ExecutorSpec, specs, have_gpus: bool) -> float:
    if ex.gpus_per_run is not None:
        return ex.gpus_per_run
    return default_gpus_per_run(specs[0].config.device, have_gpus)


def run_ray(
    ex: ExecutorSpec, specs: list, log: Callable[[str], None], execute: Callable[..., dict[str, Any]]
) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Each cell a Ray task (``num_cpus``/``num_gpus`` from ``ex``) on the running cluster at ``ex.address``;
    yields ``(spec, row)`` as cells end. A task whose worker or node died is retried (``max_retries``) and
    resumes from the cell's checkpoint. Stopping this driver stops its tasks (Ray ties tasks to their
    driver): re-run the same command to re-attach; finished cells are skipped, killed ones resume."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            '--executor ray needs Ray on this machine and the cluster: pip install "ray[default]"'
        ) from None
    address = ex.address or os.environ.get("RAY_ADDRESS") or "auto"
    if not ray.is_initialized():
        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False, include_dashboard=False)
        except ConnectionError as e:
            raise ConfigError(
                f"--ray-address {address}: no Ray cluster there ({_first_line(e)}); start one "
                f"with `ray start --head` (see docs/clusters.md)"
            ) from None
    have_gpus = ray.cluster_resources().get("GPU", 0) > 0
    gpus = _gpus_for(ex, specs, have_gpus)
    task = ray.remote(run_cell).options(
        num_cpus=ex.cpus_per_run, num_gpus=gpus, max_retries=ex.max_retries, retry_exceptions=False
    )
    log(
        f"ray: {len(specs)} cells on {address} ({ex.cpus_per_run} CPU, {gpus:g} GPU each; "
        f"cluster has {ray.cluster_resources().get('CPU', 0):g} CPU, {ray.cluster_resources().get('GPU', 0):g} GPU)"
    )
    refs = {task.remote(s, ex.cpus_per_run, execute): s for s in specs}
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=1.0)
            for ref in done:
                s = refs[ref]
                try:
                    row = ray.get(ref)
                except Exception as e:  # the task failed past its retries (node lost, worker killed)
                    row = _failed_row(s, f"ray: {_first_line(e)}")
                yield s, row
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise


def run_slurm(
    ex: ExecutorSpec, specs: list, log: Callable[[str], None], folder: Path, execute: Callable[..., dict[str, Any]]
) -> Iterator[tuple[Any, dict[str, Any]]]:
    """The cells as one Slurm job array through submitit; yields ``(spec, row)`` as array tasks end. A task
    killed (``scancel``, preemption, node failure) yields a FAILED row: its MLflow run is KILLED with the
    checkpoint kept, and the next leaderboard resumes it. Stopping this driver leaves the array running:
    re-run the same command to re-attach (cells trained by the array meanwhile are awaited, not retrained)."""
    try:
        import submitit
    except ImportError:
        raise ConfigError("--executor slurm needs submitit: pip install submitit") from None
    gpus = _gpus_for(ex, specs, False)
    if 0 < gpus < 1:
        raise ConfigError(f"gpus_per_run {gpus:g}: Slurm allocates whole GPUs; use 1")
    import logging

    # submitit warns on every poll that sacct failed (a cluster without accounting storage): the driver
    # reads task states from squeue itself (_SlurmQueue), so those warnings only bury its progress lines
    logging.getLogger("submitit").setLevel(logging.ERROR)
    executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
    params: dict[str, Any] = {
        "timeout_min": ex.time_limit_min,
        "cpus_per_task": ex.cpus_per_run,
        "nodes": 1,
        "tasks_per_node": 1,
        "name": f"prunebench-{specs[0].config.experiment}"[:60],
    }
    if ex.partition:
        params["slurm_partition"] = ex.partition
    if gpus:
        params["slurm_gpus_per_task"] = int(gpus)
    if ex.array_parallelism:
        params["slurm_array_parallelism"] = ex.array_parallelism
    if ex.sbatch:
        params["slurm_additional_parameters"] = sbatch_parameters(ex.sbatch)
    executor.update_parameters(**params)
    jobs = executor.map_array(SlurmCell(ex.cpus_per_run, execute), specs)
    log(
        f"slurm: job array {jobs[0].job_id.split('_')[0] if jobs else '-'} of {len(jobs)} cells "
        f"({ex.cpus_per_run} CPU, {int(gpus)} GPU, {ex.time_limit_min} min each; logs in {folder})"
    )
    pending = dict(zip((j.job_id for j in jobs), zip(jobs, specs)))
    queue = _SlurmQueue(jobs[0].job_id.split("_")[0] if jobs else "")
    while pending:
        time.sleep(1.0)
        for jid, (job, s) in list(pending.items()):
            ended = queue.ended_without_result(jid)  # submitit asks sacct, which a cluster may not have
            if not job.done() and ended is None:
                continue
            del pending[jid]
            if ended is not None and not job.done():
                yield s, _failed_row(s, f"slurm job {jid}: {ended}")
                continue
            try:
                row = job.result()
            except Exception as e:
                row = _failed_row(s, f"slurm job {jid}: {_first_line(e)}")
            yield s, row


class _SlurmQueue:
    """The array's task states from ``squeue`` (every few seconds): submitit learns that a task ended
    without a result (cancelled, failed, timed out) from ``sacct``, which answers nothing on a cluster
    without accounting storage, so the driver would wait forever for a cancelled task."""

    TERMINAL = (
        "CANCELLED",
        "FAILED",
        "TIMEOUT",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "BOOT_FAIL",
        "DEADLINE",
        "COMPLETED",
        "PREEMPTED",
    )

    def __init__(self, array_id: str, every_s: float = 5.0) -> None:
        self.array_id, self.every_s = array_id, every_s
        self.states: dict[str, str] = {}
        self.seen: set[str] = set()
        self.at = 0.0
        self.ended_at: dict[str, float] = {}

    def _refresh(self) -> None:
        import subprocess

        if time.time() - self.at < self.every_s:
            return
        self.at = time.time()
        try:
            p = subprocess.run(
                ["squeue", "-h", "-r", "-t", "all", "-j", self.array_id, "-o", "%i|%T"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            return
        if p.returncode != 0:
            return
        self.states = dict(line.split("|", 1) for line in p.stdout.split() if "|" in line)
        self.seen |= set(self.states)

    def ended_without_result(self, job_id: str) -> str | None:
        """Why task ``job_id`` ended (``"CANCELLED"``, ...), once it has been ended for 30 s (time for its
        result file to appear), else ``None``. A task that was queued and left the queue counts as ended."""
        if not self.array_id:
            return None
        self._refresh()
        state = self.states.get(job_id)
        if state is None and job_id in self.seen:
            state = "left the queue"
        if state is None or not state.startswith(self.TERMINAL + ("left",)):
            self.ended_at.pop(job_id, None)
            return None
        first = self.ended_at.setdefault(job_id, time.time())
        return f"{state.lower()} without a result" if time.time() - first >= 30 else None


def run_remote(
    ex: ExecutorSpec, specs: list, log: Callable[[str], None], out: Path, execute: Callable[..., dict[str, Any]]
) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Run ``specs`` on ``ex`` (``ray`` or ``slurm``); yields ``(spec, row)`` as cells end. ``execute(spec,
    step_check=...)`` trains one cell in the worker (the leaderboard's ``execute_cell``, handed in so that this
    module does not import the leaderboard: no import cycle)."""
    specs = [dataclasses.replace(s, config=s.config.replace(resume=False)) for s in specs]  # decided remotely
    if ex.kind == "ray":
        return run_ray(ex, specs, log, execute)
    if ex.kind == "slurm":
        return run_slurm(ex, specs, log, Path(ex.folder) if ex.folder else out / "slurm", execute)
    raise ConfigError(f"executor {ex.kind!r} does not run remotely")
