"""Sweeps: grids, per-point intervals, the best point and the points not distinguishable from it, trial
bookkeeping under early stopping (hand-computed fixtures), and sweeps run from study files into reports."""

from __future__ import annotations

import ast
import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prunebench.errors import ConfigError
from prunebench.reports import sweeps as sw
from prunebench.studies import load_study, run_leaderboard, run_sweep
from prunebench.studies.spec import grid_values

T2 = 4.302652729911275  # t(0.975, df=2), from tables
T1 = 12.706204736174707  # t(0.975, df=1)


def write(tmp_path: Path, text: str, name: str = "sw") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(textwrap.dedent(text))
    return path


HEAD = """
[study]
name = "sw"
seeds = [0, 1]

[recipe]
dataset = "synthetic"
model = "mlp"
epochs = {epochs}
batch_size = 64
lr = 0.1
device = "cpu"
"""


# ---------------------------------------------------------------------------------------------------
# grids
# ---------------------------------------------------------------------------------------------------


def test_grid_values_by_hand():
    assert grid_values(0.5, 1.0, 6) == (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    assert grid_values(0.0, 1.0, 3) == (0.0, 0.5, 1.0)
    assert grid_values(1, 4, 3, integer=True) == (1, 2, 4)  # 1, 2.5 -> 2, 4
    assert grid_values(0.7, 0.7, 1) == (0.7,)


def test_grid_is_the_default_for_one_axis_and_spans_the_count(tmp_path):
    study = load_study(
        write(
            tmp_path,
            HEAD.format(epochs=2)
            + """
    [sweeps.split]
    kind = "accuracy"
    pruner = "orderdp"
    prune_ratio = 0.4
    space = { candidate_ratio = [0.6, 1.0] }
    grid_points = 5

    [sweeps.both]
    kind = "pareto"
    pruner = "orderdp"
    space = { prune_ratio = { values = [0.2, 0.6] }, candidate_ratio = { values = [0.0, 0.25, 1.0], relative = true } }

    [sweeps.tpe]
    kind = "accuracy"
    pruner = "orderdp"
    space = { prune_ratio = [0.2, 0.6], candidate_ratio = { low = 0.0, high = 1.0, relative = true } }
    """,
        )
    )
    split = study.sweeps["split"]
    assert split.sampler == "grid" and split.n_trials == 5 and split.seeds == (0, 1)
    assert [split.resolve(p) for p in split.grid()] == [
        (0.4, {"candidate_ratio": c}) for c in (0.6, 0.7, 0.8, 0.9, 1.0)
    ]
    both = study.sweeps["both"]
    assert both.sampler == "grid" and len(both.grid()) == 6
    # relative: c = (1 - p) + u p, computed by hand
    got = {(p["prune_ratio"], p["candidate_ratio"]): both.resolve(p)[1]["candidate_ratio"] for p in both.grid()}
    assert got == pytest.approx(
        {(0.2, 0.0): 0.8, (0.2, 0.25): 0.85, (0.2, 1.0): 1.0, (0.6, 0.0): 0.4, (0.6, 0.25): 0.55, (0.6, 1.0): 1.0}
    )
    assert both.label(both.grid()[1]) == "both[prune_ratio=0.2,candidate_ratio@rel=0.25]"
    assert study.sweeps["tpe"].sampler == "tpe"  # two ranges: an Optuna sampler
    with pytest.raises(ConfigError):
        study.sweeps["tpe"].grid()


def test_every_declared_option_is_an_axis(tmp_path):
    study = load_study(
        write(
            tmp_path,
            HEAD.format(epochs=2)
            + """
    [sweeps.ucb]
    kind = "accuracy"
    pruner = "ucb"
    prune_ratio = 0.5
    space = { c = { values = [0.5, 1.0, 2.0] } }

    [sweeps.sb]
    kind = "pareto"
    pruner = "selective-backprop"
    space = { beta = { values = [1.0, 2.0] }, prune_ratio = { values = [0.3, 0.5] } }
    """,
        )
    )
    assert [p["c"] for p in study.sweeps["ucb"].grid()] == [0.5, 1.0, 2.0]
    assert len(study.sweeps["sb"].grid()) == 4
    # the sweep code (docstrings aside) names no option of any one pruner
    root = Path(__file__).resolve().parents[1] / "prunebench"
    for f in ("studies/spec.py", "studies/sweep.py", "reports/sweeps.py"):
        tree = ast.parse((root / f).read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Module)) and ast.get_docstring(node):
                node.body = node.body[1:]
        code = ast.unparse(tree)
        for option in ("candidate_ratio", "delta", "beta", "epsilon"):
            assert option not in code, (f, option)


