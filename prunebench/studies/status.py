"""Where a study's grid stands, read from the tracking store alone (whatever executor ran it).

Each cell (a run key of the study's leaderboard grid, or of its grid sweeps) is one of:

* ``done``: a FINISHED run;
* ``running``: a RUNNING run whose process is alive (fresh heartbeat, see :mod:`prunebench.studies.claims`);
* ``failed``: its latest run FAILED or was KILLED (the next leaderboard retries it, from its checkpoint
  when there is one);
* ``pending``: no run yet, or only a RUNNING run whose process is gone (stale heartbeat: the next
  leaderboard takes it over).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd

from prunebench.studies.claims import is_fresh
from prunebench.studies.spec import Study

STATES = ("done", "running", "failed", "pending")


def cell_state(runs: list[Any], now: float | None = None) -> tuple[str, Any]:
    """(state, the run that decides it or ``None``) for one cell's MLflow runs, oldest first."""
    finished = [r for r in runs if r.info.status == "FINISHED"]
    if finished:
        return "done", finished[0]
    live = [r for r in runs if is_fresh(r, now)]
    if live:
        return "running", live[-1]
    ended = [r for r in runs if r.info.status in ("FAILED", "KILLED")]
    if ended:
        return "failed", max(ended, key=lambda r: r.info.end_time or r.info.start_time or 0)
    return "pending", None


def grid_studies(study: Study) -> list[tuple[str, Study]]:
    """The leaderboard grid (``""``) and each grid sweep's grid, as leaderboard studies."""
    from prunebench.studies.sweep import sweep_study

    out = [("", study)] if len(study.methods) > 1 else []
    for name, spec in study.sweeps.items():
        if spec.sampler == "grid":
            out.append((name, sweep_study(study, spec, spec.grid())))
    return out


def grid_status(study: Study, tracking_uri: str | None = None) -> pd.DataFrame:
    """One row per cell: ``grid`` (``""`` = the leaderboard, else the sweep's name), method, prune_ratio,
    seed, run_key, ``state`` (:data:`STATES`), run_id, status (MLflow), error, host."""
    from prunebench.harness.liveness import HOST_TAG
    from prunebench.harness.tracking import resolve_tracking_uri
    from prunebench.studies.leaderboard import study_runs

    uri = resolve_tracking_uri(tracking_uri or study.tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).exists():
        runs = {}  # no store yet: every cell is pending, and a status look-up creates none
    else:
        runs = study_runs(dataclasses.replace(study, sweeps={}), uri)
    rows, seen = [], set()
    for grid, g in grid_studies(study):
        for s in g.runs(tracking_uri=uri):
            if (grid != "" and s.method == "full") or (grid, s.run_key) in seen:
                continue  # a sweep's `full` is the leaderboard's cell
            seen.add((grid, s.run_key))
            state, run = cell_state(runs.get(s.run_key, []))
            tags = run.data.tags if run is not None else {}
            rows.append(
                {
                    "grid": grid,
                    "method": s.method,
                    "prune_ratio": s.prune_ratio,
                    "seed": s.seed,
                    "run_key": s.run_key,
                    "state": state,
                    "run_id": run.info.run_id if run else None,
                    "status": run.info.status if run else None,
                    "error": tags.get("prunebench.error", ""),
                    "host": tags.get(HOST_TAG, "").split("/")[0],
                }
            )
    return pd.DataFrame(
        rows, columns=["grid", "method", "prune_ratio", "seed", "run_key", "state", "run_id", "status", "error", "host"]
    )


def format_status(study: Study, table: pd.DataFrame, cells: bool = True) -> str:
    """Counts per grid and state, then (``cells``) every cell that is not done."""
    lines = []
    for grid, g in table.groupby("grid", sort=False):
        counts = g["state"].value_counts()
        what = f"{study.name}" + (f" sweep {grid}" if grid else " leaderboard")
        lines.append(f"{what}: {len(g)} cells: " + ", ".join(f"{int(counts.get(s, 0))} {s}" for s in STATES))
    if cells:
        rest = table[table["state"] != "done"]
        if not rest.empty:
            lines.append("")
            view = rest[["grid", "method", "prune_ratio", "seed", "state", "run_id", "host", "error"]].copy()
            view["error"] = view["error"].str.slice(0, 60)
            lines.append(view.fillna("").to_string(index=False))
    return "\n".join(lines)
