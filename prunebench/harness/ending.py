"""How a run ends: finished, failed, killed (Ctrl-C, SIGTERM) or stopped (:class:`StopRun`).

This is the one failure path of runs: the loop, a leaderboard's cells and a sweep's trials all mark
their MLflow run with :func:`mark_ended`; a leaderboard records a failed cell with :func:`record_failure`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from prunebench.errors import TrackingUnavailable
from prunebench.harness.checkpoint import deferred_sigint

log = logging.getLogger("prunebench.harness")


class StopRun(Exception):
    """Raised by a run's progress callback to stop it early (e.g. a sweep's early-stopped trial): the run
    ends KILLED and is tagged ``prunebench.early_stopped``; it is not a failure."""


class RunWithdrawn(Exception):
    """Raised by a run's start hook (e.g. a leaderboard's cell claim) that found the cell is another run's;
    ``deleted``: the hook deleted this run's MLflow record, so its ending marks nothing there."""

    deleted: bool = False


def describe(e: BaseException) -> str:
    """``"Type: first line of the message"``, the ``error`` column of a row."""
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def status_of(e: BaseException) -> str:
    return "KILLED" if isinstance(e, (KeyboardInterrupt, StopRun)) else "FAILED"


def mark_ended(tracker, e: BaseException, stopped_at: str) -> tuple[str, str]:
    """Mark the MLflow run of ``tracker`` ended by ``e`` (KILLED or FAILED, tagged with the error, or
    ``stopped_at`` for a :class:`StopRun`); returns ``(status, error)``.

    A second Ctrl-C/SIGTERM is held back meanwhile and a busy store is retried, so the run is not left
    RUNNING; a server that does not answer is not.
    """
    status, error = status_of(e), describe(e)
    if isinstance(e, RunWithdrawn) and e.deleted:  # no MLflow run left to mark
        return status, error
    tags = {"prunebench.early_stopped": stopped_at} if isinstance(e, StopRun) else {"prunebench.error": error[:5000]}
    with deferred_sigint():
        for attempt in range(3):
            try:
                tracker.end(status)
                break
            except TrackingUnavailable:
                return status, error
            except Exception as exc:  # e.g. SQLite busy while a sibling process writes
                if attempt == 2:
                    log.warning("could not mark the MLflow run %s (%s: %s)", status, type(exc).__name__, exc)
                time.sleep(0.5 * (attempt + 1))
        try:
            tracker.set_tags(tags)
        except Exception:
            pass
    return status, error


def failed_row(e: BaseException, trainer, fallback: dict[str, Any]) -> dict[str, Any]:
    """The row of a run that raised ``e``: the trainer's complete row when one was built (``fallback``
    otherwise), FAILED, with the error and no accuracy."""
    error = describe(e)
    row = dict(fallback)
    if trainer is not None:
        try:  # the row the run would have had, so the failed row has every column
            row = trainer.result("FAILED", error).row
        except Exception:
            pass
        row["run_id"] = trainer.run_id
    row.update(status="FAILED", error=error, final_acc=float("nan"), best_acc=float("nan"), final_top5=float("nan"))
    return row


def record_failure(e: BaseException, config, trainer, fallback: dict[str, Any], run_name: str) -> dict[str, Any]:
    """:func:`failed_row`, logged as ``run.json`` to the failed MLflow run so that it reads back like a
    finished one; a run that failed before it started (e.g. no data) gets a FAILED MLflow run of its own."""
    from prunebench.harness.tracking import MLflowTracker

    row = failed_row(e, trainer, fallback)
    try:
        tracker = MLflowTracker(config.tracking_uri, config.experiment)
        if row.get("run_id") is None:
            tracker.start(config.run_name or run_name, {}, {**config.tags, "prunebench.error": row["error"][:5000]})
            row["run_id"] = tracker.run_id
            tracker.end("FAILED")
        tracker.run_id = row["run_id"]
        tracker.log_dict({"config": config.to_dict(), "row": row}, "run.json")
    except Exception:
        pass
    return row
