"""Sweeps in numbers, words and figures: per-point means with 95% CIs, the best point and the points not
distinguishable from it (paired by seed), Pareto fronts over means, Optuna trial bookkeeping, and the
report sections (``sweep_sections``) built from each sweep's ``results.csv``.

A sweep's results table has one row per run (``full`` included) with the columns ``sweep``, ``kind``,
``point`` (the point's name; ``full`` for the reference), ``axis.<axis>`` (the point's value on each
searched axis), ``seed``, ``status``, ``final_acc``, ``relative_compute`` and, when the method scores
before training, ``scoring_relative_compute``.

Statistics (t-based, as the leaderboard's): a point's 95% CI is ``mean ± t(0.975, n-1) s / sqrt(n)`` over
its seeds. The best point of an ``accuracy`` sweep is the one with the highest mean; another point is *not
distinguishable* from it when the 95% CI of the paired differences (best − point, over the seeds both
ran) contains 0, or when fewer than 2 seeds pair them (no interval can be formed). The cost axis is the
leaderboard's: total relative compute = training relative compute + scoring relative compute.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

REFERENCE = "full"
LEVEL = 0.95


# ---------------------------------------------------------------------------------------------------
# numbers
# ---------------------------------------------------------------------------------------------------


def total_cost(row: dict[str, Any] | pd.Series) -> float:
    """Training relative compute + scoring relative compute (0 when the method scores nothing)."""
    train = row.get("relative_compute")
    score = row.get("scoring_relative_compute")
    train = float("nan") if train is None else float(train)
    score = 0.0 if score is None or (isinstance(score, float) and math.isnan(score)) else float(score)
    return train + score


def mean_ci(x) -> tuple[float, float, float, float, int]:
    """(mean, sample std, CI low, CI high, n); std and CI are NaN with fewer than 2 values."""
    a = np.asarray(pd.Series(x, dtype=float).dropna(), dtype=float)
    n = a.size
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan, 0
    m = float(a.mean())
    if n < 2:
        return m, math.nan, math.nan, math.nan, n
    sd = float(a.std(ddof=1))
    half = float(stats.t.ppf(0.5 + LEVEL / 2, n - 1)) * sd / math.sqrt(n)
    return m, sd, m - half, m + half, n


def paired_diff(a: dict[int, float], b: dict[int, float]) -> tuple[float, float, float, int]:
    """Mean and 95% CI of ``a[s] - b[s]`` over the seeds ``s`` both have; (mean, low, high, n pairs)."""
    common = sorted(set(a) & set(b))
    d = [a[s] - b[s] for s in common]
    m, _, lo, hi, n = mean_ci(d)
    return m, lo, hi, n


def pareto_front_mask(cost, acc) -> np.ndarray:
    """True for points no other point beats (cost <= and accuracy >=, one strictly)."""
    cost, acc = np.asarray(cost, float), np.asarray(acc, float)
    out = np.ones(cost.size, dtype=bool)
    for i in range(cost.size):
        dominated = (cost <= cost[i]) & (acc >= acc[i]) & ((cost < cost[i]) | (acc > acc[i]))
        out[i] = not dominated.any()
    return out


def axis_columns(results: pd.DataFrame) -> list[str]:
    return [c for c in results.columns if c.startswith("axis.")]


def point_table(results: pd.DataFrame, kind: str) -> pd.DataFrame:
    """One row per point of a sweep (and one for ``full``) over its FINISHED runs.

    Columns: ``point``, the ``axis.*`` values, ``n_seeds``, ``acc_mean``, ``acc_std``, ``acc_ci_low``,
    ``acc_ci_high``, ``total_compute`` (mean), ``total_compute_std``, ``realized_prune_ratio``; then for an
    ``accuracy`` sweep ``best`` (bool), ``diff_vs_best`` (best − point, paired mean), ``diff_ci_low``,
    ``diff_ci_high``, ``n_paired`` and ``indistinguishable`` (not distinguishable from the best, the best
    itself included); for a ``pareto`` sweep ``on_front`` (Pareto-optimal over means, ``full`` excluded).
    """
    ok = results[results["status"] == "FINISHED"] if "status" in results.columns else results
    axes = axis_columns(results)
    recs = []
    accs: dict[str, dict[int, float]] = {}
    for point, g in ok.groupby("point", sort=False):
        m, sd, lo, hi, n = mean_ci(g["final_acc"])
        cost = [total_cost(r) for _, r in g.iterrows()]
        cm, csd, _, _, _ = mean_ci(cost)
        rec = {
            "point": point,
            **{a: g[a].iloc[0] for a in axes},
            "n_seeds": n,
            "seeds": ",".join(str(int(s)) for s in sorted(g["seed"])),
            "acc_mean": m,
            "acc_std": sd,
            "acc_ci_low": lo,
            "acc_ci_high": hi,
            "total_compute": cm,
            "total_compute_std": csd,
            "realized_prune_ratio": float(g["realized_prune_ratio"].mean())
            if "realized_prune_ratio" in g
            else math.nan,
        }
        recs.append(rec)
        accs[point] = {int(s): float(a) for s, a in zip(g["seed"], g["final_acc"])}
    t = pd.DataFrame(recs)
    if t.empty:
        return t
    t["is_reference"] = t["point"] == REFERENCE
    cand = t[~t["is_reference"]]
    if kind == "accuracy" and len(cand):
        best = cand.sort_values("acc_mean", ascending=False, kind="stable").iloc[0]["point"]
        t["best"] = t["point"] == best
        diffs = [
            paired_diff(accs[best], accs[p]) if p != best else (0.0, math.nan, math.nan, len(accs[p]))
            for p in t["point"]
        ]
        t["diff_vs_best"] = [d[0] for d in diffs]
        t["diff_ci_low"] = [d[1] for d in diffs]
        t["diff_ci_high"] = [d[2] for d in diffs]
        t["n_paired"] = [d[3] for d in diffs]
        t["indistinguishable"] = [
            (p == best) or (not r and (n < 2 or not lo > 0))
            for p, r, (_, lo, _, n) in zip(t["point"], t["is_reference"], diffs)
        ]
    elif len(cand):
        mask = pareto_front_mask(cand["total_compute"], cand["acc_mean"])
        t["on_front"] = False
        t.loc[cand.index, "on_front"] = mask
    return t


def trial_bookkeeping(trials: pd.DataFrame, asked: int) -> dict[str, Any]:
    """Optuna trials by outcome: ``complete``, ``stopped`` (early-stopped: ``(trial, where)``), ``failed``,
    ``running`` (trial numbers) and ``warnings`` (fewer complete trials than ``asked``; stopped ones)."""
    state = trials["state"] if len(trials) else pd.Series(dtype=str)
    complete = [int(t) for t in trials.loc[state == "COMPLETE", "trial"]]
    stopped = [
        (int(t), str(w) if isinstance(w, str) else "?")
        for t, w in zip(trials.loc[state == "PRUNED", "trial"], trials.loc[state == "PRUNED", "stopped_at"])
    ]
    failed = [int(t) for t in trials.loc[state == "FAIL", "trial"]]
    running = [int(t) for t in trials.loc[state == "RUNNING", "trial"]]
    warnings = []
    if len(complete) < asked:
        warnings.append(
            f"only {len(complete)} of the {asked} trials asked for completed ({len(stopped)} early-stopped, "
            f"{len(failed)} failed, {len(running)} running); the best is chosen among the completed ones "
            "only: run more trials (--n-trials) for a sturdier answer"
        )
    return {"complete": complete, "stopped": stopped, "failed": failed, "running": running, "warnings": warnings}


# ---------------------------------------------------------------------------------------------------
# words
# ---------------------------------------------------------------------------------------------------


def _pct(x: float, nd: int = 2) -> str:
    return "–" if x is None or pd.isna(x) else f"{100 * x:.{nd}f}"


def _ci(lo: float, hi: float) -> str:
    return "–" if pd.isna(lo) else f"[{_pct(lo)}, {_pct(hi)}]"


def _val(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return "–" if math.isnan(v) else f"{v:g}"
    return str(v)


def best_sentence(points: pd.DataFrame) -> str:
    """The best point with its CI, and the points not distinguishable from it."""
    if "best" not in points.columns or not points["best"].any():
        return "no completed point"
    b = points[points["best"]].iloc[0]
    ties = points[points["indistinguishable"] & ~points["best"]]
    axes = [c for c in points.columns if c.startswith("axis.")]
    where = lambda r: ", ".join(f"{c[5:]} = {_val(r[c])}" for c in axes) or r["point"]  # noqa: E731
    s = (
        f"best: {where(b)}: {_pct(b['acc_mean'])}% (95% CI {_ci(b['acc_ci_low'], b['acc_ci_high'])}, "
        f"{int(b['n_seeds'])} seeds)"
    )
    if len(ties):
        s += "; not distinguishable from it (paired by seed, the 95% CI of the difference contains 0): " + "; ".join(
            f"{where(r)} ({_pct(r['acc_mean'])}%, diff {_pct(r['diff_vs_best'])} pp {_ci(r['diff_ci_low'], r['diff_ci_high'])})"
            for _, r in ties.iterrows()
        )
    else:
        s += "; every other point is worse (paired 95% CI of the difference above 0)"
    return s


def format_points(
    points: pd.DataFrame, kind: str, trials: pd.DataFrame | None = None, warnings: list[str] | None = None
) -> str:
    """Plain-text summary: the points table, the best (accuracy) or the front (pareto), trial bookkeeping."""
    lines = []
    if points.empty:
        lines.append("no finished runs")
    else:
        axes = [c for c in points.columns if c.startswith("axis.")]
        w = {c: max(10, len(c) - 3) for c in axes}
        head = "".join(f"{c[5:]:>{w[c]}}" for c in axes) + f"{'seeds':>6}{'acc %':>8}{'95% CI':>18}{'total cost':>11}"
        if kind == "accuracy":
            head += f"{'best - this pp':>16}{'CI':>18}  tie"
        else:
            head += "  front"
        lines.append(head)
        for _, r in points.iterrows():
            ax = "".join(f"{(_val(r[c]) if not r['is_reference'] else 'full'):>{w[c]}}" for c in axes)
            line = (
                f"{ax}{int(r['n_seeds']):>6}{_pct(r['acc_mean']):>8}{_ci(r['acc_ci_low'], r['acc_ci_high']):>18}"
                f"{r['total_compute']:>11.3f}"
            )
            if kind == "accuracy" and "best" in points.columns:
                line += (
                    ""
                    if r["is_reference"]
                    else f"{_pct(r['diff_vs_best']):>16}{_ci(r['diff_ci_low'], r['diff_ci_high']):>18}  "
                    + ("BEST" if r["best"] else "yes" if r["indistinguishable"] else "no")
                )
            elif "on_front" in points.columns:
                line += "  *" if r["on_front"] is True else ""
            lines.append(line)
        if kind == "accuracy":
            lines.append(best_sentence(points))
    if trials is not None and len(trials):
        st = trials["state"].value_counts().to_dict()
        lines.append("trials: " + ", ".join(f"{v} {k.lower()}" for k, v in sorted(st.items())))
        stopped = trials[trials["state"] == "PRUNED"]
        if len(stopped):
            lines.append(
                "early-stopped (excluded from the best): "
                + "; ".join(f"trial {int(t)} ({w})" for t, w in zip(stopped["trial"], stopped["stopped_at"]))
            )
    for msg in warnings or []:
        lines.append(f"WARNING: {msg}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------------


def _range_labels(pruner: str, axis: str, p: float | None) -> dict[float, str]:
    """Named ends of an option's declared range at prune ratio ``p`` (e.g. OrderDP: uniform / greedy)."""
    from prunebench.pruners import get_pruner_class

    name = axis.removesuffix("@rel")
    try:
        cls = get_pruner_class(pruner)
    except Exception:
        return {}
    labels = cls.range_labels.get(name)
    if not labels:
        return {}
    if axis.endswith("@rel"):
        return {0.0: labels[0], 1.0: labels[1]}
    if p is None:
        return {}
    rng = cls.option_range(name, p)
    if rng is None:  # labels declared for an option whose range does not depend on p
        return {}
    lo, hi = rng
    return {round(lo, 9): labels[0], round(hi, 9): labels[1]}


