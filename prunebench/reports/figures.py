"""Report figures (seaborn on matplotlib ``Figure`` objects: no pyplot state, no display needed).

Every function draws from data prepared by :mod:`prunebench.reports.build` (the results table and the
runs' logged histories/artifacts) and writes one PNG.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from scipy import stats

from prunebench.reports.stats import pareto_mask

DPI = 110
FULL_COLOR = "#222222"
sns.set_theme(style="whitegrid", context="notebook")
# labels come from data: "$\\frac{a$" must be drawn as text, not parsed as (broken) mathtext
matplotlib.rcParams["text.parse_math"] = False


def palette(series: list[str]) -> dict[str, str]:
    """One stable colour per series (full data is always black)."""
    others = [s for s in series if not s.startswith("full")]
    cols = sns.color_palette("tab10" if len(others) <= 10 else "husl", max(1, len(others))).as_hex()
    out = {s: c for s, c in zip(others, cols)}
    out.update({s: FULL_COLOR for s in series if s.startswith("full")})
    return out


def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=DPI, bbox_inches="tight", metadata={"Software": None})


def _grid(n: int, ncols: int = 3, w: float = 5.0, h: float = 3.8, sharey: bool = False):
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(w * ncols, h * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _band(ax, x, mean, sd, color, label, marker=None, ls="-"):
    x, mean, sd = (np.asarray(v, dtype=float) for v in (x, mean, sd))
    ax.plot(x, mean, color=color, label=label, marker=marker, ls=ls, lw=1.8, ms=5)
    sd = np.nan_to_num(sd)
    ax.fill_between(x, mean - sd, mean + sd, color=color, alpha=0.18, lw=0)


def _pct(ax, axis="y"):
    from matplotlib.ticker import PercentFormatter

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(PercentFormatter(1.0, decimals=None))


def _int_x(ax):
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


# ---------------------------------------------------------------------------------------------------


def _ci_half(sd: pd.Series, n: pd.Series, level: float = 0.95) -> np.ndarray:
    """Half-width of the t-based interval of a mean (NaN for one seed)."""
    n = np.asarray(n, float)
    t = np.where(n > 1, stats.t.ppf(0.5 + level / 2, np.maximum(n - 1, 1)), np.nan)
    return t * np.asarray(sd, float) / np.sqrt(n)


def compute_points(ok: pd.DataFrame) -> pd.DataFrame:
    """The points of :func:`accuracy_vs_compute`: per (dataset, model, series, prune ratio) the mean
    total compute and mean final top-1 over seeds, the t-based 95% interval of each mean, the family and
    whether the point is on the Pareto front of its setting (total compute vs mean top-1)."""
    agg = (
        ok.groupby(["dataset", "model", "series", "prune_ratio"])
        .agg(
            family=("family", "first"),
            n=("final_acc", "size"),
            x=("total_compute", "mean"),
            x_sd=("total_compute", "std"),
            y=("final_acc", "mean"),
            y_sd=("final_acc", "std"),
        )
        .reset_index()
    )
    agg["x_half"] = np.nan_to_num(_ci_half(agg["x_sd"], agg["n"]), nan=0.0) * (agg["n"] > 1)
    agg["y_half"] = _ci_half(agg["y_sd"], agg["n"])
    agg["x_low"], agg["x_high"] = agg["x"] - agg["x_half"], agg["x"] + agg["x_half"]
    agg["y_low"], agg["y_high"] = agg["y"] - agg["y_half"], agg["y"] + agg["y_half"]
    agg["pareto"] = False
    for _, idx in agg.groupby(["dataset", "model"]).groups.items():
        sub = agg.loc[idx]
        agg.loc[idx, "pareto"] = pareto_mask(sub["x"].to_numpy(), sub["y"].to_numpy())
    return agg.drop(columns=["x_half", "y_half"])


def accuracy_vs_compute(ok: pd.DataFrame, colors: dict[str, str], path: Path) -> pd.DataFrame:
    """Final top-1 against total compute (training + scoring), one panel per family of methods (static,
    epoch-level, batch-level) and setting: per method a line through its prune ratios, every point with
    its 95% intervals (top-1 and, when it varies over seeds, compute); full data in every panel as the
    reference (point, dashed line and its interval band); the Pareto front of all the setting's points
    dotted grey in every panel. Returns the plotted points (:func:`compute_points`)."""
    pts = compute_points(ok)
    fams = [f for f in ("static", "epoch-level", "batch-level") if f in set(pts["family"])] or sorted(
        set(pts["family"])
    )
    panels = [
        (s, f)
        for s in sorted(set(zip(pts["dataset"], pts["model"])))
        for f in fams
        if (
            (pts["family"] == f)
            & ~pts["series"].str.startswith("full")
            & (pts["dataset"] == s[0])
            & (pts["model"] == s[1])
        ).any()
    ]
    if not panels:  # only full data
        panels = [(s, fams[0]) for s in sorted(set(zip(pts["dataset"], pts["model"])))]
    fig, axes = _grid(len(panels), ncols=3, w=5.6, h=4.6, sharey=True)
    multi = len({s for s, _ in panels}) > 1
    for ax, ((ds, mo), fam) in zip(axes, panels):
        d = pts[(pts["dataset"] == ds) & (pts["model"] == mo)]
        _compute_panel(ax, d, fam, colors, f"{fam}" + (f" — {ds} / {mo}" if multi else ""))
    _save(fig, path)
    return pts


def _compute_panel(ax, d: pd.DataFrame, fam: str, colors: dict[str, str], title: str) -> None:
    """One panel of :func:`accuracy_vs_compute`: the family ``fam`` of one setting's points ``d``, with full
    data and the setting's Pareto front."""
    full = d[d["series"].str.startswith("full")]
    for _, r in full.iterrows():
        ax.axhline(r["y"], color=FULL_COLOR, ls="--", lw=1.0)
        if not np.isnan(r["y_low"]):
            ax.axhspan(r["y_low"], r["y_high"], color=FULL_COLOR, alpha=0.08, lw=0)
        ax.errorbar(
            r["x"],
            r["y"],
            yerr=[[r["y"] - r["y_low"]], [r["y_high"] - r["y"]]],
            fmt="s",
            color=FULL_COLOR,
            ms=6,
            capsize=3,
            label=f"{r['series']} (95% CI)",
        )
    for s, g in d[(d["family"] == fam) & ~d["series"].str.startswith("full")].groupby("series", sort=True):
        g = g.sort_values("x")
        ax.plot(g["x"], g["y"], color=colors[s], lw=1.4, alpha=0.8)
        ax.errorbar(
            g["x"],
            g["y"],
            yerr=[g["y"] - g["y_low"], g["y_high"] - g["y"]],
            xerr=[g["x"] - g["x_low"], g["x_high"] - g["x"]],
            fmt="o",
            color=colors[s],
            ms=5,
            capsize=3,
            lw=1.2,
            label=s,
        )
    front = d[d["pareto"]].sort_values("x")
    ax.step(front["x"], front["y"], where="post", color="grey", ls=":", lw=1.5, label="Pareto front (all methods)")
    ax.set_xlabel("total compute (training + scoring) vs full data")
    ax.set_ylabel("final test top-1")
    _pct(ax, "y")
    _pct(ax, "x")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")


