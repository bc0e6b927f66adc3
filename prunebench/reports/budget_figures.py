"""Figures of the budget axis (:mod:`prunebench.reports.budget`): seaborn/matplotlib ``Figure`` objects, one PNG
each, drawn from the tables that the report also writes as CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from prunebench.reports.figures import _grid, _save

MARKERS = "osD^vP*X"


def _budget_axis(ax, epochs: list[int]) -> None:
    ax.set_xscale("log")
    ax.set_xlim(min(epochs) / 1.35, max(epochs) * 1.35)
    ax.set_xticks(epochs, [str(e) for e in epochs])
    ax.minorticks_off()
    ax.set_xlabel("training budget (epochs, log scale)")


def _errorbar(ax, x, y, lo, hi, color, label, marker, offset=1.0):
    x, y, lo, hi = (np.asarray(v, float) for v in (x, y, lo, hi))
    lo, hi = np.where(np.isnan(lo), y, lo), np.where(np.isnan(hi), y, hi)
    ax.errorbar(x * offset, y, yerr=[y - lo, hi - y], color=color, marker=marker, ms=5, capsize=3, lw=1.5, label=label)


def gap_vs_epochs(gaps: pd.DataFrame, colors: dict[str, str], path: Path) -> None:
    """The gap to full data (method - full, pp, paired by seed, 95% interval) against the budget: one panel
    per prune ratio (and setting), one line per method; points of a budget are spread slightly sideways."""
    keys = sorted(set(zip(gaps["dataset"], gaps["model"], gaps["prune_ratio"])))
    multi = len({k[:2] for k in keys}) > 1
    fig, axes = _grid(len(keys), ncols=2, w=6.4, h=4.6, sharey=True)
    epochs = sorted(int(e) for e in gaps["epochs"].unique())
    for ax, (ds, mo, p) in zip(axes, keys):
        d = gaps[(gaps["dataset"] == ds) & (gaps["model"] == mo) & (gaps["prune_ratio"] == p)]
        methods = sorted(d["method"].unique())
        for i, m in enumerate(methods):
            g = d[d["method"] == m].sort_values("epochs")
            off = 1.0 + 0.025 * (i - (len(methods) - 1) / 2)
            _errorbar(
                ax,
                g["epochs"],
                100 * g["gap_mean"],
                100 * g["gap_ci_low"],
                100 * g["gap_ci_high"],
                colors.get(m),
                m,
                MARKERS[i % len(MARKERS)],
                off,
            )
        ax.axhline(0, color="black", lw=0.9)
        _budget_axis(ax, epochs)
        ax.set_ylabel("top-1 gap to full data, method − full (pp)")
        ax.set_title(f"prune ratio {p:g}" + (f" — {ds} / {mo}" if multi else ""))
        ax.legend(fontsize=7)
    _save(fig, path)


def claim_by_budget(tables: list[tuple[str, pd.DataFrame]], colors: dict[str, str], path: Path) -> None:
    """One panel per (title, table of :func:`~prunebench.reports.budget.versus_baseline`): the mean (95%
    interval over seeds or seed pairs) against the budget, one line per method and prune ratio."""
    tables = [(t, d) for t, d in tables if not d.empty]
    fig, axes = _grid(max(1, len(tables)), ncols=2, w=6.4, h=4.4)
    for ax, (title, d) in zip(axes, tables):
        epochs = sorted(int(e) for e in d["epochs"].unique())
        lines = sorted(set(zip(d["method"], d["prune_ratio"])))
        for i, (m, p) in enumerate(lines):
            g = d[(d["method"] == m) & (d["prune_ratio"] == p)].sort_values("epochs")
            off = 1.0 + 0.02 * (i - (len(lines) - 1) / 2)
            _errorbar(
                ax,
                g["epochs"],
                g["mean"],
                g["ci_low"],
                g["ci_high"],
                colors.get(m),
                f"{m} p={p:g}",
                MARKERS[i % len(MARKERS)],
                off,
            )
        _budget_axis(ax, epochs)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)
    _save(fig, path)


def probe_curves(hist: pd.DataFrame, colors: dict[str, str], path: Path, key: str = "grad_cosine") -> None:
    """``key`` (the gradient probe) against the fraction of training done, one panel per budget, one line
    per method and prune ratio: mean over seeds, ± std band."""
    h = hist[hist["key"] == key].dropna(subset=["value"])
    epochs = sorted(int(e) for e in h["epochs"].unique())
    fig, axes = _grid(len(epochs), ncols=3, w=5.0, h=3.9, sharey=True)
    for ax, e in zip(axes, epochs):
        d = h[h["epochs"] == e]
        for (m, p), g in d.groupby(["method", "prune_ratio"], sort=True):
            a = g.groupby("epoch")["value"].agg(["mean", "std"]).reset_index()
            x = 100 * (a["epoch"] + 1) / e
            ax.plot(
                x,
                a["mean"],
                color=colors.get(m),
                marker=".",
                lw=1.6,
                label=f"{m} p={p:g}",
                ls="--" if m == "full" else "-",
            )
            sd = np.nan_to_num(a["std"].to_numpy(float))
            ax.fill_between(x, a["mean"] - sd, a["mean"] + sd, color=colors.get(m), alpha=0.15, lw=0)
        ax.set_title(f"{e} epochs")
        ax.set_xlabel("training done (%)")
        ax.set_ylabel(key.replace("_", " "))
        ax.legend(fontsize=7)
    _save(fig, path)


def gradnorm_scatter(points: pd.DataFrame, stats_: pd.DataFrame, colors: dict[str, str], path: Path) -> None:
    """Final top-1 against the kept-set gradient norm at the last probe, one point per run, one panel per
    budget; the title carries Pearson r and its Fisher-z 95% interval."""
    epochs = sorted(int(e) for e in points["epochs"].unique())
    fig, axes = _grid(len(epochs), ncols=3, w=5.0, h=3.9)
    for ax, e in zip(axes, epochs):
        d = points[points["epochs"] == e]
        for i, ((m, p), g) in enumerate(d.groupby(["method", "prune_ratio"], sort=True)):
            ax.scatter(
                g["value"],
                100 * g["final_acc"],
                color=colors.get(m),
                marker=MARKERS[i % len(MARKERS)],
                s=22,
                label=f"{m} p={p:g}",
            )
        st = stats_[stats_["epochs"] == e]
        r = st.iloc[0] if len(st) else None
        ci = "" if r is None or pd.isna(r["ci_low"]) else f" [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"
        ax.set_title(
            f"{e} epochs: r = "
            + ("–" if r is None or pd.isna(r["r"]) else f"{r['r']:+.2f}{ci}")
            + (f", n = {int(r['n'])}" if r is not None else ""),
            fontsize=10,
        )
        ax.set_xlabel("kept-set gradient norm at the last probe")
        ax.set_ylabel("final test top-1 (%)")
        ax.legend(fontsize=7)
    _save(fig, path)
