"""The report sections of a study with a budget axis (several ``epochs``): the gap to full data against the
budget, and the OrderDP paper's analyses (kept-set overlap across epochs and seeds, gradient direction,
gradient norm vs accuracy) tabulated by budget, each with the verdict of the paper's claim.

Numbers: :mod:`prunebench.reports.budget`; figures: :mod:`prunebench.reports.budget_figures`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prunebench.reports import budget as bd
from prunebench.reports import budget_figures as bf
from prunebench.reports.inputs import RunStore
from prunebench.reports.render import Figure, Section, Table
from prunebench.reports.stats import FEW_SEEDS, SIGN_CONVENTION, format_diff

ORDERDP_PRUNERS = ("orderdp", "orderdp-fresh")
CLAIMS = {
    "consecutive": "OrderDP's kept sets overlap more from one epoch to the next than random-dynamic's (Table 8)",
    "cross_seed": "OrderDP's kept sets overlap more across seeds than random-dynamic's (Table 9)",
    "cosine": "OrderDP's kept-set gradient points closer to the full-data gradient than random-dynamic's (Table 11)",
    "gradnorm": "a larger gradient norm goes with a higher test accuracy (Pearson r > 0)",
}


def _pct(x: float, nd: int = 2) -> str:
    return "–" if pd.isna(x) else f"{100 * x:.{nd}f}"


def _num(x: float, nd: int = 3) -> str:
    return "–" if pd.isna(x) else f"{x:.{nd}f}"


def _interval(m: float, lo: float, hi: float, nd: int = 3, signed: bool = False) -> str:
    f = (lambda v: f"{v:+.{nd}f}") if signed else (lambda v: f"{v:.{nd}f}")
    if pd.isna(m):
        return "–"
    return f(m) + ("" if pd.isna(lo) else f" [{f(lo)}, {f(hi)}]")


def budget_sections(
    ok: pd.DataFrame, hist: pd.DataFrame, store: RunStore, colors: dict[str, Any], figdir: Path, tabdir: Path
) -> list[Section]:
    """The Budget section and the OrderDP-analyses section of a multi-budget report (``ok``: the finished
    runs with an ``epochs`` column; ``hist``: their per-epoch histories, ``build._histories``)."""
    hist = _with_epochs(hist, ok)
    colors = {**colors, **{m: colors.get(m, "#555555") for m in ok["method"].unique()}}
    return [_gap_section(ok, colors, figdir, tabdir), _orderdp_section(ok, hist, store, colors, figdir, tabdir)]


def _with_epochs(hist: pd.DataFrame, ok: pd.DataFrame) -> pd.DataFrame:
    if hist.empty or "run_id" not in hist.columns:
        return pd.DataFrame(columns=[*bd.CELL, "seed", "run_id", "key", "epoch", "value"])
    runs = ok[["run_id", "epochs"]].dropna(subset=["run_id"]).drop_duplicates("run_id")
    h = hist.drop(columns=[c for c in ("epochs",) if c in hist.columns]).merge(runs, on="run_id", how="inner")
    h["epochs"] = h["epochs"].astype(int)
    return h


# ---------------------------------------------------------------------------------------------------
# the gap to full data against the budget
# ---------------------------------------------------------------------------------------------------


def _gap_section(ok: pd.DataFrame, colors: dict[str, Any], figdir: Path, tabdir: Path) -> Section:
    sec = Section("Budget: the gap to full data against epochs", "budget")
    gaps = bd.gap_table(ok)
    changes = bd.gap_changes(ok, gaps)
    gaps.to_csv(tabdir / "budget_gaps.csv", index=False)
    changes.to_csv(tabdir / "budget_gap_changes.csv", index=False)
    epochs = bd.budgets(ok)
    sec.add(
        f"The same recipe at {', '.join(map(str, epochs))} epochs (the schedule scaled to each run). Per "
        "method and prune ratio: the gap to full data trained for the SAME number of epochs — the per-seed "
        "difference in final test top-1, method − full, mean over the paired seeds with its t-based 95% "
        f"interval and verdict (better / worse when the interval excludes 0, n.d. otherwise; (n=2) marks "
        f"fewer than {FEW_SEEDS} paired seeds). {SIGN_CONVENTION} Change: the gap at the longest budget "
        "minus the gap at the shortest, paired by seed over the seeds present in all four cells (positive = "
        "the method moved towards, or past, full data with the longer budget)."
    )
    if gaps.empty:
        return sec.add(("note", "No pruning method finished: no gap to full data."))
    bf.gap_vs_epochs(gaps, colors, figdir / "budget_gap.png")
    sec.add(
        Figure(
            "figures/budget_gap.png",
            "Gap to full data against the training budget",
            "One panel per prune ratio: each method's paired gap to full data (method − full, pp; "
            "below 0 = loses to full data) at each budget, with its t-based 95% interval over seeds "
            "(none with one paired seed); the points of one budget are spread slightly sideways to stay "
            "readable. Numbers: tables/budget_gaps.csv.",
        )
    )
    sec.add(Table(_gap_display(gaps, changes, epochs), csv="tables/budget_gaps.csv"))
    if len(changes):
        sec.add(
            ("h3", "Verdicts: does the gap change with the budget?"),
            *[str(t) + "." for t in changes["text"]],
            "The numbers behind these verdicts: tables/budget_gap_changes.csv.",
        )
    else:
        sec.add(("note", "No method ran at two budgets with full data: no change of the gap can be measured."))
    return sec


def _gap_display(gaps: pd.DataFrame, changes: pd.DataFrame, epochs: list[int]) -> pd.DataFrame:
    rows = []
    for (ds, mo, m, p), g in gaps.groupby(bd.SETTING + ["method", "prune_ratio"], sort=True):
        rec = {"method": m, "prune ratio": f"{p:g}"}
        for e in epochs:
            r = g[g["epochs"] == e]
            rec[f"{e} epochs: gap pp [95% CI]"] = (
                "not run"
                if r.empty
                else format_diff(
                    r["gap_mean"].iloc[0],
                    r["gap_ci_low"].iloc[0],
                    r["gap_ci_high"].iloc[0],
                    r["n_pairs"].iloc[0],
                    r["verdict"].iloc[0],
                )
            )
        c = changes[
            (changes["method"] == m)
            & np.isclose(changes["prune_ratio"], p)
            & (changes["dataset"] == ds)
            & (changes["model"] == mo)
        ]
        rec["change pp [95% CI]"] = "–"
        if len(c):
            r = c.iloc[0]
            rec["change pp [95% CI]"] = (
                _interval(100 * r["change_mean"], 100 * r["change_ci_low"], 100 * r["change_ci_high"], 2, True)
                + f" ({r['epochs_from']}→{r['epochs_to']} epochs, n={r['n_pairs']})"
            )
        rows.append(rec)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------
# OrderDP's analyses by budget
# ---------------------------------------------------------------------------------------------------


def _cross_seed_values(ok: pd.DataFrame, store: RunStore) -> pd.DataFrame:
    parts = [pd.DataFrame(columns=bd.CELL + ["unit", "value"])]
    dyn = ok[(ok["method"] != "full") & (ok["granularity"].astype(str) != "static")]
    for key, g in dyn.groupby(bd.CELL, sort=True):
        masks = {int(r["seed"]): m for _, r in g.iterrows() if (m := store.kept_masks(r)) is not None}
        if len(masks) >= 2:
            parts.append(bd.cross_seed_values(dict(zip(bd.CELL, key)), masks))
    return pd.concat(parts, ignore_index=True)


def _orderdp_section(
    ok: pd.DataFrame, hist: pd.DataFrame, store: RunStore, colors: dict[str, Any], figdir: Path, tabdir: Path
) -> Section:
    sec = Section("OrderDP's analyses by budget", "orderdp-budget")
    sec.add(
        "The OrderDP paper's analyses, repeated at each budget. Every claim is tested against "
        f"{bd.BASELINE} at the same prune ratio, budget and seed (a paired difference, t-based 95% "
        "interval): holds = the interval is on the claimed side of 0; contradicted = on the other side; "
        "not distinguishable = it contains 0 (or one pair only); not measured = the runs logged no data "
        "for it (the gradient probe ran only for the methods of the study's probe plan)."
    )
    cons = bd.versus_baseline(bd.consecutive_jaccard_values(ok))
    cross = bd.versus_baseline(_cross_seed_values(ok, store))
    cos = bd.versus_baseline(bd.probe_values(hist, "grad_cosine"))
    points = bd.gradnorm_points(hist, ok)
    corr = bd.gradnorm_accuracy(hist, ok)
    for name, t in (("consecutive", cons), ("cross_seed", cross), ("grad_cosine", cos), ("gradnorm_accuracy", corr)):
        t.to_csv(tabdir / f"orderdp_{name}_by_budget.csv", index=False)
    summary = _claims(ok, cons, cross, cos, corr)
    summary.to_csv(tabdir / "orderdp_claims_by_budget.csv", index=False)
    sec.add(
        ("h3", "The paper's claims, by budget"), Table(summary, csv="tables/orderdp_claims_by_budget.csv", kind="kv")
    )
    panels = [
        ("consecutive-epoch Jaccard of the kept sets (Table 8)", cons),
        ("cross-seed Jaccard of the kept sets (Table 9)", cross),
        ("cosine(kept-set gradient, full-data gradient) (Table 11)", cos),
    ]
    if any(not d.empty for _, d in panels):
        bf.claim_by_budget(panels, colors, figdir / "orderdp_by_budget.png")
        sec.add(
            Figure(
                "figures/orderdp_by_budget.png",
                "Overlap and gradient direction against the budget",
                "Per method and prune ratio: mean over seeds (cross-seed: over pairs of seeds) with the "
                "t-based 95% interval, at each budget. Independent uniform subsets keeping a fraction "
                "k = 1 − p overlap about k / (2 − k): 0.54 at p = 0.3, 0.33 at p = 0.5.",
            )
        )
    orderdp = set(ok.loc[ok["pruner"].astype(str).isin(ORDERDP_PRUNERS), "method"])
    _overlap_tables(sec, cons, cross, orderdp)
    _gradient_tables(sec, hist, cos, points, corr, orderdp, (figdir, tabdir), colors)
    return sec


def _lookup(t: pd.DataFrame, cell: tuple) -> pd.Series | None:
    if t.empty:
        return None
    m = (
        (t["dataset"] == cell[0])
        & (t["model"] == cell[1])
        & (t["epochs"] == cell[2])
        & np.isclose(t["prune_ratio"].astype(float), float(cell[3]))
        & (t["method"] == cell[4])
    )
    return t[m].iloc[0] if m.any() else None


def _evidence(t: pd.DataFrame, cell: tuple, unit: str) -> tuple[str, str]:
    """(verdict, evidence) of one OrderDP cell in a :func:`~prunebench.reports.budget.versus_baseline` table."""
    r = _lookup(t, cell)
    b = _lookup(t, (*cell[:4], bd.BASELINE))
    if r is None or pd.isna(r["mean"]):
        return "not measured", "no data for this method"
    if b is None or pd.isna(b["mean"]) or not r["n_pairs"]:
        return "not measured", f"{_num(r['mean'])} over {int(r['n_units'])} {unit}(s); no {bd.BASELINE} data to compare"
    ev = (
        f"{_num(r['mean'])} vs {bd.BASELINE} {_num(b['mean'])}: difference "
        f"{_interval(r['diff_mean'], r['diff_ci_low'], r['diff_ci_high'], signed=True)} over {int(r['n_pairs'])} {unit}s"
    )
    return str(r["claim"]), ev


def _claims(
    ok: pd.DataFrame, cons: pd.DataFrame, cross: pd.DataFrame, cos: pd.DataFrame, corr: pd.DataFrame
) -> pd.DataFrame:
    """One row per (claim, OrderDP method, prune ratio, budget) and per (correlation claim, budget)."""
    rows = []
    mine = ok[ok["pruner"].astype(str).isin(ORDERDP_PRUNERS)]
    cells = sorted(set(map(tuple, mine[bd.CELL].drop_duplicates().itertuples(index=False))))
    for claim, t, unit in (("consecutive", cons, "seed"), ("cross_seed", cross, "seed pair"), ("cosine", cos, "seed")):
        for cell in cells:
            verdict, ev = _evidence(t, cell, unit)
            rows.append(
                {
                    "claim": CLAIMS[claim],
                    "method": f"{cell[4]} p={cell[3]:g}",
                    "epochs": str(int(cell[2])),
                    "verdict": verdict,
                    "evidence": ev,
                }
            )
    for e in bd.budgets(ok):
        r = corr[corr["epochs"] == e]
        if r.empty:
            rows.append(
                {
                    "claim": CLAIMS["gradnorm"],
                    "method": "probed runs",
                    "epochs": str(e),
                    "verdict": "not measured",
                    "evidence": "no gradient probe at this budget",
                }
            )
            continue
        r = r.iloc[0]
        ci = "" if pd.isna(r["ci_low"]) else f" [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"
        rows.append(
            {
                "claim": CLAIMS["gradnorm"],
                "method": f"probed runs ({r['methods']})",
                "epochs": str(e),
                "verdict": r["claim"],
                "evidence": f"r = {r['r']:+.2f}{ci} over {int(r['n'])} runs "
                "(grad_norm_kept at the last probe vs final top-1)"
                if not pd.isna(r["r"])
                else f"r undefined over {int(r['n'])} run(s)",
            }
        )
    return pd.DataFrame(rows, columns=["claim", "method", "epochs", "verdict", "evidence"])


def _claim_display(t: pd.DataFrame, unit: str, orderdp: set[str]) -> pd.DataFrame:
    """One row per cell; the claim column only for OrderDP's methods (the baseline: "reference")."""
    claim = [
        ("reference" if m == bd.BASELINE else str(c) if m in orderdp and isinstance(c, str) else "–")
        for m, c in zip(t["method"], t["claim"])
    ]
    return pd.DataFrame(
        {
            "epochs": t["epochs"].astype(int).astype(str),
            "method": t["method"],
            "prune ratio": t["prune_ratio"].map(lambda p: f"{p:g}"),
            f"{unit}s": t["n_units"].astype(int).astype(str),
            "mean [95% CI]": [_interval(m, lo, hi) for m, lo, hi in zip(t["mean"], t["ci_low"], t["ci_high"])],
            f"− {bd.BASELINE} [95% CI]": [
                "–" if pd.isna(m) else _interval(m, lo, hi, signed=True) + f" (n={int(n)})"
                for m, lo, hi, n in zip(t["diff_mean"], t["diff_ci_low"], t["diff_ci_high"], t["n_pairs"].fillna(0))
            ],
            "OrderDP's claim": claim,
        }
    )