def paired_forest(pt: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Forest plot of the paired differences (method - reference, percentage points) with their 95%
    intervals: one row of panels per prune ratio, left against full data, right against the family
    baseline; methods in rank order; a zero line. Returns the plotted rows."""
    d = pt[pt["reference_kind"].isin(["full", "baseline"])].copy()
    keys = sorted(set(zip(d["dataset"], d["model"], d["prune_ratio"])))
    multi = len({k[:2] for k in keys}) > 1
    n_max = max(
        (
            d[(d["dataset"] == k[0]) & (d["model"] == k[1]) & (d["prune_ratio"] == k[2])]["method"].nunique()
            for k in keys
        ),
        default=1,
    )
    fig, axes = _grid(2 * len(keys), ncols=2, w=6.2, h=0.32 * n_max + 1.4)
    colors = {"better": "#2a9d4b", "worse": "#c44e52", "not distinguishable": "#555555"}
    for i, (ds, mo, p) in enumerate(keys):
        at = d[(d["dataset"] == ds) & (d["model"] == mo) & (d["prune_ratio"] == p)]
        order = at.drop_duplicates("method").sort_values("rank")["method"].tolist()
        for ax, kind in zip(axes[2 * i : 2 * i + 2], ("full", "baseline")):
            g = at[at["reference_kind"] == kind].set_index("method").reindex(order)
            y = np.arange(len(order))
            for yy, (_m, r) in zip(y, g.iterrows()):
                if pd.isna(r["diff_mean"]):
                    continue
                lo = r["diff_ci_low"] if not pd.isna(r["diff_ci_low"]) else r["diff_mean"]
                hi = r["diff_ci_high"] if not pd.isna(r["diff_ci_high"]) else r["diff_mean"]
                ax.errorbar(
                    100 * r["diff_mean"],
                    yy,
                    xerr=[[100 * (r["diff_mean"] - lo)], [100 * (hi - r["diff_mean"])]],
                    fmt="o",
                    color=colors.get(r["verdict"], "#555555"),
                    capsize=3,
                    ms=5,
                )
            labels = [_forest_label(m, g, kind) for m in order]
            ax.set_yticks(y, labels, fontsize=8)
            ax.invert_yaxis()
            ax.axvline(0, color="black", lw=0.8)
            ax.set_xlabel(f"top-1 difference, method − {'full data' if kind == 'full' else 'baseline'} (pp)")
            ax.set_title(
                f"p = {p:g}: vs {'full data' if kind == 'full' else 'family baseline'}"
                + (f" — {ds} / {mo}" if multi else ""),
                fontsize=10,
            )
    _save(fig, path)
    return d


def _forest_label(m: str, g: pd.DataFrame, kind: str) -> str:
    """The y label of method ``m`` in a panel of :func:`paired_forest` against ``kind`` (``full``/``baseline``):
    the reference when it is not the obvious one, and the number of pairs when under 3."""
    if pd.isna(g.loc[m, "reference"]):
        ref = "  (the baseline)" if kind == "baseline" else ""
    else:
        ref = "" if kind == "full" else f"  (vs {g.loc[m, 'reference']})"
    n_pairs = g.loc[m, "n_pairs"]
    return m + ref + (f"  n={int(n_pairs)}" if not pd.isna(n_pairs) and n_pairs < 3 else "")


def accuracy_curves(hist: pd.DataFrame, colors: dict[str, str], path: Path) -> None:
    """Test top-1 over epochs per method, mean over seeds with a +/- std band; one panel per prune ratio
    (full data drawn dashed in every panel)."""
    h = hist[hist["key"] == "test_acc"]
    full = h[h["series"].str.startswith("full")]
    ratios = sorted(r for r in h["prune_ratio"].unique() if r > 0) or [0.0]
    fig, axes = _grid(len(ratios), ncols=3, w=5.2, h=3.9, sharey=True)
    for ax, p in zip(axes, ratios):
        d = pd.concat([h[(h["prune_ratio"] == p) & ~h["series"].str.startswith("full")], full])
        for s, g in d.groupby("series", sort=False):
            a = g.groupby("epoch")["value"].agg(["mean", "std"]).reset_index()
            _band(ax, a["epoch"] + 1, a["mean"], a["std"], colors[s], s, ls="--" if s.startswith("full") else "-")
        ax.set_title(f"prune ratio {p:g}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("test top-1")
        _pct(ax)
        _int_x(ax)
        ax.legend(fontsize=7, loc="lower right")
    _save(fig, path)


def stability(stab: pd.DataFrame, colors: dict[str, str], path: Path) -> None:
    """Seed std of final top-1 per method and prune ratio (and the accuracy-curve volatility)."""
    cols = ["final_acc_std"] + (
        ["curve_volatility"] if "curve_volatility" in stab and stab["curve_volatility"].notna().any() else []
    )
    titles = {
        "final_acc_std": "std of final top-1 over seeds",
        "curve_volatility": "accuracy-curve volatility\n(mean |change| per epoch, 2nd half)",
    }
    fig, axes = _grid(len(cols), ncols=2, w=6.5, h=4.2)
    d = stab.assign(ratio=stab["prune_ratio"].map(lambda p: f"{p:g}"))
    for ax, c in zip(axes, cols):
        sns.barplot(data=d, x="ratio", y=c, hue="series", palette=colors, ax=ax, errorbar=None)
        ax.set_xlabel("prune ratio")
        ax.set_ylabel("top-1 (percentage points)")
        _pct(ax)
        ax.set_title(titles[c])
        ax.legend(fontsize=7)
    _save(fig, path)


def overhead(lb: pd.DataFrame, path: Path, runs: pd.DataFrame | None = None) -> None:
    """Where the time went per method and ratio (means over seeds): training without selection, selection,
    and scoring (with the proxy's original time: a cached proxy costs what it cost to train); an error
    bar of ± one std of the total over seeds and each seed's total as a dot (``runs``: the cost rows)."""
    d = lb.reset_index(drop=True)
    labels = [f"{s}  p={p:g}" for s, p in zip(d["series"], d["prune_ratio"])]
    train = (d["train_time_s"] - d["selection_time_s"]).clip(lower=0)
    fig = Figure(figsize=(8.5, 0.42 * len(d) + 1.6), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(d))
    ax.barh(y, train, color="#4c72b0", label="training (excl. selection)")
    ax.barh(y, d["selection_time_s"], left=train, color="#dd8452", label="selection / planning")
    ax.barh(
        y,
        d["scoring_cost_s"].fillna(0),
        left=train + d["selection_time_s"],
        color="#c44e52",
        label="scoring before training (proxy at its original time)",
    )
    ax.errorbar(
        d["total_cost_s"],
        y,
        xerr=np.nan_to_num(d["total_cost_s_std"].to_numpy(float)),
        fmt="none",
        ecolor="black",
        capsize=3,
        lw=1,
        label="± std of the total over seeds",
    )
    if runs is not None:
        pos = {(s, p): i for i, (s, p) in enumerate(zip(d["series"], d["prune_ratio"]))}
        pts = [
            (r["total_cost_s"], pos[(r["series"], r["prune_ratio"])])
            for _, r in runs.iterrows()
            if (r["series"], r["prune_ratio"]) in pos
        ]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, "k.", ms=4, alpha=0.7, label="one seed's total")
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds (mean over seeds)")
    ax.set_title("Wall-clock: training, selection and scoring (total cost)")
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)


