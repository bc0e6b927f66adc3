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

from prunebench.reports.tables import pareto_mask

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


def accuracy_vs_compute(ok: pd.DataFrame, colors: dict[str, str], path: Path) -> None:
    """Final top-1 against realized relative compute: one line per method over its prune ratios, the
    seed spread (mean +/- std) as a band; full data as a reference line; the Pareto front of the
    (method, ratio) means dashed."""
    settings = list(ok.groupby(["dataset", "model"]).groups)
    fig, axes = _grid(len(settings), ncols=2, w=7.5, h=5.2)
    for ax, (ds, mo) in zip(axes, settings):
        d = ok[(ok["dataset"] == ds) & (ok["model"] == mo)]
        agg = d.groupby(["series", "prune_ratio"]).agg(x=("relative_compute", "mean"), y=("final_acc", "mean"),
                                                       sd=("final_acc", "std")).reset_index()
        for s, g in agg.groupby("series", sort=False):
            g = g.sort_values("x")
            if s.startswith("full"):
                m, sd = g["y"].iloc[0], np.nan_to_num(g["sd"].iloc[0])
                ax.axhline(m, color=FULL_COLOR, ls="--", lw=1.2, label=f"{s} (mean +/- std)")
                ax.axhspan(m - sd, m + sd, color=FULL_COLOR, alpha=0.08, lw=0)
                ax.plot(g["x"], g["y"], "o", color=FULL_COLOR, ms=6)
            else:
                _band(ax, g["x"], g["y"], g["sd"], colors[s], s, marker="o")
        front = agg[pareto_mask(agg["x"].to_numpy(), agg["y"].to_numpy())].sort_values("x")
        ax.step(front["x"], front["y"], where="post", color="grey", ls=":", lw=1.5, label="Pareto front (means)")
        ax.set_xlabel("relative compute (sample-visit cost vs full data)")
        ax.set_ylabel("final test top-1")
        _pct(ax, "y")
        _pct(ax, "x")
        ax.set_title(f"{ds} / {mo}" if len(settings) > 1 else "Accuracy vs realized compute")
        ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)


def pareto_sweep(trials: pd.DataFrame, path: Path, colors: dict[str, str] | None = None) -> None:
    """A sweep's trials in the (compute, accuracy) plane with its Pareto front."""
    fig = Figure(figsize=(7.5, 5.2), layout="constrained")
    ax = fig.subplots()
    hue = "method" if "method" in trials.columns else None
    pal = colors if hue and colors and set(trials["method"]) <= set(colors) else None
    sns.scatterplot(data=trials, x="relative_compute", y="accuracy", hue=hue, palette=pal, ax=ax, s=35,
                    alpha=0.6, edgecolor="none")
    front = trials[trials["pareto"]].sort_values("relative_compute")
    ax.step(front["relative_compute"], front["accuracy"], where="post", color="crimson", lw=1.6)
    ax.scatter(front["relative_compute"], front["accuracy"], s=70, facecolors="none", edgecolors="crimson",
               lw=1.5, label=f"Pareto front ({len(front)} trials)")
    ax.set_xlabel("relative compute")
    ax.set_ylabel("accuracy")
    _pct(ax, "y")
    _pct(ax, "x")
    ax.set_title(f"Sweep: {len(trials)} trials")
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)


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
    cols = ["final_acc_std"] + (["curve_volatility"] if "curve_volatility" in stab and stab["curve_volatility"].notna().any() else [])
    titles = {"final_acc_std": "std of final top-1 over seeds",
              "curve_volatility": "accuracy-curve volatility\n(mean |change| per epoch, 2nd half)"}
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


def overhead(lb: pd.DataFrame, path: Path) -> None:
    """Where the time went per method and ratio: training (selection excluded), selection, static scoring."""
    d = lb.sort_values(["prune_ratio", "series"]).reset_index(drop=True)
    labels = [f"{s}  p={p:g}" for s, p in zip(d["series"], d["prune_ratio"])]
    train = (d["train_time_s"] - d["selection_time_s"]).clip(lower=0)
    fig = Figure(figsize=(8.5, 0.42 * len(d) + 1.6), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(d))
    ax.barh(y, train, color="#4c72b0", label="training (excl. selection)")
    ax.barh(y, d["selection_time_s"], left=train, color="#dd8452", label="selection / planning")
    ax.barh(y, d["scoring_time_s"].fillna(0), left=train + d["selection_time_s"], color="#c44e52",
            label="static scoring (before training)")
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds (mean over seeds)")
    ax.set_title("Wall-clock: training, selection and scoring overhead")
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)


def jaccard_heatmap(d: pd.DataFrame, title: str, path: Path) -> None:
    """Heatmap of a per-epoch overlap (rows: method @ ratio; columns: epoch)."""
    mat = d.pivot_table(index="row", columns="epoch", values="value", aggfunc="mean", sort=False)
    mat.columns = [int(c) + 1 for c in mat.columns]
    fig = Figure(figsize=(min(18, max(8.0, 4.5 + 0.55 * mat.shape[1])), 0.5 * mat.shape[0] + 1.8), layout="constrained")
    ax = fig.subplots()
    sns.heatmap(mat, ax=ax, vmin=0, vmax=1, cmap="viridis", annot=mat.size <= 240, fmt=".2f",
                annot_kws={"fontsize": 9}, cbar_kws={"label": "Jaccard |A n B| / |A u B|"})
    ax.set_xlabel("epoch")
    ax.set_ylabel("")
    ax.set_title(title)
    _save(fig, path)


def usage_histograms(items: list[dict], colors: dict[str, str], path: Path) -> None:
    """Per dynamic method and ratio: how many epochs each sample was trained (pooled over seeds), with
    the Binomial(E, 1-p) counts that uniform random per-epoch sampling would give."""
    fig, axes = _grid(len(items), ncols=3, w=5.0, h=3.6)
    for ax, it in zip(axes, items):
        u, e, p = it["usage"], it["epochs"], it["prune_ratio"]
        k = np.arange(0, max(e, int(u.max())) + 1)
        freq = np.bincount(u, minlength=k.size) / u.size
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
            ax.plot(it["centres"], it["expected_binned"], color="grey", ls=":", lw=1.5,
                    label="gamma with the scores' ties")
            ax.plot(it["centres"], it["empirical_binned"], "o", color="crimson", ms=3.5,
                    label=f"empirical ({it['n_epochs']} epoch snapshots)")
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
