"""The cost model and the paired statistics (prunebench.reports.stats), against hand computations and an
independent pandas/scipy computation; the report's figures draw an interval on every point."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from prunebench.reports import leaderboard_table, paired_table, with_costs
from prunebench.studies import format_leaderboard
from prunebench.studies import leaderboard_table as cli_table

E, N = 10, 1000  # the fixture's epochs and samples (only ratios matter)


def _row(method, gran, p, seed, acc, train_c, train_s, **extra):
    return dict(
        dataset="d",
        model="m",
        method=method,
        pruner=method,
        granularity=gran,
        prune_ratio=p,
        seed=seed,
        status="FINISHED",
        final_acc=acc,
        best_acc=acc,
        realized_prune_ratio=p,
        relative_compute=train_c,
        train_time_s=train_s,
        selection_time_s=0.0,
        scoring_time_s=0.001,
        epochs=E,
        num_samples=N,
        **extra,
    )


def _study(el2n_cache_hit: bool, legacy: bool = False) -> pd.DataFrame:
    """full, random-static, random-dynamic and el2n (a static method whose proxy costs 0.36 of a full
    training and 12 s) at p = 0.4, 3 seeds. el2n and random-dynamic have the same accuracy on every seed."""
    rows = []
    for s in range(3):
        rows.append(_row("full", "epoch", 0.0, s, 0.90 + 0.01 * s, 1.0, 100.0))
        rows.append(_row("random-static", "static", 0.4, s, 0.85 + 0.01 * s, 0.6, 60.0))
        rows.append(_row("random-dynamic", "epoch", 0.4, s, 0.88 + 0.01 * s, 0.6, 61.0))
        own = 0.5  # el2n's own scoring work after the proxy (seconds)
        if el2n_cache_hit:  # the proxy's records read from the cache in 0.1 s; its cost carried from the miss
            proxy = dict(scoring_time_s=0.1 + own, scoring_cache_hit=True, scoring_proxy_wall_s=0.1)
        else:  # the proxy trained in this run: 12 s (+ 0.2 s writing the cache)
            proxy = dict(scoring_time_s=12.2 + own, scoring_cache_hit=False, scoring_proxy_wall_s=12.2)
        if legacy:  # a table written before scoring_proxy_wall_s: the cache read stays in the hit's time
            proxy.pop("scoring_proxy_wall_s")
            proxy["scoring_time_s"] = (0.0 if el2n_cache_hit else 12.0) + own
        r = _row(
            "el2n",
            "static",
            0.4,
            s,
            0.88 + 0.01 * s,
            0.6,
            59.0,
            scoring_relative_compute=0.36,
            scoring_proxy_time_s=12.0,
            **{"pruner.proxy_model": "m", "pruner.proxy_epochs": 4, "pruner.proxy_seeds": "[0]"},
        )
        r.update(proxy)
        rows.append(r)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("legacy", [False, True])
def test_static_proxy_cost_ranking_and_pareto_by_hand_with_and_without_cache_hit(legacy):
    boards = []
    for hit in (False, True):
        lb = leaderboard_table(_study(hit, legacy)).set_index("method")
        e = lb.loc["el2n"]
        # total compute = 0.6 of training + 0.36 of proxy: 4% saved, not 40%
        assert e["total_compute"] == pytest.approx(0.96) and e["compute_saved"] == pytest.approx(0.04)
        assert e["train_compute_saved"] == pytest.approx(0.4)
        # seconds: 59 of training + 12 of proxy (its original time) + 0.5 of el2n's own scoring
        assert e["scoring_cost_s"] == pytest.approx(12.5) and e["total_cost_s"] == pytest.approx(71.5)
        assert e["wallclock_saved"] == pytest.approx(1 - 71.5 / (100.0 + 0.001))
        # el2n ties random-dynamic on accuracy, costs more: ranked after it; off the Pareto front
        assert (lb.loc["random-dynamic", "rank"], e["rank"], lb.loc["random-static", "rank"]) == (1, 2, 3)
        assert lb["pareto"].to_dict() == {"full": True, "random-dynamic": True, "el2n": False, "random-static": False}
        boards.append(lb)
    cols = ["total_compute", "compute_saved", "scoring_cost_s", "total_cost_s", "rank", "pareto"]
    pd.testing.assert_frame_equal(boards[0][cols], boards[1][cols])  # a cache hit changes nothing


def test_proxy_charge_amortised_divides_a_shared_proxy():
    df = _study(False)
    # forgetting has no proxy_seeds option and leaves proxy_model at its default (the run's model): same proxy
    other = df[df["method"] == "el2n"].assign(
        method="forgetting", pruner="forgetting", **{"pruner.proxy_seeds": np.nan, "pruner.proxy_model": np.nan}
    )
    df = pd.concat([df, other], ignore_index=True)
    full = with_costs(df, "full")
    am = with_costs(df, "amortised")
    el = am["method"].isin(["el2n", "forgetting"])
    assert (full.loc[el, "scoring_compute"] == 0.36).all()
    np.testing.assert_allclose(am.loc[el, "scoring_compute"], 0.18)  # 2 runs per seed share each proxy
    np.testing.assert_allclose(am.loc[el, "scoring_cost_s"], 0.5 + 12.0 / 2)
    assert (am.loc[~el, "scoring_compute"] == 0).all() and (am["proxy_sharing"][el] == 2).all()
    with pytest.raises(ValueError, match="valid: full, amortised"):
        with_costs(df, "half")


def _paired_fixture() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    rows = []
    for s in range(5):
        rows.append(_row("full", "epoch", 0.0, s, 0.9 + rng.normal(0, 0.01), 1.0, 1.0))
        for p in (0.3, 0.5):
            for m, gran, shift in (
                ("random-dynamic", "epoch", -0.03),
                ("random-static", "static", -0.05),
                ("a", "epoch", -0.01),
                ("b", "batch", -0.031),
                ("c", "static", -0.02),
            ):
                if m == "b" and s == 4:
                    continue  # b misses seed 4: paired on 4 seeds
                if m == "c" and p == 0.5 and s >= 2:
                    continue  # c at 0.5 has 2 seeds: fewer than 3 paired
                rows.append(_row(m, gran, p, s, 0.9 + shift * (1 + p) + rng.normal(0, 0.004), 1 - p, 1.0))
    return pd.DataFrame(rows)


def test_paired_table_matches_an_independent_scipy_computation():
    df = _paired_fixture()
    pt = paired_table(df)
    wide = df.pivot_table(index="seed", columns=["method", "prune_ratio"], values="final_acc")
    full = df[df["method"] == "full"].set_index("seed")["final_acc"]
    base = {
        "a": "random-dynamic",
        "b": "random-dynamic",
        "c": "random-static",
        "random-dynamic": None,
        "random-static": None,
    }
    checked = 0
    for p in (0.3, 0.5):
        means = {m: wide[(m, p)].mean() for m in base}
        order = sorted(means, key=lambda m: -means[m])
        for m, b in base.items():
            refs = {"full": full, "baseline": wide[(b, p)] if b else None, "leader": wide[(order[0], p)]}
            for kind, ref in refs.items():
                got = pt[(pt["method"] == m) & (pt["prune_ratio"] == p) & (pt["reference_kind"] == kind)]
                if ref is None or (kind == "leader" and m == order[0]):
                    assert got.empty
                    continue
                x = pd.concat([wide[(m, p)], ref], axis=1).dropna()
                res = stats.ttest_rel(x.iloc[:, 0], x.iloc[:, 1])
                ci = res.confidence_interval(0.95)
                r = got.iloc[0]
                assert r["n_pairs"] == len(x)
                assert r["diff_mean"] == pytest.approx((x.iloc[:, 0] - x.iloc[:, 1]).mean(), abs=1e-12)
                assert r["diff_sd"] == pytest.approx((x.iloc[:, 0] - x.iloc[:, 1]).std(ddof=1), abs=1e-12)
                assert (r["diff_ci_low"], r["diff_ci_high"]) == pytest.approx((ci.low, ci.high), abs=1e-12)
                want = "not distinguishable" if res.pvalue >= 0.05 else "better" if res.statistic > 0 else "worse"
                assert r["verdict"] == want
                assert r["few_seeds"] == (len(x) < 3)
                assert r["rank"] == order.index(m) + 1
                checked += 1
    assert checked == 2 * (5 + 3 + 4)  # vs full x5, vs baseline x3, vs leader x4, at two ratios
    assert set(pt.loc[(pt["method"] == "b"), "n_pairs"]) == {4}
    c05 = pt[(pt["method"] == "c") & (pt["prune_ratio"] == 0.5)]
    assert c05["few_seeds"].all() and (c05["n_pairs"] == 2).all()
    # the CLI table says so in its own words
    text = format_leaderboard(cli_table(df))
    assert "(n=2)" in text and "positive = better" in text


def test_cli_table_and_report_table_share_order_and_numbers():
    df = _paired_fixture()
    a, b = cli_table(df), leaderboard_table(df)
    assert list(a["method"] + a["prune_ratio"].astype(str)) == list(b["method"] + b["prune_ratio"].astype(str))
    np.testing.assert_allclose(a["vs_full_mean"].astype(float), b["vs_full_mean"].astype(float))


def test_accuracy_vs_compute_has_an_interval_on_every_point_with_a_single_ratio(tmp_path):
    from prunebench.reports import figures

    df = with_costs(_paired_fixture().query("prune_ratio in (0.0, 0.3)"))
    df["series"] = df["method"]
    pts = figures.accuracy_vs_compute(df, figures.palette(sorted(df["series"].unique())), tmp_path / "f.png")
    assert len(pts) == df.groupby(["method", "prune_ratio"]).ngroups == 6
    assert pts[["y_low", "y_high", "x_low", "x_high"]].notna().all().all()
    assert (pts["y_low"] < pts["y"]).all() and (pts["y"] < pts["y_high"]).all()
    assert set(pts["family"]) == {"static", "epoch-level", "batch-level"}
    assert (tmp_path / "f.png").stat().st_size > 10_000


def test_harness_row_carries_the_total_cost_on_a_cache_miss_and_a_hit(tmp_path):
    from prunebench.harness import train

    cfg = dict(
        dataset="synthetic:n=240,classes=4",
        model="mlp",
        epochs=2,
        batch_size=64,
        pruner="el2n",
        prune_ratio=0.5,
        pruner_options={"proxy_epochs": 1},
        seed=0,
        score_cache=str(tmp_path),
        tracking=False,
    )
    miss, hit = train(cfg).row, train(cfg).row
    assert (miss["scoring_cache_hit"], hit["scoring_cache_hit"]) == (False, True)
    assert (
        hit["total_compute"]
        == miss["total_compute"]
        == pytest.approx(miss["relative_compute"] + miss["scoring_relative_compute"])
    )
    assert hit["scoring_proxy_time_s"] == miss["scoring_proxy_time_s"] > 0  # the original time, carried
    for r in (miss, hit):
        want = r["train_time_s"] + r["scoring_time_s"] - r["scoring_proxy_wall_s"] + r["scoring_proxy_time_s"]
        assert r["total_cost_s"] == pytest.approx(want, abs=1e-9)
    assert hit["scoring_proxy_wall_s"] < miss["scoring_proxy_wall_s"]
    assert math.isfinite(hit["total_cost_s"]) and hit["total_cost_s"] >= hit["scoring_proxy_time_s"]


STUDY = """
[study]
name = "v"
seeds = [0]
prune_ratios = [0.5]
{extra}