def jaccard_heatmap(d: pd.DataFrame, title: str, path: Path) -> None:
    """Heatmap of a per-epoch overlap (rows: method @ ratio; columns: epoch)."""
    mat = d.pivot_table(index="row", columns="epoch", values="value", aggfunc="mean", sort=False)
    mat.columns = [int(c) + 1 for c in mat.columns]
    fig = Figure(figsize=(min(18, max(8.0, 4.5 + 0.55 * mat.shape[1])), 0.5 * mat.shape[0] + 1.8), layout="constrained")
    ax = fig.subplots()
    sns.heatmap(
        mat,
        ax=ax,
        vmin=0,
        vmax=1,
        cmap="viridis",
        annot=mat.size <= 240,
        fmt=".2f",
        annot_kws={"fontsize": 9},
        cbar_kws={"label": "Jaccard |A n B| / |A u B|"},
    )
    ax.set_xlabel("epoch")
    ax.set_ylabel("")
    ax.set_title(title)
    _save(fig, path)


def usage_histograms(items: list[dict], colors: dict[str, str], path: Path) -> None:
    """Per dynamic method and ratio: how many epochs each sample was trained (``freq[k]``: the fraction of
    samples trained in k epochs, pooled over seeds), with
    the Binomial(E, 1-p) counts that uniform random per-epoch sampling would give."""
    fig, axes = _grid(len(items), ncols=3, w=5.0, h=3.6)
    for ax, it in zip(axes, items):
        f, e, p = np.asarray(it["freq"], float), it["epochs"], it["prune_ratio"]
        k = np.arange(0, max(e + 1, f.size))
        freq = np.pad(f, (0, k.size - f.size))
        ax.bar(k, freq, color=colors[it["series"]], alpha=0.8, width=0.85, label="observed")
        ax.plot(k, stats.binom.pmf(k, e, 1 - p), "k.--", lw=1, ms=4, label=f"Binomial({e}, {1 - p:g})")
        ax.set_title(f"{it['series']}  p={p:g}", fontsize=10)
        ax.set_xlabel("epochs trained (usage count)")
        _int_x(ax)
        ax.set_ylabel("fraction of samples")
        ax.legend(fontsize=7)
    _save(fig, path)


