"""The budget axis of a report (a study run at several epoch budgets): pure functions, pandas in, pandas out.

Gap to full data
----------------
For a (method, prune ratio) at a budget of ``E`` epochs, the gap is the paired difference
``d_s = acc_method(E, s) - acc_full(E, s)`` over the seeds ``s`` both finished at that budget (method - full:
negative = the method loses to full data), with its mean and t-based 95% interval
(:func:`prunebench.reports.stats.paired`). Full data is always the run of the SAME budget.

Whether the gap changes with the budget is itself a paired question: between the shortest budget
``E1`` and the longest ``E2`` at which the method ran that ratio,
``c_s = [acc_m(E2, s) - acc_f(E2, s)] - [acc_m(E1, s) - acc_f(E1, s)]`` over the seeds present in all four
cells, mean and t interval. ``c > 0``: the method moved towards (or past) full data at the longer budget.
The change is *distinguishable* only when its interval excludes 0.

OrderDP's analyses by budget
----------------------------
Each analysis compares a method with ``random-dynamic`` (the unbiased uniform baseline at the same prune
ratio, budget and seed) by a paired difference over seeds, and the verdict of a claim is the sign of that
interval: "holds" (interval on the claimed side of 0), "contradicted" (on the other side), "not
distinguishable" (contains 0, or one pair) or "not measured" (no data).

Correlation: Pearson's r of two per-run quantities with the 95% interval from Fisher's z transform,
``tanh(atanh(r) -/+ z_0.975 / sqrt(n - 3))`` (defined for n >= 4; the runs are treated as independent, which
runs of the same seed are not quite).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as _st

from prunebench.reports.stats import FEW_SEEDS, SETTING, paired, t_interval

BASELINE = "random-dynamic"
CELL = SETTING + ["epochs", "prune_ratio", "method"]


def budgets(df: pd.DataFrame) -> list[int]:
    """The distinct epoch budgets of the table's finished runs (sorted; [] when the table has none)."""
    if "epochs" not in df.columns:
        return []
    ok = df[df["status"] == "FINISHED"] if "status" in df.columns else df
    return sorted(int(e) for e in pd.to_numeric(ok["epochs"], errors="coerce").dropna().unique())


def _per_seed(ok: pd.DataFrame, method: str, epochs: int, p: float | None, col: str = "final_acc") -> pd.Series:
    g = ok[(ok["method"] == method) & (ok["epochs"] == epochs)]
    if p is not None:
        g = g[np.isclose(g["prune_ratio"].astype(float), p)]
    return g.groupby("seed")[col].mean().dropna()


def _cells(ok: pd.DataFrame, exclude: tuple[str, ...] = ("full",)) -> list[tuple]:
    keys = ok.loc[~ok["method"].isin(exclude), CELL].drop_duplicates()
    return sorted(map(tuple, keys.itertuples(index=False)))


