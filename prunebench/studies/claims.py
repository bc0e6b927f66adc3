"""Claims on grid cells in the tracking store: one study on one store is trained once, whatever ``--out``.

The MLflow run of a cell is its claim. When it starts (or resumes), the process training it tags it
``prunebench.claimed_at`` (wall-clock seconds) and keeps the tag ``prunebench.heartbeat`` fresh from a
background thread every ``PRUNEBENCH_HEARTBEAT_S`` seconds (default 30). After a short settle time
(``PRUNEBENCH_CLAIM_SETTLE_S``, default 2 s, so two claims made at once see each other) it looks at the
other RUNNING runs of the same cell (run key and data fingerprint): if one of them has a fresh heartbeat
and the earlier claim (``claimed_at``, then run id), or the cell FINISHED meanwhile, this claim is lost
(:class:`ClaimLost`): a new run is deleted, and the leaderboard waits for the other one instead of
training the cell a second time.

A RUNNING run whose heartbeat is older than 4 heartbeat periods (its process died: kill -9, OOM, a lost
machine) is stale: the next leaderboard marks it KILLED ("abandoned") and trains the cell. A fresh one is
never touched, unless it runs on this machine and its process is gone (then it is stale at once). Runs
without a heartbeat (started by older prunebench) count as fresh for the same time after their start. Clocks of machines sharing one store are assumed to agree within the settle time.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from prunebench.errors import PrunebenchError
from prunebench.harness.ending import RunWithdrawn

HEARTBEAT_TAG = "prunebench.heartbeat"
CLAIMED_TAG = "prunebench.claimed_at"
KEY_TAG = "prunebench.run_key"


def heartbeat_s() -> float:
    return float(os.environ.get("PRUNEBENCH_HEARTBEAT_S", "30"))


def settle_s() -> float:
    return float(os.environ.get("PRUNEBENCH_CLAIM_SETTLE_S", "2"))


def stale_after_s() -> float:
    return 4 * heartbeat_s()


PLACEMENT_ENV = {
    "CUDA_VISIBLE_DEVICES": "prunebench.cuda_visible_devices",
    "SLURM_JOB_ID": "prunebench.slurm_job_id",
    "SLURM_ARRAY_JOB_ID": "prunebench.slurm_array_job_id",
    "SLURM_ARRAY_TASK_ID": "prunebench.slurm_array_task_id",
    "SLURMD_NODENAME": "prunebench.slurm_node",
}


def placement_tags() -> dict[str, str]:
    """Where the claiming process runs: its GPUs (``CUDA_VISIBLE_DEVICES``), Slurm job/array task, Ray node."""
    tags = {tag: os.environ[var] for var, tag in PLACEMENT_ENV.items() if var in os.environ}
    try:
        import sys

        if "ray" in sys.modules:
            import ray

            if ray.is_initialized():
                tags["prunebench.ray_node_id"] = ray.get_runtime_context().get_node_id()
    except Exception:
        pass
    return tags


class ClaimLost(PrunebenchError, RunWithdrawn):
    """Another process holds this cell (a fresh RUNNING run with an earlier claim), or it finished;
    ``deleted``: this process's new run was deleted from the store (nothing to mark FAILED)."""

    def __init__(self, other_run_id: str, finished: bool = False, deleted: bool = False) -> None:
        super().__init__(f"cell {'finished' if finished else 'claimed'} by MLflow run {other_run_id}")
        self.other_run_id = other_run_id
        self.finished = finished
        self.deleted = deleted


def last_beat(run: Any) -> float:
    """Wall-clock seconds of ``run``'s last sign of life (heartbeat tag, else its start)."""
    tag = run.data.tags.get(HEARTBEAT_TAG)
    try:
        return float(tag)
    except (TypeError, ValueError):
        return (run.info.start_time or 0) / 1000.0


def is_fresh(run: Any, now: float | None = None) -> bool:
    """A RUNNING run whose process is alive: its heartbeat is recent and, when it runs on this machine
    (:mod:`prunebench.harness.liveness` tags), its process still exists (so a leaderboard killed with
    kill -9 and re-run at once takes its cells over without waiting for the heartbeat to age)."""
    from prunebench.harness import liveness

    now = time.time() if now is None else now
    if run.info.status != "RUNNING" or now - last_beat(run) >= stale_after_s():
        return False
    tags = run.data.tags
    if tags.get(liveness.HOST_TAG) == liveness.host_id() and liveness.PID_TAG in tags:
        return liveness.process_alive(tags[liveness.PID_TAG])
    return True


def _claim_order(run: Any) -> tuple[float, str]:
    try:
        at = float(run.data.tags.get(CLAIMED_TAG))
    except (TypeError, ValueError):
        at = (run.info.start_time or 0) / 1000.0
    return at, run.info.run_id


class Claim:
    """``claim(run_id)`` right after the cell's MLflow run starts: tags it, checks for competitors (raises
    :class:`ClaimLost`), then keeps its heartbeat fresh until :meth:`release`."""

    def __init__(
        self, tracking_uri: str, experiment: str, run_key: str, fingerprint: str | None, resumed: bool = False
    ) -> None:
        self.uri, self.experiment, self.run_key, self.fingerprint = tracking_uri, experiment, run_key, fingerprint
        self.resumed = resumed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _client(self):
        from prunebench.harness.tracking import open_client

        return open_client(self.uri)

    def _same_cell(self, client) -> list[Any]:
        from mlflow.entities import ViewType

        exp = client.get_experiment_by_name(self.experiment)
        if exp is None:
            return []
        runs = client.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.`{KEY_TAG}` = '{self.run_key}'",
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=1000,
        )
        fp_tag = "prunebench.data_fingerprint"
        return [r for r in runs if self.fingerprint is None or r.data.tags.get(fp_tag) in (None, self.fingerprint)]

    def __call__(self, run_id: str | None) -> None:
        if run_id is None:
            return
        client = self._client()
        now = time.time()
        client.set_tag(run_id, CLAIMED_TAG, f"{now:.6f}")
        client.set_tag(run_id, HEARTBEAT_TAG, f"{now:.3f}")
        for tag, value in placement_tags().items():
            client.set_tag(run_id, tag, value)
        time.sleep(settle_s())
        mine = (now, run_id)
        for r in self._same_cell(client):
            if r.info.run_id == run_id:
                continue
            lost = None
            if r.info.status == "FINISHED":
                lost = ClaimLost(r.info.run_id, finished=True)
            elif is_fresh(r) and _claim_order(r) < mine:
                lost = ClaimLost(r.info.run_id)
            if lost is not None:
                if not self.resumed:  # our new run is not a result of anything: out of the way
                    try:
                        client.delete_run(run_id)
                        lost.deleted = True
                    except Exception:
                        pass
                raise lost
        self._thread = threading.Thread(
            target=self._beat, args=(run_id,), daemon=True, name=f"prunebench-heartbeat-{run_id[:8]}"
        )
        self._thread.start()

    def _beat(self, run_id: str) -> None:
        client = self._client()
        while not self._stop.wait(heartbeat_s()):
            try:
                client.set_tag(run_id, HEARTBEAT_TAG, f"{time.time():.3f}")
            except Exception:
                pass  # a dead server: the run itself fails on its next tracking call

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
