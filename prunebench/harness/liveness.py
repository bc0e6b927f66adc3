"""Which process runs an MLflow run, so a run whose process died is not left RUNNING forever.

Every tracked run is tagged with its machine (``prunebench.host``: host name and boot id) and process
(``prunebench.pid``: pid and the process's start time, so a reused pid is not mistaken for it). When a run
starts, the RUNNING runs of its experiment tagged with this machine whose process is gone (kill -9, OOM,
a crash before the first checkpoint) are marked KILLED with the tag ``prunebench.error`` = "abandoned:
...". Runs of other machines are left alone (their liveness is unknown here; leaderboard runs also carry
a heartbeat, see :mod:`prunebench.studies.claims`). A resumed run is RUNNING again under its new process.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

HOST_TAG = "prunebench.host"
PID_TAG = "prunebench.pid"


def _start_ticks(pid: int) -> str:
    try:  # field 22 of /proc/<pid>/stat (after the parenthesised command name)
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2 :].split()[19]
    except (OSError, ValueError, IndexError):
        return ""


def host_id() -> str:
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"


def process_tags() -> dict[str, str]:
    pid = os.getpid()
    return {HOST_TAG: host_id(), PID_TAG: f"{pid}:{_start_ticks(pid)}"}


def process_alive(tag: str) -> bool:
    """Whether the process named by a ``prunebench.pid`` tag (on this machine) still runs."""
    pid_s, _, ticks = tag.partition(":")
    if not pid_s.isdigit():
        return True  # not ours to judge
    pid = int(pid_s)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass  # exists (another user's process)
    now = _start_ticks(pid)
    return not (ticks and now and now != ticks)  # the pid was reused by another process


def mark_dead_runs(client: Any, experiment_id: str, exclude: str | None = None) -> list[str]:
    """Mark KILLED the RUNNING runs of ``experiment_id`` started on this machine whose process is gone."""
    host = host_id()
    flt = f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'"
    dead = []
    for r in client.search_runs([experiment_id], filter_string=flt, max_results=1000):
        if r.info.run_id == exclude or process_alive(r.data.tags.get(PID_TAG, "")):
            continue
        pid = r.data.tags.get(PID_TAG, "?").partition(":")[0]
        client.set_tag(r.info.run_id, "prunebench.error", f"abandoned: its process (pid {pid}) is gone")
        client.set_terminated(r.info.run_id, status="KILLED")
        dead.append(r.info.run_id)
    return dead


def register(tracker: Any) -> list[str]:
    """Tag ``tracker``'s started run with this process; mark this machine's dead runs KILLED."""
    client = getattr(tracker, "client", None)
    if client is None or tracker.run_id is None:
        return []
    tracker.set_tags(process_tags())
    try:
        return mark_dead_runs(client, tracker.experiment_id, exclude=tracker.run_id)
    except Exception as e:  # a dead server fails on the next call with one line; the rest is cleanup
        from prunebench.errors import TrackingUnavailable

        if isinstance(e, TrackingUnavailable):
            raise
        return []