def gap_table(ok: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, model, epochs, prune ratio, method): the gap to full data at the same budget (module
    docstring). Columns: the cell, n_pairs, paired_seeds, gap_mean, gap_sd, gap_ci_low, gap_ci_high,
    verdict (better / worse / not distinguishable / no shared seeds), acc_mean, full_acc_mean (both over
    the paired seeds)."""
    rows = []
    for ds, mo, e, p, m in _cells(ok):
        s = ok[(ok["dataset"] == ds) & (ok["model"] == mo)]
        mine, full = _per_seed(s, m, e, p), _per_seed(s, "full", e, None)
        r = paired(mine, full)
        seeds = sorted(set(mine.index) & set(full.index))
        rows.append(
            {
                "dataset": ds,
                "model": mo,
                "epochs": int(e),
                "prune_ratio": float(p),
                "method": m,
                "n_pairs": r["n_pairs"],
                "paired_seeds": r["paired_seeds"],
                "gap_mean": r["diff_mean"],
                "gap_sd": r["diff_sd"],
                "gap_ci_low": r["diff_ci_low"],
                "gap_ci_high": r["diff_ci_high"],
                "verdict": r["verdict"],
                "acc_mean": float(mine.loc[seeds].mean()) if seeds else np.nan,
                "full_acc_mean": float(full.loc[seeds].mean()) if seeds else np.nan,
            }
        )
    cols = CELL + [
        "n_pairs",
        "paired_seeds",
        "gap_mean",
        "gap_sd",
        "gap_ci_low",
        "gap_ci_high",
        "verdict",
        "acc_mean",
        "full_acc_mean",
    ]
    return pd.DataFrame(rows, columns=cols)


def _gap_per_seed(s: pd.DataFrame, method: str, e: int, p: float) -> pd.Series:
    mine, full = _per_seed(s, method, e, p), _per_seed(s, "full", e, None)
    seeds = sorted(set(mine.index) & set(full.index))
    return mine.loc[seeds] - full.loc[seeds]


def gap_changes(ok: pd.DataFrame, gaps: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, model, method, prune ratio) with at least two budgets: the change of the gap from the
    shortest to the longest budget, paired by seed (module docstring). Columns: dataset, model, method,
    prune_ratio, epochs_from, epochs_to, gap_from, gap_to (their own means, all their seeds), n_pairs,
    change_mean, change_ci_low, change_ci_high, distinguishable, and ``text``: the plain-language verdict."""
    rows = []
    for (ds, mo, m, p), g in gaps.groupby(SETTING + ["method", "prune_ratio"], sort=True):
        g = g.dropna(subset=["gap_mean"]).sort_values("epochs")
        if len(g) < 2:
            continue
        lo, hi = g.iloc[0], g.iloc[-1]
        s = ok[(ok["dataset"] == ds) & (ok["model"] == mo)]
        a, b = _gap_per_seed(s, m, int(hi["epochs"]), p), _gap_per_seed(s, m, int(lo["epochs"]), p)
        seeds = sorted(set(a.index) & set(b.index))
        mean, _, clo, chi = t_interval((a.loc[seeds] - b.loc[seeds]).to_numpy(float))
        rec = {
            "dataset": ds,
            "model": mo,
            "method": m,
            "prune_ratio": float(p),
            "epochs_from": int(lo["epochs"]),
            "epochs_to": int(hi["epochs"]),
            "gap_from": float(lo["gap_mean"]),
            "gap_to": float(hi["gap_mean"]),
            "n_pairs": len(seeds),
            "change_mean": mean,
            "change_ci_low": clo,
            "change_ci_high": chi,
            "distinguishable": bool(not pd.isna(clo) and (clo > 0 or chi < 0)),
        }
        rec["text"] = change_text(rec)
        rows.append(rec)
    cols = SETTING + [
        "method",
        "prune_ratio",
        "epochs_from",
        "epochs_to",
        "gap_from",
        "gap_to",
        "n_pairs",
        "change_mean",
        "change_ci_low",
        "change_ci_high",
        "distinguishable",
        "text",
    ]
    return pd.DataFrame(rows, columns=cols)


def _pp(x: float) -> str:
    return "–" if pd.isna(x) else f"{100 * x:+.2f} pp"


def change_text(r: dict[str, Any]) -> str:
    """``orderdp p=0.5: the gap to full shrinks from -1.71 pp at 6 epochs to -0.40 pp at 54; the change
    +1.31 pp [+0.52, +2.10] (3 paired seeds) is distinguishable from 0``."""
    a, b = r["gap_from"], r["gap_to"]
    ra, rb = round(1e4 * a), round(1e4 * b)  # compared as displayed, to 0.01 pp
    if ra * rb < 0:
        how = "changes sign"
    else:
        how = "shrinks" if abs(rb) < abs(ra) else ("grows" if abs(rb) > abs(ra) else "stays")
    head = (
        f"{r['method']} p={r['prune_ratio']:g}: the gap to full {how} from {_pp(a)} at {r['epochs_from']} "
        f"epochs to {_pp(b)} at {r['epochs_to']}"
    )
    if how == "stays":
        head = (
            f"{r['method']} p={r['prune_ratio']:g}: the gap to full stays at {_pp(a)} from {r['epochs_from']} "
            f"to {r['epochs_to']} epochs"
        )
    if r["n_pairs"] < 2 or pd.isna(r["change_ci_low"]):
        return f"{head}; the change cannot be tested ({r['n_pairs']} seed(s) in all four cells)"
    ci = f"{_pp(r['change_mean'])} [{100 * r['change_ci_low']:+.2f}, {100 * r['change_ci_high']:+.2f}]"
    few = f"; fewer than {FEW_SEEDS} seeds: weak" if r["n_pairs"] < FEW_SEEDS else ""
    if r["distinguishable"]:
        side = "towards the method" if r["change_mean"] > 0 else "towards full data"
        return f"{head}; the change {ci} ({r['n_pairs']} paired seeds) is distinguishable from 0, {side}{few}"
    return f"{head}; the change {ci} ({r['n_pairs']} paired seeds) is not distinguishable from 0{few}"