def _overlap_tables(sec: Section, cons: pd.DataFrame, cross: pd.DataFrame, orderdp: set[str]) -> None:
    sec.add(("h3", "Kept-set overlap across consecutive epochs, by budget (the paper's Table 8)"))
    if cons.empty:
        sec.add(("note", "Not measured: the results table has no jaccard_mean of dynamic methods."))
    else:
        sec.add(
            "Per run, the mean over epochs 2..E of the Jaccard overlap |A ∩ B| / |A ∪ B| between an "
            "epoch's kept set and the previous epoch's (the results' jaccard_mean); mean over seeds. Higher "
            "= more stable. The claim is OrderDP's; other methods are shown for comparison.",
            Table(_claim_display(cons, "seed", orderdp), csv="tables/orderdp_consecutive_by_budget.csv"),
        )
    sec.add(("h3", "Kept-set overlap across seeds, by budget (the paper's Table 9)"))
    if cross.empty:
        sec.add(("note", "Not measured: no kept masks (kept_masks_packed.npy) of two seeds of a method in MLflow."))
    else:
        sec.add(
            "Per pair of seeds, the Jaccard overlap of the two runs' kept sets at the same epoch, averaged "
            "over the epochs; mean over the pairs of seeds. The difference to random-dynamic is paired by "
            "seed pair; pairs share seeds, so its interval is only approximate.",
            Table(_claim_display(cross, "seed pair", orderdp), csv="tables/orderdp_cross_seed_by_budget.csv"),
        )