def accuracy_figure(points: pd.DataFrame, results: pd.DataFrame, path: Path, title: str) -> None:
    """Accuracy against the swept option: mean over seeds with its 95% CI band (one line per value of a
    second axis), the best point ringed, the range's named ends labelled, full data as a reference."""
    from matplotlib.figure import Figure

    axes = [c for c in points.columns if c.startswith("axis.")]
    x = next((c for c in axes if c != "axis.prune_ratio"), axes[0])
    other = [c for c in axes if c != x]
    pts = points[~points["is_reference"]].sort_values(x)
    fig = Figure(figsize=(7.5, 5.0), layout="constrained")
    ax = fig.subplots()
    groups = pts.groupby(other, sort=True) if other else [((), pts)]
    cmap = _cmap()
    for i, (key, g) in enumerate(groups):
        col = cmap(i / max(1, len(groups) - 1)) if other else "tab:blue"
        lab = (
            ", ".join(f"{c[5:]} = {_val(k)}" for c, k in zip(other, key if isinstance(key, tuple) else (key,)))
            or "mean over seeds"
        )
        ax.plot(g[x], g["acc_mean"], "o-", color=col, label=lab)
        ax.fill_between(g[x].astype(float), g["acc_ci_low"], g["acc_ci_high"], color=col, alpha=0.18, lw=0)
    ref = points[points["is_reference"]]
    if len(ref):
        r = ref.iloc[0]
        ax.axhline(r["acc_mean"], color="black", ls="--", lw=1.2, label=f"full data ({_pct(r['acc_mean'])}%)")
        if not pd.isna(r["acc_ci_low"]):
            ax.axhspan(r["acc_ci_low"], r["acc_ci_high"], color="grey", alpha=0.12, lw=0)
    _ring_best(ax, pts, x)
    ok = results[results["point"] != REFERENCE]
    pruner = str(ok["pruner"].iloc[0]) if len(ok) and "pruner" in ok else ""
    p = float(ok["prune_ratio"].iloc[0]) if len(ok) and ok["prune_ratio"].nunique() == 1 else None
    ends = _range_labels(pruner, x[5:], p)
    ylo = float(np.nanmin(pts["acc_ci_low"].fillna(pts["acc_mean"]))) if len(pts) else 0
    _label_range_ends(ax, pts, x, ends)
    ax.set_xlabel(
        x[5:].replace("@rel", " (position in its valid range)")
        + (f"   (prune ratio {p:g})" if p is not None and "axis.prune_ratio" not in axes else "")
    )
    ax.set_ylabel("final test top-1 (mean over seeds, 95% CI band)")
    ax.yaxis.set_major_formatter(_pct_formatter())
    ax.set_ylim(bottom=min(ylo, ax.get_ylim()[0]) - 0.01)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="best")
    fig.savefig(path, dpi=130)


