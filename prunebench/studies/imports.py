"""Validation of results tables given to ``leaderboard --import``: a table is data from elsewhere.

Every row must have a known ``status``; a FINISHED row must have numeric, finite accuracies in [0, 1],
an integer seed, a prune ratio in [0, 1) and finite, non-negative cost columns. The first offending row
is named (file and row number, 1 = the first data row) in one line; nothing is imported from a table
with one bad row.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import pandas as pd

from prunebench.errors import ConfigError

STATUSES = ("FINISHED", "FAILED", "KILLED", "RUNNING", "SCHEDULED")
UNIT = ("final_acc", "best_acc", "final_top5")  # in [0, 1]
NONNEGATIVE = (
    "relative_compute",
    "train_time_s",
    "selection_time_s",
    "scoring_time_s",
    "total_time_s",
    "samples_forward",
    "samples_backprop",
    "optimizer_steps",
    "epochs",
    "num_samples",
)


def _number(v: Any) -> float | None:
    """``v`` as a float if it is a real number (a numeric string from a CSV included), else ``None``."""
    if isinstance(v, bool):
        return None
    if isinstance(v, numbers.Real):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _show(v: Any) -> str:
    return repr(v.item() if hasattr(v, "item") else v)


def validate_results_table(df: pd.DataFrame, path: Any) -> pd.DataFrame:
    """``df`` unchanged if every row is plausible, else :class:`ConfigError` naming the table and row."""

    def bad(i: int, what: str) -> ConfigError:
        rk = df["run_key"].iloc[i] if "run_key" in df.columns else "?"
        return ConfigError(f"--import {path}: row {i + 1} (run_key {rk}): {what}; fix or drop the row")

    status = df["status"]
    for i, v in enumerate(status):
        if not isinstance(v, str) or v not in STATUSES:
            raise bad(i, f"status {_show(v)} is not one of {', '.join(STATUSES)}")
    for i in [i for i, v in enumerate(status) if v == "FINISHED"]:
        rec = df.iloc[i]
        for c in UNIT + NONNEGATIVE + ("seed", "prune_ratio", "realized_prune_ratio"):
            if c not in df.columns:
                continue
            v = rec[c]
            if v is None or (isinstance(v, float) and math.isnan(v)):
                if c in ("final_acc", "seed", "prune_ratio"):
                    raise bad(i, f"a FINISHED row has no {c}")
                continue
            x = _number(v)
            if x is None or not math.isfinite(x):
                raise bad(i, f"{c} = {_show(v)} is not a finite number")
            if c in UNIT and not 0.0 <= x <= 1.0:
                raise bad(i, f"{c} = {_show(v)} is outside [0, 1]")
            if c in NONNEGATIVE and x < 0:
                raise bad(i, f"{c} = {_show(v)} is negative")
            if c == "prune_ratio" and not 0.0 <= x < 1.0:
                raise bad(i, f"prune_ratio = {_show(v)} is outside [0, 1)")
            if c == "realized_prune_ratio" and not x <= 1.0:
                raise bad(i, f"realized_prune_ratio = {_show(v)} is above 1")
            if c == "seed" and (x != int(x) or x < 0):
                raise bad(i, f"seed = {_show(v)} is not an integer >= 0")
    return df
