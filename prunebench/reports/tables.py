"""Report tables: pure functions of the flat results table (pandas in, pandas out).

The leaderboard has one row per (dataset, model, prune ratio, method) over the finished runs' seeds:
mean, sample std and t-based 95% confidence interval of the final top-1; the paired differences against
full data and against the family baseline (:mod:`prunebench.reports.stats`: method - reference, positive =
better, with a t interval and a verdict); the rank within the ratio and whether the method is
distinguishable from the leader; the realized prune ratio; the cost (training + scoring, in compute and
seconds, :func:`~prunebench.reports.stats.with_costs`) and whether the point is on the Pareto front.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from prunebench.reports.inputs import finished
from prunebench.reports.stats import SETTING, paired_table, paired_wide, pareto_mask, t_interval, with_costs

GROUP = SETTING + ["prune_ratio", "method"]

#: leaderboard columns averaged over seeds (the name in the cost-augmented row -> the leaderboard column)
MEANS = {
    "best_acc": "best_acc_mean",
    "realized_prune_ratio": "realized_prune_ratio",
    "relative_compute": "relative_compute",
    "train_compute": "train_compute",
    "scoring_compute": "scoring_compute",
    "total_compute": "total_compute",
    "train_time_s": "train_time_s",
    "selection_time_s": "selection_time_s",
    "scoring_time_s": "scoring_time_s",
    "scoring_cost_s": "scoring_cost_s",
    "total_cost_s": "total_cost_s",
    "samples_backprop": "samples_backprop",
    "samples_forward": "samples_forward",
    "optimizer_steps": "optimizer_steps",
    "jaccard_mean": "jaccard_mean",
}

LEADERBOARD_COLUMNS = GROUP + [
    "rank",
    "pruner",
    "granularity",
    "family",
    "n_seeds",
    "seeds",
    "acc_mean",
    "acc_std",
    "acc_ci_low",
    "acc_ci_high",
    "vs_full_mean",
    "vs_full_sd",
    "vs_full_ci_low",
    "vs_full_ci_high",
    "vs_full_verdict",
    "vs_full_n_pairs",
    "baseline",
    "vs_baseline_mean",
    "vs_baseline_sd",
    "vs_baseline_ci_low",
    "vs_baseline_ci_high",
    "vs_baseline_verdict",
    "vs_baseline_n_pairs",
    "tied_with_leader",
    "best_acc_mean",
    "realized_prune_ratio",
    "compute_saved",
    "train_compute_saved",
    "total_compute",
    "train_compute",
    "scoring_compute",
    "relative_compute",
    "train_time_s",
    "selection_time_s",
    "scoring_time_s",
    "scoring_cost_s",
    "total_cost_s",
    "total_cost_s_std",
    "wallclock_saved",
    "pareto",
    "samples_backprop",
    "samples_forward",
    "optimizer_steps",
    "jaccard_mean",
]


def mean_std_ci(values: pd.Series | np.ndarray, level: float = 0.95) -> tuple[float, float, float, float]:
    """Mean, sample std (ddof 1) and the t-based ``level`` confidence interval of the mean.

    With one value the std and the interval are NaN (no spread can be estimated from one seed).
    """
    return t_interval(np.asarray(pd.Series(values).dropna(), dtype=float), level)


def leaderboard_table(
    df: pd.DataFrame, proxy_charge: str = "full", baselines: dict[str, str] | None = None
) -> pd.DataFrame:
    """One row per (dataset, model, prune_ratio, method) of the finished runs, ranked within each ratio
    (full data first, at ratio 0); see the module docstring.

    ``vs_full_mean`` (``_ci_low``, ``_ci_high``, ``_verdict``, ``_n_pairs``) is the paired difference
    method - full on the seeds both finished (positive = better than full); ``vs_baseline_*`` the same
    against ``baseline``. ``rank``: 1 = highest mean final top-1 within the ratio (equal means: lower
    total compute first); ``tied_with_leader``: not distinguishable from rank 1 (paired by seed).
    ``compute_saved = 1 - total_compute`` (training + scoring); ``train_compute_saved = 1 -
    train_compute`` (training only). ``wallclock_saved = 1 - total_cost_s / full's`` on the same seeds.
    ``pareto``: no other row of the setting has both lower or equal total compute and higher or equal
    mean top-1 (one strictly).
    """
    ok = with_costs(finished(df), proxy_charge)
    for c in SETTING:
        if c not in ok.columns:
            ok[c] = "?"
    wide = paired_wide(paired_table(ok, baselines)).set_index(GROUP)
    full = ok[ok["method"] == "full"]
    rows = [_leaderboard_row(key, g, full, wide) for key, g in ok.groupby(GROUP, sort=True, dropna=False)]
    out = pd.DataFrame(rows)
    for c in LEADERBOARD_COLUMNS:
        if c not in out.columns:
            out[c] = np.nan
    out["pareto"] = False
    for _, idx in out.groupby(SETTING).groups.items():
        sub = out.loc[idx]
        out.loc[idx, "pareto"] = pareto_mask(sub["total_compute"].to_numpy(), sub["acc_mean"].to_numpy())
    out["_contender"] = out["method"] != "full"
    out = out.sort_values(SETTING + ["_contender", "prune_ratio", "rank", "method"], na_position="first")
    return out[LEADERBOARD_COLUMNS].reset_index(drop=True)


def _leaderboard_row(key: tuple, g: pd.DataFrame, full: pd.DataFrame, wide: pd.DataFrame) -> dict:
    """One row of :func:`leaderboard_table`: the runs ``g`` of one group ``key``, against the full-data runs
    ``full`` on the same seeds and the paired comparisons ``wide`` (indexed by group)."""
    rec = dict(zip(GROUP, key))
    seeds = sorted(int(s) for s in g["seed"].dropna().unique())
    acc_mean, acc_std, lo, hi = mean_std_ci(g["final_acc"])
    rec.update(
        pruner=g["pruner"].iloc[0] if "pruner" in g else rec["method"],
        granularity=g["granularity"].iloc[0] if "granularity" in g else "",
        family=g["family"].iloc[0],
        n_seeds=len(seeds),
        seeds=" ".join(map(str, seeds)),
        acc_mean=acc_mean,
        acc_std=acc_std,
        acc_ci_low=lo,
        acc_ci_high=hi,
    )
    for src, dst in MEANS.items():
        rec[dst] = float(g[src].mean()) if src in g else np.nan
    rec["total_cost_s_std"] = float(g["total_cost_s"].std(ddof=1)) if len(g) > 1 else np.nan
    ref = full[(full["dataset"] == rec["dataset"]) & (full["model"] == rec["model"]) & full["seed"].isin(seeds)]
    rec["compute_saved"] = 1.0 - rec["total_compute"]
    rec["train_compute_saved"] = 1.0 - rec["train_compute"]
    rec["wallclock_saved"] = 1.0 - rec["total_cost_s"] / float(ref["total_cost_s"].mean()) if len(ref) else np.nan
    if key in wide.index:
        w = wide.loc[key]
        rec.update(
            rank=w["rank"],
            tied_with_leader=bool(w["tied_with_leader"]),
            baseline=w["baseline"],
            **{c: w[c] for c in wide.columns if c.startswith(("vs_full_", "vs_baseline_"))},
        )
    return rec


def stability_table(df: pd.DataFrame, volatility: pd.DataFrame | None = None) -> pd.DataFrame:
    """Seed spread per (dataset, model, prune_ratio, method): std of final and best top-1 over seeds and,
    when per-epoch curves are available, the accuracy-curve volatility (see :func:`curve_volatility`)."""
    ok = finished(df)
    g = ok.groupby(GROUP, sort=True, dropna=False)
    out = pd.DataFrame(
        {
            "n_seeds": g["seed"].nunique(),
            "final_acc_std": g["final_acc"].std(ddof=1),
            "best_acc_std": g["best_acc"].std(ddof=1) if "best_acc" in ok else np.nan,
            "final_acc_range": g["final_acc"].max() - g["final_acc"].min(),
        }
    ).reset_index()
    if volatility is not None and not volatility.empty:
        out = out.merge(volatility, on=GROUP, how="left")
    return out


def curve_volatility(acc: pd.Series) -> float:
    """Mean absolute epoch-to-epoch change of test accuracy over the second half of training."""
    a = acc.sort_index().to_numpy(dtype=float)
    tail = a[len(a) // 2 :]
    return float(np.abs(np.diff(tail)).mean()) if tail.size >= 2 else np.nan