def _ring_best(ax, pts: pd.DataFrame, x: str) -> None:
    """Ring the best point of :func:`accuracy_figure` and fill those not distinguishable from it."""
    if "best" in pts.columns and pts["best"].any():
        b = pts[pts["best"]].iloc[0]
        ax.scatter(
            [b[x]],
            [b["acc_mean"]],
            s=160,
            facecolors="none",
            edgecolors="crimson",
            lw=1.6,
            zorder=5,
            label="best (ringed); filled: not distinguishable",
        )
        tie = pts[pts["indistinguishable"]]
        ax.scatter(tie[x], tie["acc_mean"], s=40, color="crimson", zorder=4)


def _label_range_ends(ax, pts: pd.DataFrame, x: str, ends: dict[float, str]) -> None:
    """Label the named ends ``ends`` (value -> name) of the swept option ``x`` where a point of ``pts`` lies."""
    for v, lab in ends.items():
        hit = pts[np.isclose(pts[x].astype(float), v)]
        if len(hit):
            low_end = v == min(ends)
            ax.annotate(
                f"{lab}\n({x[5:].removesuffix('@rel')} = {v:g})",
                (v, hit["acc_mean"].iloc[0]),
                xytext=(6 if low_end else -6, -34),
                textcoords="offset points",
                ha="left" if low_end else "right",
                fontsize=8,
                color="dimgray",
                arrowprops={"arrowstyle": "-", "color": "lightgray"},
            )