# ---------------------------------------------------------------------------------------------------
# statistics on hand-made fixtures
# ---------------------------------------------------------------------------------------------------


def fixture_results() -> pd.DataFrame:
    """Three points x three seeds, plus full; accuracies chosen so every number is computable by hand."""
    acc = {"a": [0.90, 0.92, 0.94], "b": [0.89, 0.91, 0.95], "c": [0.80, 0.81, 0.79], "full": [0.97, 0.97, 0.98]}
    x = {"a": 0.6, "b": 0.8, "c": 1.0, "full": np.nan}
    rows = []
    for pt, vals in acc.items():
        for seed, v in enumerate(vals):
            rows.append(
                {
                    "point": pt,
                    "method": pt,
                    "seed": seed,
                    "status": "FINISHED",
                    "final_acc": v,
                    "relative_compute": 1.0 if pt == "full" else 0.5,
                    "scoring_relative_compute": 0.1 if pt == "c" else np.nan,
                    "axis.candidate_ratio": x[pt],
                    "pruner": "orderdp" if pt != "full" else "full",
                    "prune_ratio": 0.5 if pt != "full" else 0.0,
                }
            )
    rows.append({**rows[0], "seed": 9, "status": "FAILED", "final_acc": 0.0})  # not counted anywhere
    return pd.DataFrame(rows)


def test_point_ci_best_and_not_distinguishable_by_hand():
    t = sw.point_table(fixture_results(), "accuracy").set_index("point")
    # a: mean 0.92, sd 0.02, half-width t(0.975, 2) * 0.02 / sqrt(3)
    half = T2 * 0.02 / math.sqrt(3)
    assert t.loc["a", "acc_mean"] == pytest.approx(0.92)
    assert t.loc["a", "acc_std"] == pytest.approx(0.02)
    assert (t.loc["a", "acc_ci_low"], t.loc["a", "acc_ci_high"]) == pytest.approx((0.92 - half, 0.92 + half))
    assert t.loc["a", "n_seeds"] == 3  # the failed run is left out
    # total cost = training + scoring relative compute
    assert t.loc["c", "total_compute"] == pytest.approx(0.6) and t.loc["a", "total_compute"] == pytest.approx(0.5)
    # best: a (0.92) over b (0.9167); paired differences a - b = 0.01, 0.01, -0.01: mean 1/300,
    # sd sqrt(((2/300)^2 * 2 + (4/300)^2) / 2) = 0.011547, CI contains 0 -> not distinguishable
    assert t["best"].sum() == 1 and t.loc["a", "best"]
    d = np.array([0.01, 0.01, -0.01])
    h = T2 * d.std(ddof=1) / math.sqrt(3)
    assert t.loc["b", "diff_vs_best"] == pytest.approx(d.mean())
    assert (t.loc["b", "diff_ci_low"], t.loc["b", "diff_ci_high"]) == pytest.approx((d.mean() - h, d.mean() + h))
    assert t.loc["b", "indistinguishable"]
    # a - c = 0.10, 0.11, 0.15: CI well above 0 -> distinguishable
    d = np.array([0.10, 0.11, 0.15])
    assert t.loc["c", "diff_ci_low"] == pytest.approx(d.mean() - T2 * d.std(ddof=1) / math.sqrt(3))
    assert not t.loc["c", "indistinguishable"]
    assert t.loc["full", "is_reference"] and not t.loc["full", "indistinguishable"]  # full is no contender
    assert "best: candidate_ratio = 0.6: 92.00%" in sw.best_sentence(t.reset_index())
    assert "candidate_ratio = 0.8" in sw.best_sentence(t.reset_index()).split("not distinguishable")[1]


