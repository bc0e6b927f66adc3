"""What the CLI benchmarks share (``executors_bench.py``, ``gpu_check.py``): a one-recipe study file, a
timed ``prunebench leaderboard`` on it with its own MLflow store, and that store's runs."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def study_toml(name: str, seeds: list[int], recipe: dict[str, Any], methods: list[str]) -> str:
    """A study file: ``name``, ``seeds``, prune ratio 0.5, the ``recipe`` table and ``methods``."""
    lines = ["[study]", f'name = "{name}"', f"seeds = {seeds}", "prune_ratios = [0.5]", "", "[recipe]"]
    lines += [f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"' for k, v in recipe.items()]
    return "\n".join(lines + [""] + [f"[methods.{m}]" for m in methods]) + "\n"


@dataclass
class Leaderboard:
    """One ``prunebench leaderboard`` command that ran: its arguments, exit, wall time and stores."""

    cmd: list[str]
    proc: subprocess.CompletedProcess
    wall_s: float
    uri: str
    out: Path

    def runs(self, experiment: str) -> list[Any]:
        """The MLflow runs of ``experiment`` in this leaderboard's store."""
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self.uri)
        exp = client.get_experiment_by_name(experiment)
        return client.search_runs([exp.experiment_id])


def leaderboard(
    work: Path, study_text: str, extra: list[str], *, env: dict | None = None, timeout: float | None = None
) -> Leaderboard:
    """Write ``study_text`` to ``work/study.toml`` and run ``prunebench leaderboard`` on it (in ``work``,
    with ``work/mlflow.db`` and ``--out work/out``, quiet, plus ``extra``), timed."""
    work.mkdir(parents=True, exist_ok=True)
    study = work / "study.toml"
    study.write_text(study_text)
    uri = f"sqlite:///{work / 'mlflow.db'}"
    out = work / "out"
    cmd = [sys.executable, "-m", "prunebench", "leaderboard", str(study), "--out", str(out),
           "--tracking-uri", uri, "--quiet", *extra]  # fmt: skip
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
    return Leaderboard(cmd, p, time.perf_counter() - t0, uri, out)