def pareto_figure(points: pd.DataFrame, path: Path, title: str, leaderboard: pd.DataFrame | None = None) -> None:
    """Accuracy against total relative compute: each point a mean over seeds with 95% CI error bars
    (accuracy) and ± std (compute), coloured by the swept option; the front over means; full data and
    the study's leaderboard methods (means over seeds) for comparison."""
    from matplotlib.figure import Figure

    axes = [c for c in points.columns if c.startswith("axis.")]
    colour = next((c for c in axes if c != "axis.prune_ratio"), axes[0])
    pts = points[~points["is_reference"]]
    fig = Figure(figsize=(8.0, 5.4), layout="constrained")
    ax = fig.subplots()
    if leaderboard is not None and len(leaderboard):
        _leaderboard_overlay(ax, leaderboard)
    vals = pts[colour].astype(float) if len(pts) else pd.Series(dtype=float)
    # points of equal cost (e.g. OrderDP's splits at one p) are spread sideways by up to 1% of the axis so
    # that their error bars stay readable; the front and the table use the exact means
    span = float(np.ptp(pts["total_compute"])) if len(pts) > 1 else 0.0
    lo_v, hi_v = (float(vals.min()), float(vals.max())) if len(vals) else (0.0, 0.0)
    dx = ((vals - lo_v) / (hi_v - lo_v) - 0.5) * 0.02 * (span or 1.0) if hi_v > lo_v else 0.0 * vals
    xs = pts["total_compute"] + dx
    yerr = np.vstack(
        [(pts["acc_mean"] - pts["acc_ci_low"]).fillna(0), (pts["acc_ci_high"] - pts["acc_mean"]).fillna(0)]
    )
    ax.errorbar(
        xs,
        pts["acc_mean"],
        yerr=yerr,
        xerr=pts["total_compute_std"].fillna(0),
        fmt="none",
        ecolor="0.55",
        elinewidth=1,
        capsize=2,
        zorder=1,
    )
    sc = ax.scatter(xs, pts["acc_mean"], c=vals, cmap=_cmap(), s=45, zorder=3, edgecolors="k", linewidths=0.4)
    fig.colorbar(sc, ax=ax, label=colour[5:].replace("@rel", " (position in its valid range)"))
    if "on_front" in pts.columns:
        front = pts[pts["on_front"].astype(bool)].sort_values("total_compute")
        ax.step(
            front["total_compute"],
            front["acc_mean"],
            where="post",
            color="crimson",
            lw=1.4,
            label=f"Pareto front over means ({len(front)} points)",
        )
    ref = points[points["is_reference"]]
    if len(ref):
        r = ref.iloc[0]
        ax.axhline(r["acc_mean"], color="black", ls="--", lw=1.0, label=f"full data ({_pct(r['acc_mean'])}%)")
    ax.set_xlabel("total relative compute (training + scoring, over full data's training)")
    ax.set_ylabel("final test top-1 (mean, 95% CI)")
    ax.yaxis.set_major_formatter(_pct_formatter())
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path, dpi=130)