def _gradient_tables(
    sec: Section,
    hist: pd.DataFrame,
    cos: pd.DataFrame,
    points: pd.DataFrame,
    corr: pd.DataFrame,
    orderdp: set[str],
    figdir_tabdir: tuple[Path, Path],
    colors: dict[str, Any],
) -> None:
    figdir, tabdir = figdir_tabdir
    _gradient_cosine_tables(sec, hist, cos, orderdp, figdir, tabdir, colors)
    _gradient_norm_tables(sec, points, corr, figdir, tabdir, colors)


def _gradient_cosine_tables(
    sec: Section,
    hist: pd.DataFrame,
    cos: pd.DataFrame,
    orderdp: set[str],
    figdir: Path,
    tabdir: Path,
    colors: dict[str, Any],
) -> None:
    """The gradient-direction part of :func:`_gradient_tables` (the paper's Table 11)."""
    sec.add(("h3", "Gradient direction against the full-data gradient, by budget (the paper's Table 11)"))
    if cos.empty:
        sec.add(("note", "Not measured: no grad_cosine histories (the gradient probe did not run)."))
    else:
        prof = bd.probe_profile(hist, "grad_cosine")
        prof.to_csv(tabdir / "orderdp_grad_cosine_profile.csv", index=False)
        sec.add(
            "The gradient probe, at the probe points of the study's plan: the cosine between the mean "
            "gradient of the epoch's kept samples (training loss, at most probe_samples of them) and the "
            "gradient of the plain mean loss on a fixed uniform sample of the training set, at the same "
            "parameters. Per run the mean over its probe points; mean over seeds. Full data's own value is "
            "the ceiling that sampling noise leaves (two different samples of the same data).",
            Table(_claim_display(cos, "seed", orderdp), csv="tables/orderdp_grad_cosine_by_budget.csv"),
        )
        disp = prof.copy()
        for c in disp.columns:
            if str(c).endswith("%"):
                disp[c] = disp[c].map(_num)
        disp["prune_ratio"] = disp["prune_ratio"].map(lambda p: f"{p:g}")
        sec.add(
            "The cosine at each probe point (percentage of training done), mean over seeds:",
            Table(
                disp.drop(columns=[c for c in ("dataset", "model") if c in disp.columns]).astype(str),
                csv="tables/orderdp_grad_cosine_profile.csv",
            ),
        )
        bf.probe_curves(hist, colors, figdir / "grad_cosine_by_budget.png")
        sec.add(
            Figure(
                "figures/grad_cosine_by_budget.png",
                "Gradient direction over training, per budget",
                "cosine(kept-set gradient, full-data gradient) at each probe point, mean over seeds "
                "± std; full data dashed.",
            )
        )


