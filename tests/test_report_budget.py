"""Reports of a study with a budget axis (several epochs): the gap to full data per budget and its change,
OrderDP's analyses by budget with their claims, Pearson r with its Fisher-z interval; every number checked
against a computation by hand on hand-made results. A single-budget report keeps its tables."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prunebench.reports import budget as bd
from prunebench.reports import build_report

ROOT = Path(__file__).resolve().parents[1]
T2 = 4.302652729911275  # t(0.975, 2): the 95% two-sided quantile with 3 seeds
Z = 1.959963984540054  # standard normal 0.975 quantile


def _t_ci(d):
    d = np.asarray(d, float)
    m, sd = d.mean(), d.std(ddof=1)
    half = T2 * sd / math.sqrt(3)
    return m, m - half, m + half


# ---------------------------------------------------------------------------------------------------
# Pearson r and its Fisher-z interval
# ---------------------------------------------------------------------------------------------------


def test_pearson_fisher_by_hand():
    x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    y = [2.1, 1.9, 3.7, 3.9, 5.5, 5.2]
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    r = sxy / math.sqrt(sxx * syy)
    z = 0.5 * math.log((1 + r) / (1 - r))
    lo_z, hi_z = z - Z / math.sqrt(n - 3), z + Z / math.sqrt(n - 3)
    back = lambda t: (math.exp(2 * t) - 1) / (math.exp(2 * t) + 1)  # noqa: E731 - tanh by hand
    got = bd.pearson_fisher(np.array(x), np.array(y))
    assert got["n"] == 6
    assert got["r"] == pytest.approx(r, abs=1e-12)
    assert got["ci_low"] == pytest.approx(back(lo_z), abs=1e-12)
    assert got["ci_high"] == pytest.approx(back(hi_z), abs=1e-12)
    assert got["ci_low"] < got["r"] < got["ci_high"]
    # n = 3: r, but no interval (Fisher's se needs n > 3); a constant sample: no r; NaNs are dropped pairwise
    three = bd.pearson_fisher(np.array(x[:3]), np.array(y[:3]))
    assert not math.isnan(three["r"]) and math.isnan(three["ci_low"])
    assert math.isnan(bd.pearson_fisher(np.ones(5), np.arange(5.0))["r"])
    assert bd.pearson_fisher(np.array(x + [np.nan]), np.array(y + [1.0]))["r"] == pytest.approx(r, abs=1e-12)


def test_claim_verdict():
    assert bd.claim_verdict(3, 0.01, 0.2) == "holds"
    assert bd.claim_verdict(3, -0.2, -0.01) == "contradicted"
    assert bd.claim_verdict(3, -0.2, 0.1) == "not distinguishable"
    assert bd.claim_verdict(1, np.nan, np.nan) == "not distinguishable"
    assert bd.claim_verdict(0, np.nan, np.nan) == "not measured"
    assert bd.claim_verdict(3, -0.2, -0.01, claimed_positive=False) == "holds"


# ---------------------------------------------------------------------------------------------------
# a hand-made budget study: 3 seeds, 6 and 18 epochs
# ---------------------------------------------------------------------------------------------------

FULL = {6: [0.80, 0.82, 0.81], 18: [0.90, 0.91, 0.92]}
GAPS = {  # (method, p, epochs) -> per-seed method - full
    ("orderdp-c0.8", 0.5, 6): [-0.030, -0.035, -0.025],
    ("orderdp-c0.8", 0.5, 18): [-0.010, -0.012, -0.008],
    ("random-dynamic", 0.5, 6): [-0.02, -0.01, -0.03],
    ("random-dynamic", 0.5, 18): [-0.01, -0.03, -0.02],
    ("loss-topk", 0.5, 6): [-0.05, -0.06, -0.04],
    ("loss-topk", 0.5, 18): [-0.04, -0.05, -0.03],
    ("orderdp-c0.8", 0.3, 6): [-0.01, -0.02, 0.0],
    ("random-dynamic", 0.3, 6): [-0.015, -0.005, -0.01],
}
JACCARD = {  # (method, p, epochs) -> per-seed consecutive-epoch Jaccard
    ("orderdp-c0.8", 0.5, 6): [0.45, 0.47, 0.46],
    ("random-dynamic", 0.5, 6): [0.33, 0.34, 0.335],
    ("orderdp-c0.8", 0.5, 18): [0.34, 0.33, 0.35],
    ("random-dynamic", 0.5, 18): [0.335, 0.333, 0.334],
    ("loss-topk", 0.5, 6): [0.9, 0.91, 0.92],
    ("loss-topk", 0.5, 18): [0.93, 0.94, 0.95],
    ("orderdp-c0.8", 0.3, 6): [0.6, 0.61, 0.62],
    ("random-dynamic", 0.3, 6): [0.54, 0.53, 0.55],
}
PRUNER = {"full": "full", "orderdp-c0.8": "orderdp", "random-dynamic": "random-dynamic", "loss-topk": "loss-topk"}
PROBED = ("full", "orderdp-c0.8", "random-dynamic")


def _cosine(method: str, e: int, seed: int, epoch: int) -> float:
    base = {"full": 0.95, "random-dynamic": 0.90, "orderdp-c0.8": 0.70}[method]
    return base - 0.01 * seed - 0.001 * epoch - (0.1 if e == 18 and method == "orderdp-c0.8" else 0.0)


def _norm(method: str, e: int, p: float, seed: int, epoch: int) -> float:
    return 1.0 + 0.1 * epoch + 3.0 * (_acc(method, p, e, seed) - 0.75) + 0.01 * ((seed * 7 + e) % 3)


def _acc(method: str, p: float, e: int, seed: int) -> float:
    return FULL[e][seed] + (0.0 if method == "full" else GAPS[(method, p, e)][seed])


def hand_results() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Result rows (columns of a real results table, from the committed digits-quick report) and the
    per-epoch histories (test_acc; the gradient probe for full, orderdp and random-dynamic)."""
    tmpl = pd.read_csv(ROOT / "reports/digits-quick/tables/runs.csv").drop_duplicates("method").set_index("method")
    rows, hist = [], []
    cells = [("full", 0.0, e) for e in (6, 18)] + list(GAPS)
    for method, p, e in cells:
        for seed in range(3):
            r = tmpl.loc[method].to_dict()
            run = f"{method}-{p:g}-{e}-{seed}"
            r.update(
                method=method,
                pruner=PRUNER[method],
                prune_ratio=p,
                seed=seed,
                epochs=e,
                epochs_run=e,
                final_acc=_acc(method, p, e, seed),
                best_acc=_acc(method, p, e, seed),
                run_id=run,
                jaccard_mean=1.0 if method == "full" else JACCARD[(method, p, e)][seed],
                tracking_uri="sqlite:////nonexistent/prunebench-budget-test.db",
                study="budget-fixture",
            )
            rows.append(r)
            base = {
                "series": method,
                "method": method,
                "dataset": r["dataset"],
                "model": r["model"],
                "prune_ratio": p,
                "seed": seed,
                "run_id": run,
            }
            hist += [
                {**base, "key": "test_acc", "epoch": k, "value": r["final_acc"] - 0.01 * (e - 1 - k)} for k in range(e)
            ]
            if method in PROBED:
                for k in (e // 2 - 1, e - 1):
                    hist += [
                        {**base, "key": "grad_cosine", "epoch": k, "value": _cosine(method, e, seed, k)},
                        {**base, "key": "grad_norm_kept", "epoch": k, "value": _norm(method, e, p, seed, k)},
                    ]
    return pd.DataFrame(rows), pd.DataFrame(hist)


@pytest.fixture(scope="module")
def budget_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("budget-report")
    results, hist = hand_results()
    (root / "results").mkdir()
    results.to_csv(root / "results" / "results.csv", index=False)
    prior = root / "prior"
    (prior / "tables").mkdir(parents=True)
    results.to_csv(prior / "tables" / "runs.csv", index=False)
    hist.to_csv(prior / "tables" / "histories.csv", index=False)
    out = root / "report"
    build_report(root / "results", out, prior_report=prior)
    return results, hist, out


def test_gap_table_and_change_by_hand(budget_report):
    _, _, out = budget_report
    gaps = pd.read_csv(out / "tables" / "budget_gaps.csv")
    assert len(gaps) == len(GAPS)
    for (m, p, e), d in GAPS.items():
        row = gaps[(gaps["method"] == m) & np.isclose(gaps["prune_ratio"], p) & (gaps["epochs"] == e)].iloc[0]
        mean, lo, hi = _t_ci(d)
        assert (row["gap_mean"], row["gap_ci_low"], row["gap_ci_high"]) == pytest.approx((mean, lo, hi), abs=1e-12)
        assert row["n_pairs"] == 3
        assert row["verdict"] == ("worse" if hi < 0 else "better" if lo > 0 else "not distinguishable")
    ch = pd.read_csv(out / "tables" / "budget_gap_changes.csv")
    assert len(ch) == 3  # the methods at p = 0.5 ran at both budgets; p = 0.3 only at 6 epochs
    od = ch[ch["method"] == "orderdp-c0.8"].iloc[0]
    change = np.subtract(GAPS[("orderdp-c0.8", 0.5, 18)], GAPS[("orderdp-c0.8", 0.5, 6)])
    mean, lo, hi = _t_ci(change)
    assert (od["change_mean"], od["change_ci_low"], od["change_ci_high"]) == pytest.approx((mean, lo, hi), abs=1e-12)
    assert (od["epochs_from"], od["epochs_to"], bool(od["distinguishable"])) == (6, 18, True)
    assert "shrinks from -3.00 pp at 6 epochs to -1.00 pp at 18" in od["text"] and "towards the method" in od["text"]
    rd = ch[ch["method"] == "random-dynamic"].iloc[0]
    assert not rd["distinguishable"] and "not distinguishable" in rd["text"]
    readme = (out / "README.md").read_text()
    assert "Budget: the gap to full data against epochs" in readme and od["text"] in readme


def test_leaderboard_is_per_budget(budget_report):
    results, _, out = budget_report
    lb = pd.read_csv(out / "tables" / "leaderboard.csv")
    assert len(lb) == results.groupby(["epochs", "method", "prune_ratio"]).ngroups
    for (e, m, p), g in results.groupby(["epochs", "method", "prune_ratio"]):
        row = lb[(lb["epochs"] == e) & (lb["method"] == m) & np.isclose(lb["prune_ratio"], p)].iloc[0]
        assert row["acc_mean"] == pytest.approx(g["final_acc"].mean(), abs=1e-12)
        if m != "full":  # paired with full data of the SAME budget
            assert row["vs_full_mean"] == pytest.approx(np.mean(GAPS[(m, p, e)]), abs=1e-12)
    # one complete single-budget report per budget, holding only that budget's runs
    for e in (6, 18):
        sub = pd.read_csv(out / f"epochs-{e}" / "tables" / "leaderboard.csv")
        assert (
            "epochs" not in sub.columns
            and len(sub) == results[results["epochs"] == e].groupby(["method", "prune_ratio"]).ngroups
        )
        assert (out / f"epochs-{e}" / "index.html").is_file()
        assert f'href="epochs-{e}/index.html"' in (out / "index.html").read_text()


def test_orderdp_claims_by_hand(budget_report):
    results, hist, out = budget_report
    claims = pd.read_csv(out / "tables" / "orderdp_claims_by_budget.csv")
    get = lambda word, m, e: claims[
        claims["claim"].str.contains(word)
        & (claims["method"] == m)  # noqa: E731
        & (claims["epochs"] == e)
    ]["verdict"].iloc[0]
    # consecutive Jaccard, paired by seed against random-dynamic
    d6 = np.subtract(JACCARD[("orderdp-c0.8", 0.5, 6)], JACCARD[("random-dynamic", 0.5, 6)])
    d18 = np.subtract(JACCARD[("orderdp-c0.8", 0.5, 18)], JACCARD[("random-dynamic", 0.5, 18)])
    assert _t_ci(d6)[1] > 0 and _t_ci(d18)[1] < 0 < _t_ci(d18)[2]
    assert get("Table 8", "orderdp-c0.8 p=0.5", 6) == "holds"
    assert get("Table 8", "orderdp-c0.8 p=0.5", 18) == "not distinguishable"
    # no kept masks in a store: the cross-seed claim is not measured, never guessed
    assert set(claims.loc[claims["claim"].str.contains("Table 9"), "verdict"]) == {"not measured"}
    # gradient cosine: mean over the probe points, paired by seed; OrderDP's is lower here
    cos = pd.read_csv(out / "tables" / "orderdp_grad_cosine_by_budget.csv")
    row = cos[(cos["method"] == "orderdp-c0.8") & (cos["epochs"] == 6) & np.isclose(cos["prune_ratio"], 0.5)].iloc[0]
    per_seed = [
        np.mean([_cosine("orderdp-c0.8", 6, s, k) - _cosine("random-dynamic", 6, s, k) for k in (2, 5)])
        for s in range(3)
    ]
    assert row["diff_mean"] == pytest.approx(np.mean(per_seed), abs=1e-12)
    assert get("Table 11", "orderdp-c0.8 p=0.5", 6) == "contradicted"
    # gradient norm at the last probe vs final accuracy: Pearson r over the probed runs of one budget
    corr = pd.read_csv(out / "tables" / "orderdp_gradnorm_accuracy_by_budget.csv").set_index("epochs")
    for e in (6, 18):
        runs = results[(results["epochs"] == e) & results["method"].isin(PROBED)]
        x = [_norm(m, e, p, s, e - 1) for m, p, s in zip(runs["method"], runs["prune_ratio"], runs["seed"])]
        got = bd.pearson_fisher(np.array(x), runs["final_acc"].to_numpy())
        assert corr.loc[e, "n"] == len(runs) and corr.loc[e, "r"] == pytest.approx(got["r"], abs=1e-12)
        assert corr.loc[e, "claim"] == bd.claim_verdict(len(runs), got["ci_low"], got["ci_high"])
    assert corr.loc[6, "claim"] == "holds"


def test_cross_seed_values_by_hand():
    a = np.array([[1, 1, 0, 0], [1, 0, 1, 0]], bool)
    b = np.array([[1, 0, 1, 0], [1, 0, 1, 0]], bool)
    c = np.array([[0, 0, 1, 1], [0, 1, 0, 1], [1, 1, 1, 1]], bool)  # a longer run: its third epoch is unused
    cell = {"dataset": "d", "model": "m", "epochs": 2, "prune_ratio": 0.5, "method": "x"}
    v = bd.cross_seed_values(cell, {0: a, 1: b, 2: c}).set_index("unit")["value"]
    assert v["0-1"] == pytest.approx((1 / 3 + 1) / 2)
    assert v["0-2"] == pytest.approx((0 + 0) / 2)
    assert v["1-2"] == pytest.approx((1 / 3 + 0) / 2)


# ---------------------------------------------------------------------------------------------------
# a single-budget report keeps its tables
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["digits-quick", "cifar10-cpu"])
def test_committed_single_budget_reports_keep_their_tables(name, tmp_path):
    """The committed report's tables, rebuilt from its own runs.csv and tables (no MLflow store, no
    figures drawn), come out byte for byte the same."""
    from prunebench.reports.build import _prepare
    from prunebench.reports.inputs import PriorReport, RunStore, resolve_source
    from prunebench.reports.stats import study_options

    committed = ROOT / "reports" / name
    runs = pd.read_csv(committed / "tables" / "runs.csv")
    assert len(bd.budgets(runs)) == 1
    runs["tracking_uri"] = "sqlite:////nonexistent/prunebench-budget-test.db"
    src = resolve_source(runs)
    store = RunStore(PriorReport(committed))
    try:
        c = _prepare(src, tmp_path, store, study_options(None))
    finally:
        store.close()
    c.hist.to_csv(tmp_path / "tables" / "histories.csv", index=False)  # as the curves section writes it
    for table in ("leaderboard.csv", "paired.csv", "stability.csv", "histories.csv"):
        assert (tmp_path / "tables" / table).read_text() == (committed / "tables" / table).read_text(), table


