"""Studies: study files -> leaderboards (grids of runs, resumable by run key) and Optuna sweeps.

>>> from prunebench.studies import load_study, run_leaderboard, leaderboard_table
>>> study = load_study("studies/digits-quick.toml")            # validated; errors name file and key
>>> results = run_leaderboard(study, "results/digits-quick")     # skips runs already FINISHED in MLflow
>>> leaderboard_table(results)                                   # ranked per prune ratio

The studies floor imports the harness; the CLI's ``leaderboard`` and ``sweep`` commands are one call
each into this package.
"""

from prunebench.studies.leaderboard import (
    default_out_dir,
    execute_run,
    format_leaderboard,
    leaderboard_table,
    plan,
    run_leaderboard,
    study_runs,
)
from prunebench.studies.spec import MethodSpec, RunSpec, Study, SweepSpec, load_study
from prunebench.studies.sweep import SweepResult, format_sweep, pick_sweep, run_sweep

__all__ = [
    "MethodSpec",
    "RunSpec",
    "Study",
    "SweepSpec",
    "default_out_dir",
    "execute_run",
    "format_leaderboard",
    "format_sweep",
    "leaderboard_table",
    "load_study",
    "SweepResult",
    "pick_sweep",
    "plan",
    "run_leaderboard",
    "run_sweep",
    "study_runs",
]