def test_pairing_uses_only_common_seeds_and_two_pairs_at_least():
    r = fixture_results()
    # b lost seeds 1 and 2: one pair with the best cannot give an interval -> not distinguishable
    r = r[~((r["point"] == "b") & r["seed"].isin([1, 2]))]
    t = sw.point_table(r, "accuracy").set_index("point")
    assert t.loc["b", "n_paired"] == 1 and math.isnan(t.loc["b", "diff_ci_low"]) and t.loc["b", "indistinguishable"]
    # paired by seed, not by position: a vs c on seeds {0, 1} only
    r2 = fixture_results()
    r2 = r2[~((r2["point"] == "c") & (r2["seed"] == 2))]
    t2 = sw.point_table(r2, "accuracy").set_index("point")
    d = np.array([0.10, 0.11])
    assert t2.loc["c", "n_paired"] == 2
    assert t2.loc["c", "diff_ci_low"] == pytest.approx(d.mean() - T1 * d.std(ddof=1) / math.sqrt(2))


def test_pareto_front_over_means_by_hand():
    r = fixture_results()
    t = sw.point_table(r, "pareto").set_index("point")
    # a (0.5, 0.92) dominates b (0.5, 0.9167) and c (0.6, 0.80); full is the reference, not on the front
    assert t.loc["a", "on_front"] and not t.loc["b", "on_front"] and not t.loc["c", "on_front"]
    assert not t.loc["full", "on_front"]
    assert list(sw.pareto_front_mask([1, 2, 3, 2], [0.5, 0.7, 0.9, 0.6])) == [True, True, True, False]


def test_trial_bookkeeping_by_hand():
    trials = pd.DataFrame(
        {
            "trial": [0, 1, 2, 3, 4],
            "state": ["COMPLETE", "PRUNED", "PRUNED", "FAIL", "COMPLETE"],
            "stopped_at": [None, "seed 0, epoch 6 of 12", "seed 1, epoch 9 of 12", None, None],
        }
    )
    b = sw.trial_bookkeeping(trials, asked=5)
    assert b["complete"] == [0, 4] and b["failed"] == [3]
    assert b["stopped"] == [(1, "seed 0, epoch 6 of 12"), (2, "seed 1, epoch 9 of 12")]
    assert (
        len(b["warnings"]) == 1
        and "only 2 of the 5 trials asked for completed (2 early-stopped, 1 failed" in b["warnings"][0]
    )
    assert sw.trial_bookkeeping(trials[trials["state"] == "COMPLETE"], asked=2)["warnings"] == []


# ---------------------------------------------------------------------------------------------------
# sweeps run from study files
# ---------------------------------------------------------------------------------------------------

DELTA = """
[methods.infobatch]
prune_ratios = [0.5]

[sweeps.delta]
kind = "accuracy"
pruner = "infobatch"
prune_ratio = 0.5
space = { delta = { values = [0.5, 1.0] } }
"""


def _count_training_runs(uri: str) -> int:
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri=uri)
    exp = c.get_experiment_by_name("sw")
    return len(c.search_runs([exp.experiment_id], max_results=1000))


def test_infobatch_delta_grid_sweep_resumes_and_reaches_the_report(tmp_path):
    from prunebench.reports import build_report

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = load_study(write(tmp_path, HEAD.format(epochs=2) + DELTA))
    res = run_sweep(study, sweep="delta", out_dir=tmp_path / "results", tracking_uri=uri)
    folder = tmp_path / "results" / "sweeps" / "delta"
    assert res.folder == folder and (folder / "results.csv").is_file() and (folder / "points.csv").is_file()
    runs = pd.read_csv(folder / "results.csv")
    # 2 points x 2 seeds + full x 2 seeds, each the option value it claims
    assert len(runs) == 6 and set(runs["point"]) == {"full", "delta[delta=0.5]", "delta[delta=1]"}
    pts = runs[runs["point"] != "full"]
    assert sorted(pts["axis.delta"]) == [0.5, 0.5, 1.0, 1.0]
    assert (pts["pruner.delta"].to_numpy() == pts["axis.delta"].to_numpy()).all()
    n = _count_training_runs(uri)
    assert n == 6
    # a second invocation trains nothing: every (point, seed) is a keyed cell found in MLflow
    again = run_sweep(study, sweep="delta", out_dir=tmp_path / "results", tracking_uri=uri)
    assert _count_training_runs(uri) == n
    assert sorted(again.results["final_acc"]) == sorted(runs["final_acc"])
    # the study's leaderboard shares full with the sweep (same run keys): only infobatch is trained
    run_leaderboard(study, tmp_path / "results", tracking_uri=uri)
    assert _count_training_runs(uri) == n + 2
    # the report includes the sweep without any conversion
    index = build_report(tmp_path / "results", tmp_path / "report")
    md = (tmp_path / "report" / "README.md").read_text()
    assert "## Sweeps" in md and "delta (accuracy: infobatch, prune ratio 0.5)" in md and "best: delta = " in md
    assert (tmp_path / "report" / "figures" / "sweep-delta.png").is_file()
    assert (tmp_path / "report" / "tables" / "sweep-delta.csv").is_file()
    assert index.is_file()