def _gradient_norm_tables(
    sec: Section, points: pd.DataFrame, corr: pd.DataFrame, figdir: Path, tabdir: Path, colors: dict[str, Any]
) -> None:
    """The gradient-norm part of :func:`_gradient_tables`: its correlation with final accuracy, per budget."""
    sec.add(("h3", "Gradient norm and test accuracy, by budget"))
    if corr.empty:
        sec.add(("note", "Not measured: no grad_norm_kept histories (the gradient probe did not run)."))
        return
    sec.add(
        "Which norm: grad_norm_kept, the norm of the kept-set mean gradient at each run's LAST probe point, "
        "against the run's final test top-1. Per budget, Pearson r across the probed runs (methods and "
        "prune ratios pooled, full data included) with the 95% interval from Fisher's z transform "
        "(tanh(atanh r ± 1.96 / √(n − 3)); none for n < 4). Caveats: pooled over methods, r mixes the "
        "methods' effect with the runs' spread, and runs of one seed are not independent.",
        Table(
            pd.DataFrame(
                {
                    "epochs": corr["epochs"].astype(str),
                    "runs": corr["n"].astype(str),
                    "r [95% CI]": [
                        _interval(r, lo, hi, 2, True) for r, lo, hi in zip(corr["r"], corr["ci_low"], corr["ci_high"])
                    ],
                    "claim: r > 0": corr["claim"],
                    "methods": corr["methods"],
                }
            ),
            csv="tables/orderdp_gradnorm_accuracy_by_budget.csv",
        ),
    )
    points.to_csv(tabdir / "orderdp_gradnorm_points.csv", index=False)
    bf.gradnorm_scatter(points, corr, colors, figdir / "gradnorm_vs_accuracy.png")
    sec.add(
        Figure(
            "figures/gradnorm_vs_accuracy.png",
            "Gradient norm against final accuracy",
            "One point per probed run: grad_norm_kept at its last probe point against its final test "
            "top-1; one panel per budget, r and its Fisher-z 95% interval in the title. Points: "
            "tables/orderdp_gradnorm_points.csv.",
        )
    )