def test_cross_seed_claim_from_kept_masks():
    """The cross-seed analysis reads each run's kept masks from the store and pairs seed pairs against
    random-dynamic's; here OrderDP's three seeds keep nearly the same samples, random-dynamic's do not."""
    from prunebench.reports.budget_sections import _claims, _cross_seed_values

    rng = np.random.default_rng(0)
    n, e = 400, 3
    shared = rng.random((e, n)) < 0.5
    masks = {("orderdp-c0.8", s): shared ^ (rng.random((e, n)) < 0.02) for s in range(3)}
    masks |= {("random-dynamic", s): rng.random((e, n)) < 0.5 for s in range(3)}

    class Store:  # what the section asks of a RunStore
        def kept_masks(self, row):
            return masks[(row["method"], int(row["seed"]))]

    ok = pd.DataFrame(
        [
            {
                "dataset": "d",
                "model": "m",
                "epochs": e,
                "prune_ratio": 0.5,
                "method": m,
                "seed": s,
                "pruner": PRUNER[m],
                "granularity": "epoch",
            }
            for m, s in masks
        ]
    )
    values = _cross_seed_values(ok, Store())
    assert len(values) == 6  # 3 pairs of seeds per method
    v = values.set_index(["method", "unit"])["value"]
    a, b = masks[("orderdp-c0.8", 0)], masks[("orderdp-c0.8", 1)]
    by_hand = np.mean([(a[t] & b[t]).sum() / (a[t] | b[t]).sum() for t in range(e)])
    assert v[("orderdp-c0.8", "0-1")] == pytest.approx(by_hand, abs=1e-12)
    cross = bd.versus_baseline(values)
    empty = pd.DataFrame(
        columns=bd.CELL
        + ["n_units", "mean", "ci_low", "ci_high", "n_pairs", "diff_mean", "diff_ci_low", "diff_ci_high", "claim"]
    )
    claims = _claims(ok, empty, cross, empty, pd.DataFrame(columns=["epochs"]))
    row = claims[claims["claim"].str.contains("Table 9")].iloc[0]
    assert row["verdict"] == "holds" and "over 3 seed pairs" in row["evidence"]
    assert set(claims.loc[claims["claim"].str.contains("Table 8|Table 11"), "verdict"]) == {"not measured"}