def orderdp_gamma(items: list[dict], path: Path) -> None:
    """OrderDP's surrogate weights gamma_j for the run's (N, s, q) against the empirical keep frequency
    per stored-loss rank (from the plan-time scores and kept masks), binned over ranks."""
    fig, axes = _grid(len(items), ncols=2, w=6.5, h=4.4)
    for ax, it in zip(axes, items):
        n = it["n"]
        ax.plot(np.arange(1, n + 1), it["gamma"], color="black", lw=2, label="gamma_j (theory)")
        if it.get("centres") is not None:
            ax.plot(
                it["centres"], it["expected_binned"], color="grey", ls=":", lw=1.5, label="gamma with the scores' ties"
            )
            ax.plot(
                it["centres"],
                it["empirical_binned"],
                "o",
                color="crimson",
                ms=3.5,
                label=f"empirical ({it['n_epochs']} epoch snapshots)",
            )
        ax.axvline(it["q"], color="grey", lw=0.8)
        ax.axvline(n - it["s"] + it["q"], color="grey", lw=0.8)
        ax.set_title(f"{it['series']}  p={it['prune_ratio']:g}:  N={n}, s={it['s']}, q={it['q']}", fontsize=10)
        ax.set_xlabel("rank j of the stored loss (1 = largest)")
        ax.set_ylabel("keep probability")
        ax.set_ylim(-0.03, 1.03)
        ax.legend(fontsize=7, loc="lower left")
    _save(fig, path)