def test_grid_point_that_is_a_leaderboard_cell_reuses_its_runs(tmp_path):
    """A split sweep at p = 0.5 whose c = 0.8 point is the study's own `od-c0.8` cell at p = 0.5: the leaderboard's
    runs count for it (same run keys), so only the other points train; `od-c0.8` at p = 0.3 is not a point."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = load_study(
        write(
            tmp_path,
            HEAD.format(epochs=2)
            + """
    [methods."od-c0.8"]
    pruner = "orderdp"
    options = { candidate_ratio = 0.8 }
    prune_ratios = [0.3, 0.5]

    [methods."od-c0.8-low"]
    pruner = "orderdp"
    options = { candidate_ratio = 0.8 }
    prune_ratios = [0.3]

    [sweeps.split]
    kind = "accuracy"
    pruner = "orderdp"
    prune_ratio = 0.5
    space = { candidate_ratio = { values = [0.5, 0.8, 1.0] } }
    """,
        )
    )
    board = run_leaderboard(study, tmp_path / "results", tracking_uri=uri)
    n = _count_training_runs(uri)
    assert n == 2 * (1 + 2 + 1)  # full, od-c0.8 at 0.3 and 0.5, od-c0.8-low, for 2 seeds
    res = run_sweep(study, sweep="split", out_dir=tmp_path / "results", tracking_uri=uri)
    assert _count_training_runs(uri) == n + 2 * 2  # c = 0.5 and c = 1.0 only
    runs = res.results
    assert set(runs["point"]) == {"full", "od-c0.8", "split[candidate_ratio=0.5]", "split[candidate_ratio=1]"}
    mine = runs[runs["point"] == "od-c0.8"].sort_values("seed")
    assert list(mine["axis.candidate_ratio"]) == [0.8, 0.8]
    theirs = board[(board["method"] == "od-c0.8") & (board["prune_ratio"] == 0.5)].sort_values("seed")
    assert list(mine["run_id"]) == list(theirs["run_id"]) and list(mine["final_acc"]) == list(theirs["final_acc"])


def test_early_stopped_trials_are_excluded_listed_and_warned(tmp_path, monkeypatch):
    import optuna

    import prunebench.studies.sweep as sweep_mod

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = load_study(
        write(
            tmp_path,
            HEAD.format(epochs=4)
            + """
    [sweeps.es]
    kind = "accuracy"
    pruner = "orderdp"
    prune_ratio = 0.5
    space = { candidate_ratio = [0.5, 1.0] }
    sampler = "random"
    n_trials = 2
    seeds = [0]
    early_stopping = true
    early_stopping_warmup = 0.5
    """,
        )
    )
    # a pruner that would stop every trial at every report: the warm-up alone decides where they stop
    monkeypatch.setattr(sweep_mod, "_pruner", lambda spec, early: optuna.pruners.ThresholdPruner(lower=1.5))
    res = run_sweep(study, sweep="es", out_dir=tmp_path / "results", tracking_uri=uri)
    trials = pd.read_csv(tmp_path / "results" / "sweeps" / "es" / "trials.csv")
    assert list(trials["state"]) == ["PRUNED", "PRUNED"]
    # warm-up 0.5 of 4 epochs: stopped after epoch 2 (not epoch 1)
    assert list(trials["stopped_at"]) == ["seed 0, epoch 2 of 4", "seed 0, epoch 2 of 4"]
    assert (res.results["point"] == "full").sum() == len(res.results)  # no stopped trial among the results
    assert res.warnings and "only 0 of the 2 trials asked for completed (2 early-stopped" in res.warnings[0]
    text = sweep_mod.format_sweep(res)
    assert "early-stopped (excluded from the best): trial 0 (seed 0, epoch 2 of 4); trial 1" in text
    assert "WARNING: only 0 of the 2" in text