def _leaderboard_overlay(ax, leaderboard: pd.DataFrame) -> None:
    """The study's leaderboard methods (but full data) as grey crosses on :func:`pareto_figure`."""
    lb = leaderboard[leaderboard["method"] != REFERENCE]
    ax.scatter(
        lb["total_compute"],
        lb["acc_mean"],
        marker="x",
        color="gray",
        s=28,
        alpha=0.7,
        label="leaderboard methods (mean over seeds)",
    )
    for _, r in lb.iterrows():
        ax.annotate(
            f"{r['method']} p={r['prune_ratio']:g}",
            (r["total_compute"], r["acc_mean"]),
            fontsize=5.5,
            color="gray",
            xytext=(3, 2),
            textcoords="offset points",
        )


def _cmap():
    import matplotlib

    return matplotlib.colormaps["viridis"]


def _pct_formatter():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _: f"{100 * v:.0f}%")


# ---------------------------------------------------------------------------------------------------
# report sections
# ---------------------------------------------------------------------------------------------------

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def read_sweeps(folder: Path) -> dict[str, pd.DataFrame]:
    """``<results folder>/sweeps/<name>/results.csv`` of every sweep that has results, by name."""
    out: dict[str, pd.DataFrame] = {}
    root = Path(folder) / "sweeps"
    if not root.is_dir():
        return out
    for d in sorted(root.iterdir()):
        f = d / "results.csv"
        if d.is_dir() and not d.is_symlink() and _SAFE.match(d.name) and f.is_file():
            t = pd.read_csv(f)
            if {"point", "final_acc", "seed"} <= set(t.columns) and len(t):
                out[d.name] = t
    return out