[recipe]
dataset = "synthetic"
model = "mlp"
epochs = 2

[methods.random-dynamic]
[methods.orderdp]
options = {{ candidate_ratio = 0.75 }}
"""


@pytest.mark.parametrize(
    "extra, words",
    [
        ('proxy_charge = "half"', "study.proxy_charge: 'half' is not valid; valid: full, amortised"),
        ('baselines = { dynamic = "nope" }', "study.baselines.dynamic: 'nope' is not a method of this study"),
        ('baselines = { batch = "orderdp" }', "study.baselines.batch: unknown key"),
    ],
)
def test_study_options_are_validated(tmp_path, extra, words):
    from prunebench.errors import ConfigError
    from prunebench.studies import load_study

    path = tmp_path / "v.toml"
    path.write_text(STUDY.format(extra=extra))
    with pytest.raises(ConfigError) as e:
        load_study(path)
    assert words in str(e.value)
    path.write_text(STUDY.format(extra='proxy_charge = "amortised"\nbaselines = { dynamic = "orderdp" }'))
    st = load_study(path)
    assert st.proxy_charge == "amortised" and st.baselines == {"static": "random-static", "dynamic": "orderdp"}


def test_committed_cifar10_cpu_runs_give_orderdp_its_paired_verdict():
    from pathlib import Path

    runs = pd.read_csv(Path(__file__).resolve().parents[1] / "reports" / "cifar10-cpu" / "tables" / "runs.csv")
    pt = paired_table(runs)
    r = pt[(pt["method"] == "orderdp-c0.8") & (pt["prune_ratio"] == 0.5) & (pt["reference"] == "random-dynamic")].iloc[
        0
    ]
    a = runs[(runs["method"] == "orderdp-c0.8") & (runs["prune_ratio"] == 0.5)].set_index("seed")["final_acc"]
    b = runs[(runs["method"] == "random-dynamic") & (runs["prune_ratio"] == 0.5)].set_index("seed")["final_acc"]
    assert r["n_pairs"] == 3 and r["diff_mean"] == pytest.approx((a - b).mean()) == pytest.approx(0.0059, abs=5e-5)
    assert r["verdict"] == "better" and r["diff_ci_low"] > 0
