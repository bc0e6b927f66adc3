"""Report tables: pure functions of the flat results table (pandas in, pandas out).

The leaderboard has one row per (dataset, model, prune ratio, method) over the finished runs' seeds:
mean, sample std and t-based 95% confidence interval of the final top-1, the drop against full data on the
same seeds, realized prune ratio, compute saved (``1 - relative_compute``), wall-clock and overheads.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from prunebench.reports.inputs import finished

SETTING = ["dataset", "model"]
GROUP = SETTING + ["prune_ratio", "method"]

#: leaderboard columns averaged over seeds (the name in the result row -> the leaderboard column)
MEANS = {
    "best_acc": "best_acc_mean",
    "realized_prune_ratio": "realized_prune_ratio",
    "relative_compute": "relative_compute",
    "train_time_s": "train_time_s",
    "selection_time_s": "selection_time_s",
    "scoring_time_s": "scoring_time_s",
    "total_time_s": "total_time_s",
    "samples_backprop": "samples_backprop",
    "samples_forward": "samples_forward",
    "optimizer_steps": "optimizer_steps",
    "jaccard_mean": "jaccard_mean",
}

#: which way is better, per leaderboard column (used to mark the best of each column), and the
#: tolerance within which two values count as tied (half the displayed precision: 0.01 pp, 0.1 %, 1 ms)
BETTER = {
    "acc_mean": ("max", 5e-5), "drop_vs_full": ("min", 5e-5), "best_acc_mean": ("max", 5e-5),
    "realized_prune_ratio": ("max", 5e-4), "compute_saved": ("max", 5e-4), "train_time_s": ("min", 5e-4),
    "selection_time_s": ("min", 5e-4), "scoring_time_s": ("min", 5e-4), "total_time_s": ("min", 5e-4),
    "wallclock_saved": ("max", 5e-4),
}


def mean_std_ci(values: pd.Series | np.ndarray, level: float = 0.95) -> tuple[float, float, float, float]:
    """Mean, sample std (ddof 1) and the t-based ``level`` confidence interval of the mean.

    With one value the std and the interval are NaN (no spread can be estimated from one seed).
    """
    x = np.asarray(pd.Series(values).dropna(), dtype=float)
    n = x.size
    if n == 0:
        return (np.nan,) * 4
    m = float(x.mean())
    if n < 2:
        return m, np.nan, np.nan, np.nan
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / np.sqrt(n)
    return m, sd, m - half, m + half


def leaderboard_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, model, prune_ratio, method) of the finished runs; see the module docstring.

    ``drop_vs_full`` is full data's mean final top-1 over the seeds this method also ran, minus the
    method's mean (positive: the method is worse); ``wallclock_saved`` is ``1 - total_time_s / full's``
    on the same seeds (total = training + static scoring). Both are NaN where no full run shares a seed.
    """
    ok = finished(df)
    full = ok[ok["method"] == "full"]
    rows = []
    for key, g in ok.groupby(GROUP, sort=True, dropna=False):
        rec = dict(zip(GROUP, key))
        seeds = sorted(int(s) for s in g["seed"].dropna().unique())
        acc_mean, acc_std, lo, hi = mean_std_ci(g["final_acc"])
        rec.update(pruner=g["pruner"].iloc[0],
                   granularity=g["granularity"].iloc[0] if "granularity" in g else "",
                   n_seeds=len(seeds), seeds=" ".join(map(str, seeds)),
                   acc_mean=acc_mean, acc_std=acc_std, acc_ci_low=lo, acc_ci_high=hi)
        for src, dst in MEANS.items():
            rec[dst] = float(g[src].mean()) if src in g else np.nan
        ref = full[(full["dataset"] == rec["dataset"]) & (full["model"] == rec["model"]) & full["seed"].isin(seeds)]
        rec["drop_vs_full"] = float(ref["final_acc"].mean()) - acc_mean if len(ref) else np.nan
        rec["compute_saved"] = 1.0 - rec["relative_compute"]
        rec["wallclock_saved"] = (1.0 - rec["total_time_s"] / float(ref["total_time_s"].mean())
                                  if len(ref) and "total_time_s" in ref else np.nan)
        rows.append(rec)
    cols = GROUP + ["pruner", "granularity", "n_seeds", "seeds", "acc_mean", "acc_std", "acc_ci_low",
                    "acc_ci_high", "drop_vs_full", "best_acc_mean", "realized_prune_ratio", "compute_saved",
                    "relative_compute", "train_time_s", "selection_time_s", "scoring_time_s", "total_time_s",
                    "wallclock_saved", "samples_backprop", "samples_forward", "optimizer_steps", "jaccard_mean"]
    return pd.DataFrame(rows, columns=cols)


def best_marks(table: pd.DataFrame, exclude_full: bool = True) -> pd.DataFrame:
    """Boolean frame (same index/columns as ``table``): True where a cell is the best of its column.

    Full data is the reference, not a contender, so it is never marked. Values within the column's
    tolerance of the best (below the displayed precision) tie and are all marked; a column whose
    contenders all tie marks nothing.
    """
    marks = pd.DataFrame(False, index=table.index, columns=table.columns)
    pool = table[table["method"] != "full"] if exclude_full else table
    for col, (how, tol) in BETTER.items():
        if col not in table or len(pool) < 2:
            continue
        v = pool[col].astype(float)
        if v.isna().all():
            continue
        best = v.max() if how == "max" else v.min()
        tied = (v - best).abs() <= tol
        if tied.all():
            continue
        marks.loc[v.index[tied], col] = True
    return marks


def pareto_mask(cost: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """True for points no other point beats (lower or equal cost and higher or equal accuracy, one strictly)."""
    cost, acc = np.asarray(cost, float), np.asarray(acc, float)
    out = np.ones(cost.size, dtype=bool)
    for i in range(cost.size):
        dominated = (cost <= cost[i]) & (acc >= acc[i]) & ((cost < cost[i]) | (acc > acc[i]))
        out[i] = not dominated.any()
    return out


def stability_table(df: pd.DataFrame, volatility: pd.DataFrame | None = None) -> pd.DataFrame:
    """Seed spread per (dataset, model, prune_ratio, method): std of final and best top-1 over seeds and,
    when per-epoch curves are available, the accuracy-curve volatility (see :func:`curve_volatility`)."""
    ok = finished(df)
    g = ok.groupby(GROUP, sort=True, dropna=False)
    out = pd.DataFrame({
        "n_seeds": g["seed"].nunique(),
        "final_acc_std": g["final_acc"].std(ddof=1),
        "best_acc_std": g["best_acc"].std(ddof=1) if "best_acc" in ok else np.nan,
        "final_acc_range": g["final_acc"].max() - g["final_acc"].min(),
    }).reset_index()
    if volatility is not None and not volatility.empty:
        out = out.merge(volatility, on=GROUP, how="left")
    return out


def curve_volatility(acc: pd.Series) -> float:
    """Mean absolute epoch-to-epoch change of test accuracy over the second half of training."""
    a = acc.sort_index().to_numpy(dtype=float)
    tail = a[len(a) // 2:]
    return float(np.abs(np.diff(tail)).mean()) if tail.size >= 2 else np.nan