def leaderboard_costs(ok: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy and total relative compute per (method, prune ratio) of a leaderboard's finished runs."""
    if ok is None or ok.empty:
        return pd.DataFrame(columns=["method", "prune_ratio", "acc_mean", "total_compute"])
    t = ok.assign(total_compute=[total_cost(r) for _, r in ok.iterrows()])
    return (
        t.groupby(["method", "prune_ratio"], sort=True)
        .agg(acc_mean=("final_acc", "mean"), total_compute=("total_compute", "mean"))
        .reset_index()
    )


def display_points(points: pd.DataFrame, kind: str) -> pd.DataFrame:
    axes = [c for c in points.columns if c.startswith("axis.")]
    d = {}
    for c in axes:
        d[c[5:]] = ["full data" if ref else _val(v) for v, ref in zip(points[c], points["is_reference"])]
    d["seeds"] = points["n_seeds"].astype(int).astype(str)
    d["top-1 % (mean ± std)"] = [f"{_pct(m)} ± {_pct(s)}" for m, s in zip(points["acc_mean"], points["acc_std"])]
    d["95% CI"] = [_ci(lo, hi) for lo, hi in zip(points["acc_ci_low"], points["acc_ci_high"])]
    d["total cost"] = [f"{c:.3f}" for c in points["total_compute"]]
    if kind == "accuracy" and "best" in points.columns:
        d["best − this (pp), paired 95% CI"] = [
            "" if ref else "best" if b else f"{_pct(m)} {_ci(lo, hi)}"
            for ref, b, m, lo, hi in zip(
                points["is_reference"],
                points["best"],
                points["diff_vs_best"],
                points["diff_ci_low"],
                points["diff_ci_high"],
            )
        ]
        d["not distinguishable from best"] = [
            "" if ref else "yes" if t else "no" for ref, t in zip(points["is_reference"], points["indistinguishable"])
        ]
    elif "on_front" in points.columns:
        d["on the front"] = [
            "" if ref else ("yes" if f is True else "") for ref, f in zip(points["is_reference"], points["on_front"])
        ]
    return pd.DataFrame(d)


def sweep_sections(
    sweeps: dict[str, pd.DataFrame], leaderboard_ok: pd.DataFrame | None, figdir: Path, tabdir: Path
) -> list:
    """One report section holding every sweep: its table (``tables/sweep-<name>.csv``), its figure
    (``figures/sweep-<name>.png``) and the best point or the front in words. Empty when no sweep has results."""
    from prunebench.reports.render import Figure, Section, Table

    if not sweeps:
        return []
    sec = Section("Sweeps", "sweeps")
    sec.add(
        "Every sweep of the study that has results. Each point is a mean over the sweep's seeds with its "
        "t-based 95% confidence interval; the total cost is the leaderboard's (training + scoring relative "
        "compute). In an accuracy sweep the best point is the highest mean, and a point is not "
        "distinguishable from it when the 95% CI of the per-seed differences (paired by seed) contains 0."
    )
    lb = leaderboard_costs(leaderboard_ok)
    for name, res in sweeps.items():
        kind = str(res["kind"].dropna().iloc[0]) if "kind" in res.columns and res["kind"].notna().any() else "accuracy"
        pts = point_table(res, kind)
        if pts.empty:
            continue
        pts.to_csv(tabdir / f"sweep-{name}.csv", index=False)
        res.to_csv(tabdir / f"sweep-{name}-runs.csv", index=False)
        ok = res[(res["point"] != REFERENCE) & (res.get("status", "FINISHED") == "FINISHED")]
        pruner = str(ok["pruner"].iloc[0]) if len(ok) else "?"
        ratios = sorted(ok["prune_ratio"].unique()) if len(ok) else []
        what = f"{pruner}, prune ratio {ratios[0]:g}" if len(ratios) == 1 else f"{pruner}"
        sec.add(("h3", f"{name} ({kind}: {what})"))
        fig = figdir / f"sweep-{name}.png"
        if kind == "accuracy":
            accuracy_figure(pts, res, fig, f"{name}: accuracy vs {', '.join(c[5:] for c in axis_columns(res))}")
            cap = (
                "Final test top-1 against the swept option: mean over seeds with its 95% CI band; the best "
                "point ringed, the points not distinguishable from it filled red; named ends of the option's "
                "valid range labelled; full data (dashed, grey band: its 95% CI) as the reference."
            )
        else:
            pareto_figure(pts, fig, f"{name}: accuracy vs total compute", lb)
            cap = (
                "Each point: mean over seeds (error bars: 95% CI of accuracy, ± std of compute), coloured by "
                "the swept option (points of equal cost spread sideways by at most 1% of the axis); red staircase: the "
                "Pareto front over the means; grey crosses: the "
                "study's leaderboard methods on the same axes; dashed: full data."
            )
        sec.add(
            Figure(
                f"figures/sweep-{name}.png",
                "Accuracy vs " + ("the swept option" if kind == "accuracy" else "total compute"),
                cap,
            )
        )
        if kind == "accuracy":
            sec.add(best_sentence(pts))
        n_seed = pts.loc[~pts["is_reference"], "n_seeds"]
        if len(n_seed) and n_seed.min() < 2:
            sec.add(("note", f"Some points of {name} have a single seed: no interval for them."))
        sec.add(Table(display_points(pts, kind), csv=f"tables/sweep-{name}.csv"))
    return [sec]