# ---------------------------------------------------------------------------------------------------
# correlation
# ---------------------------------------------------------------------------------------------------


def pearson_fisher(x: np.ndarray, y: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """Pearson's r of paired samples with the Fisher-z ``level`` interval (NaN interval for n < 4; NaN r
    when either sample is constant)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    n = int(x.size)
    out = {"n": n, "r": np.nan, "ci_low": np.nan, "ci_high": np.nan}
    if n < 2 or x.std() == 0 or y.std() == 0:
        return out
    dx, dy = x - x.mean(), y - y.mean()
    r = float(np.clip((dx @ dy) / math.sqrt((dx @ dx) * (dy @ dy)), -1.0, 1.0))
    out["r"] = r
    if n >= 4:
        z, half = math.atanh(min(max(r, -1 + 1e-15), 1 - 1e-15)), _st.norm.ppf(0.5 + level / 2) / math.sqrt(n - 3)
        out["ci_low"], out["ci_high"] = math.tanh(z - half), math.tanh(z + half)
    return out


def claim_verdict(n: int, lo: float, hi: float, claimed_positive: bool = True) -> str:
    """holds / contradicted / not distinguishable / not measured, from the interval of the claimed effect
    over ``n`` pairs (no pair: not measured; one pair, no interval: not distinguishable)."""
    if n == 0:
        return "not measured"
    if pd.isna(lo) or pd.isna(hi):
        return "not distinguishable"
    if (lo > 0) if claimed_positive else (hi < 0):
        return "holds"
    if (hi < 0) if claimed_positive else (lo > 0):
        return "contradicted"
    return "not distinguishable"


# ---------------------------------------------------------------------------------------------------
# OrderDP's analyses: a per-run (or per seed-pair) value, by budget, against random-dynamic
# ---------------------------------------------------------------------------------------------------


def versus_baseline(values: pd.DataFrame, claimed_positive: bool = True, baseline: str = BASELINE) -> pd.DataFrame:
    """``values``: columns dataset, model, epochs, prune_ratio, method, unit (a seed, or a pair of seeds),
    value. Per cell: the mean and t interval of the value over its units and, for every method but the
    baseline, the paired difference method - baseline over the units both have (same budget and ratio)
    with the claim's verdict (:func:`claim_verdict`; the claim is ``method > baseline`` when
    ``claimed_positive``)."""
    rows = []
    for key, g in values.groupby(CELL, sort=True):
        rec = dict(zip(CELL, key))
        mine = g.groupby("unit")["value"].mean()
        m, _, lo, hi = t_interval(mine.to_numpy(float))
        rec.update(n_units=int(mine.size), mean=m, ci_low=lo, ci_high=hi)
        if rec["method"] not in (baseline, "full"):  # full data: shown, never compared
            at = values[
                (values["dataset"] == rec["dataset"])
                & (values["model"] == rec["model"])
                & (values["epochs"] == rec["epochs"])
                & (values["method"] == baseline)
                & np.isclose(values["prune_ratio"].astype(float), float(rec["prune_ratio"]))
            ]
            ref = at.groupby("unit")["value"].mean()
            units = sorted(set(mine.index) & set(ref.index))
            dm, _, dlo, dhi = t_interval((mine.loc[units] - ref.loc[units]).to_numpy(float))
            rec.update(
                n_pairs=len(units),
                diff_mean=dm,
                diff_ci_low=dlo,
                diff_ci_high=dhi,
                claim=claim_verdict(len(units), dlo, dhi, claimed_positive),
            )
        rows.append(rec)
    cols = CELL + [
        "n_units",
        "mean",
        "ci_low",
        "ci_high",
        "n_pairs",
        "diff_mean",
        "diff_ci_low",
        "diff_ci_high",
        "claim",
    ]
    return pd.DataFrame(rows, columns=cols)


def consecutive_jaccard_values(ok: pd.DataFrame) -> pd.DataFrame:
    """Per run: its mean Jaccard overlap of consecutive epochs' kept sets (``jaccard_mean`` of the results
    row: epochs 2..E against their predecessor), one unit per seed; full data is left out."""
    if "jaccard_mean" not in ok.columns:
        return pd.DataFrame(columns=CELL + ["unit", "value"])
    d = ok[(ok["method"] != "full") & (ok["granularity"].astype(str) != "static")].dropna(subset=["jaccard_mean"])
    return d.assign(unit=d["seed"].astype(int).astype(str), value=d["jaccard_mean"].astype(float))[
        CELL + ["unit", "value"]
    ]


def cross_seed_values(cell: dict[str, Any], masks: dict[int, np.ndarray]) -> pd.DataFrame:
    """Per pair of seeds of one cell: the Jaccard overlap of the two runs' kept sets at the same epoch,
    averaged over the epochs both ran (masks: seed -> bool [E, N])."""
    from prunebench.reports.analysis import jaccard

    seeds, rows = sorted(masks), []
    for i, a in enumerate(seeds):
        for b in seeds[i + 1 :]:
            e = min(masks[a].shape[0], masks[b].shape[0])
            v = float(np.mean([jaccard(masks[a][t], masks[b][t]) for t in range(e)]))
            rows.append({**cell, "unit": f"{a}-{b}", "value": v})
    return pd.DataFrame(rows, columns=CELL + ["unit", "value"])


def probe_values(hist: pd.DataFrame, key: str, at: str = "mean") -> pd.DataFrame:
    """Per probed run: its ``key`` history (gradient probe) reduced over the probe epochs: ``mean`` or
    ``last`` (the last probe), one unit per seed."""
    h = hist[hist["key"] == key].dropna(subset=["value"])
    if h.empty:
        return pd.DataFrame(columns=CELL + ["unit", "value"])
    h = h.sort_values("epoch")
    red = h.groupby(CELL + ["seed"], sort=True)["value"].agg("mean" if at == "mean" else "last").reset_index()
    return red.assign(unit=red["seed"].astype(int).astype(str))[CELL + ["unit", "value"]]


def probe_profile(hist: pd.DataFrame, key: str = "grad_cosine") -> pd.DataFrame:
    """Mean over seeds of ``key`` at each probe point, the point as the percentage of training done
    (``round(100 (epoch + 1) / E)``): one row per cell, one column per percentage."""
    h = hist[hist["key"] == key].dropna(subset=["value"])
    if h.empty:
        return pd.DataFrame(columns=CELL)
    pct = (100 * (h["epoch"].astype(int) + 1) / h["epochs"].astype(float)).round().astype(int)
    return (
        h.assign(at=pct)
        .pivot_table(index=CELL, columns="at", values="value", aggfunc="mean")
        .rename(columns=lambda c: f"{c}%")
        .reset_index()
    )


def gradnorm_points(hist: pd.DataFrame, ok: pd.DataFrame, key: str = "grad_norm_kept") -> pd.DataFrame:
    """Per probed run: ``value`` = ``key`` at its last probe, and its ``final_acc``."""
    last = probe_values(hist, key, at="last")
    acc = ok.assign(unit=ok["seed"].astype(int).astype(str))[CELL + ["unit", "final_acc"]]
    return last.merge(acc, on=CELL + ["unit"], how="inner")


def gradnorm_accuracy(hist: pd.DataFrame, ok: pd.DataFrame, key: str = "grad_norm_kept") -> pd.DataFrame:
    """Per (dataset, model, epochs): Pearson r (Fisher-z 95% interval) across probed runs between ``key`` at
    each run's last probe and its final test top-1; methods and ratios pooled, full data included. The
    claim (a larger gradient norm goes with a higher accuracy) holds when the interval is above 0."""
    d = gradnorm_points(hist, ok, key)
    if d.empty:
        return pd.DataFrame(columns=SETTING + ["epochs", "n", "r", "ci_low", "ci_high", "claim", "methods"])
    rows = []
    for key_, g in d.groupby(SETTING + ["epochs"], sort=True):
        r = pearson_fisher(g["value"].to_numpy(), g["final_acc"].to_numpy())
        claim = "not measured" if r["n"] < 2 else claim_verdict(int(r["n"]), r["ci_low"], r["ci_high"])
        rows.append(
            {
                **dict(zip(SETTING + ["epochs"], key_)),
                **r,
                "claim": claim,
                "methods": ", ".join(sorted(g["method"].unique())),
            }
        )
    return pd.DataFrame(rows, columns=SETTING + ["epochs", "n", "r", "ci_low", "ci_high", "claim", "methods"])