def gradient_probe(hist: pd.DataFrame, colors: dict[str, str], path: Path) -> None:
    """Cosine between the kept-set and full-data gradients, and both gradient norms, over epochs."""
    keys = [k for k in ("grad_cosine", "grad_norm_kept") if (hist["key"] == k).any()]
    fig, axes = _grid(len(keys), ncols=2, w=6.5, h=4.2)
    for ax, key in zip(axes, keys):
        for s, g in hist[hist["key"] == key].groupby(["series", "prune_ratio"], sort=False):
            a = g.groupby("epoch")["value"].agg(["mean", "std"]).reset_index()
            _band(ax, a["epoch"] + 1, a["mean"], a["std"], colors[s[0]], f"{s[0]} p={s[1]:g}", marker=".")
        if key == "grad_norm_kept":
            for s, g in hist[hist["key"] == "grad_norm_full"].groupby(["series", "prune_ratio"], sort=False):
                a = g.groupby("epoch")["value"].agg(["mean", "std"]).reset_index()
                _band(ax, a["epoch"] + 1, a["mean"], a["std"], colors[s[0]], None, ls="--")
            ax.set_title("gradient norm: kept-set mean (solid) vs full data (dashed)")
        else:
            ax.set_title("cosine(kept-set gradient, full-data gradient)")
        ax.set_xlabel("epoch")
        _int_x(ax)
        ax.legend(fontsize=7)
    _save(fig, path)
