"""Studies: study-file validation, run keys, resumable leaderboards, ranking, Optuna sweeps."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prunebench.errors import ConfigError, PrunebenchError
from prunebench.studies import leaderboard_table, load_study, run_leaderboard

REPO = Path(__file__).resolve().parents[1]
ROW_KEYS = {
    "run_id",
    "label",
    "pruner",
    "prune_ratio",
    "seed",
    "final_acc",
    "best_acc",
    "train_time_s",
    "selection_time_s",
    "scoring_time_s",
    "samples_forward",
    "samples_backprop",
    "realized_prune_ratio",
    "relative_compute",
    "jaccard_mean",
    "status",
    "error",
    "study",
    "method",
    "run_key",
    "tracking_uri",
    "experiment",
}

TINY = """
[study]
name = "{name}"
seeds = [0, 1]
prune_ratios = [0.5]

[recipe]
dataset = "synthetic"
model = "mlp"
epochs = {epochs}
batch_size = 64
lr = {lr}
device = "cpu"

[methods.random-dynamic]

[methods.orderdp]
options = {{ candidate_ratio = 0.75 }}
"""


def write_study(tmp_path: Path, name="tiny", epochs=2, lr=0.1, extra="", text=None) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(textwrap.dedent(text if text is not None else TINY.format(name=name, epochs=epochs, lr=lr)) + extra)
    return path


def mlflow_runs(uri: str, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=10_000) if exp else []


# ---------------------------------------------------------------------------------------------------
# study files
# ---------------------------------------------------------------------------------------------------


def test_digits_quick_grid_and_keys():
    study = load_study(REPO / "studies" / "digits-quick.toml")
    runs = study.runs()
    names = [m.name for m in study.methods]
    assert names[0] == "full" and "orderdp-c0.8" in names and "orderdp-c0.9" in names
    # full once per seed, every other method x its ratios x seeds
    expected = len(study.seeds) * (1 + sum(len(m.prune_ratios) for m in study.methods[1:]))
    assert len(runs) == expected == 45  # 15 cells (infobatch and infobatch-noanneal among them) x 3 seeds
    assert len({r.run_key for r in runs}) == len(runs)
    cells = {(r.method, r.prune_ratio, r.seed) for r in runs}
    assert len(cells) == len(runs)
    assert all(r.prune_ratio == 0 for r in runs if r.method == "full")
    assert [r.run_key for r in load_study(study.path).runs()] == [r.run_key for r in runs]  # stable
    assert set(study.sweeps) == {"split-p0.5", "infobatch-delta", "pareto"}
    sw = study.sweeps["split-p0.5"]
    assert (
        sw.kind == "accuracy"
        and sw.sampler == "grid"
        and sw.space["candidate_ratio"].values == (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    )


def test_run_key_follows_recipe_and_options_not_spelling(tmp_path):
    base = load_study(write_study(tmp_path))
    # spelling out a default option value is the same run
    same = load_study(
        write_study(
            tmp_path,
            name="tiny",
            extra="",
            text=TINY.format(name="tiny", epochs=2, lr=0.1).replace(
                "candidate_ratio = 0.75", "candidate_ratio = 0.75, initial_score = 3.0"
            ),
        )
    )
    assert [r.run_key for r in same.runs()] == [r.run_key for r in base.runs()]
    # anything that changes what a run computes changes its key
    other = load_study(write_study(tmp_path, epochs=3))
    assert not {r.run_key for r in other.runs()} & {r.run_key for r in base.runs()}
    opt = load_study(
        write_study(
            tmp_path,
            text=TINY.format(name="tiny", epochs=2, lr=0.1).replace("candidate_ratio = 0.75", "candidate_ratio = 0.8"),
        )
    )
    diff = {a.method for a, b in zip(opt.runs(), base.runs()) if a.run_key != b.run_key}
    assert diff == {"orderdp"}
    # where the data lives does not
    assert [r.run_key for r in base.runs(data_dir=str(tmp_path))] == [r.run_key for r in base.runs()]


BAD_FILES = [
    ("[study]\nname='x'\nseeds=[0]\n[bogus]\n", "bogus: unknown key; valid keys: study, recipe, methods, sweeps"),
    ("[recipe]\n", "study: missing table [study]"),
    ("[study]\nname='x'\nseeds=[0]\ncolour=1\n", "study.colour: unknown key; valid keys in study: name, description"),
    ("[study]\nname='x'\nseeds=[0, 0]\n", "study.seeds: seeds repeat"),
    ("[study]\nname='x'\nseeds=['a']\n", "study.seeds: expected a non-empty list of integers >= 0"),
    ("[study]\nname='x'\nseeds=[0]\nprune_ratios=[1.5]\n", "study.prune_ratios: prune ratio must be in [0, 1)"),
    ("[study]\nname='x'\nseeds=[0]\n[recipe]\nepochs='10'\n", "recipe.epochs: expected an integer, got a string '10'"),
    (
        "[study]\nname='x'\nseeds=[0]\n[recipe]\nepoch=10\n",
        "recipe.epoch: unknown key; valid keys in recipe: dataset, model",
    ),
    ("[study]\nname='x'\nseeds=[0]\n[recipe]\nseed=1\n", "recipe.seed: unknown key (seed is set by the study itself)"),
    (
        "[study]\nname='x'\nseeds=[0]\n[recipe]\noptimizer='adam'\n",
        "recipe.optimizer: 'adam' is not valid; valid: 'sgd', 'adamw'",
    ),
    ("[study]\nname='x'\nseeds=[0]\n[recipe]\nepochs=0\n", "recipe: epochs must be >= 1"),
    ("[study]\nname='x'\nseeds=[0]\n[recipe]\nmodel='vgg'\n", "recipe.model: unknown model 'vgg'; valid:"),
    ("[study]\nname='x'\nseeds=[0]\n[recipe]\ndataset='mnist'\n", "recipe.dataset: unknown dataset 'mnist'; valid:"),
    (
        "[study]\nname='x'\nseeds=[0]\nprune_ratios=[0.5]\n[methods.nope]\n",
        "methods.nope.pruner: unknown pruner 'nope'",
    ),
    (
        "[study]\nname='x'\nseeds=[0]\nprune_ratios=[0.5]\n[methods.a]\npruner='orderdp'\noptions={candidat=0.9}\n",
        "methods.a.options.candidat: unknown option of pruner 'orderdp'; valid options: candidate_ratio, initial_score",
    ),
    (
        "[study]\nname='x'\nseeds=[0]\nprune_ratios=[0.5]\n[methods.a]\npruner='orderdp'\noptions={candidate_ratio='0.9'}\n",
        "methods.a.options.candidate_ratio: expected a number, got a string '0.9'",
    ),
    (
        "[study]\nname='x'\nseeds=[0]\nprune_ratios=[0.3]\n[methods.a]\npruner='orderdp'\noptions={candidate_ratio=0.5}\n",
        "methods.a.options: at prune ratio 0.3: orderdp: candidate_ratio=0.5 is below the keep fraction 1-p=0.7; valid: 0.7 <= candidate_ratio <= 1",
    ),
    ("[study]\nname='x'\nseeds=[0]\n[methods.a]\npruner='orderdp'\n", "methods.a.prune_ratios: missing"),
    (
        "[study]\nname='x'\nseeds=[0]\nprune_ratios=[0.5]\n[methods.a]\nratios=[0.5]\n",
        "methods.a.ratios: unknown key; valid keys in methods.a: pruner, options, prune_ratios",
    ),
    (
        "[study]\nname='x'\nseeds=[0]\n[methods.full]\nprune_ratios=[0.3]\n",
        "methods.full.prune_ratios: full trains on all data",
    ),
    ("[study]\nname='x'\nseeds=[0]\n", "methods: no methods"),
    (
        "[study]\nname='x'\nseeds=[0]\n[sweeps.s]\nkind='grid'\n",
        "sweeps.s.kind: 'grid' is not valid; valid: accuracy, pareto",
    ),
    (
        "[study]\nname='x'\nseeds=[0,1]\n[sweeps.s]\nkind='accuracy'\npruner='orderdp'\nprune_ratio=0.5\nspace={candidate_ratio=[0.3, 1.0]}\n",
        "sweeps.s.space: at candidate_ratio=0.3: orderdp: candidate_ratio=0.3 is below the keep fraction 1-p=0.5",
    ),
    (
        "[study]\nname='x'\nseeds=[0,1]\n[sweeps.s]\nkind='pareto'\npruner='orderdp'\nprune_ratio=0.5\nspace={candidate_ratio=[0.5, 1.0]}\nearly_stopping=true\n",
        "sweeps.s.early_stopping: early stopping of trials needs one objective",
    ),
    (
        "[study]\nname='x'\nseeds=[0,1]\n[sweeps.s]\nkind='accuracy'\nprune_ratio=0.5\npruner='infobatch'\nspace={candidate_ratio=[0.5, 1]}\n",
        "sweeps.s.space.candidate_ratio: not an option of pruner 'infobatch'; valid axes: prune_ratio, delta",
    ),
    (
        "[study]\nname='x'\nseeds=[0,1]\n[sweeps.s]\nkind='accuracy'\nprune_ratio=0.5\npruner='orderdp'\n",
        "sweeps.s.space: empty; give at least one axis",
    ),
    (
        "[study]\nname='x'\nseeds=[0,1]\n[sweeps.s]\nkind='accuracy'\npruner='orderdp'\nspace={candidate_ratio=[0.5, 1]}\n",
        "sweeps.s.prune_ratio: missing; fix it",
    ),
    (
        "[study]\nname='x'\nseeds=[0]\n[sweeps.s]\nkind='accuracy'\npruner='infobatch'\nprune_ratio=0.5\nspace={delta=[0.5, 1]}\n",
        "sweeps.s.seeds: the study has 1 seed; a sweep point needs >= 2",
    ),
    (
        "[study]\nname='x'\nseeds=[0,1]\n[sweeps.s]\nkind='accuracy'\npruner='infobatch'\nprune_ratio=0.5\nspace={delta=[0.5, 1]}\nearly_stopping=true\n",
        "sweeps.s.early_stopping: a grid sweep runs every point to the end",
    ),
    (
        "[study]\nname='x'\nseeds=[0,1]\n[sweeps.s]\nkind='accuracy'\npruner='infobatch'\nprune_ratio=0.5\nspace={delta={low=0.5,high=1,relative=true}}\n",
        "sweeps.s.space.delta.relative: pruner 'infobatch' declares no p-dependent range for 'delta'",
    ),
    ("[study\nname='x'\n", "not valid TOML"),
]


@pytest.mark.parametrize("text,message", BAD_FILES)
def test_bad_study_files_name_file_and_key(tmp_path, text, message):
    path = write_study(tmp_path, name="bad", text=text)
    with pytest.raises(ConfigError) as ei:
        load_study(path)
    msg = str(ei.value)
    assert msg.startswith(f"{path}: "), msg
    assert message in msg, msg
    assert "\n" not in msg


def test_cli_bad_study_is_one_line_exit_2_and_writes_nothing(tmp_path):
    path = write_study(tmp_path, name="bad", text="[study]\nname='x'\nseeds=[0]\nprune_ratios=[0.5]\n[methods.nope]\n")
    for cmd in (["leaderboard", str(path)], ["sweep", str(path)], ["leaderboard", str(tmp_path / "missing.toml")]):
        p = subprocess.run(
            [sys.executable, "-m", "prunebench", *cmd], cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
        assert p.returncode == 2, p.stderr
        assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
        assert p.stderr.startswith("prunebench: error: ") and (str(path) in p.stderr or "missing.toml" in p.stderr)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["bad.toml"]  # no results/, no mlflow.db
    good = write_study(tmp_path)
    p = subprocess.run(
        [sys.executable, "-m", "prunebench", "leaderboard", str(good), "--dry-run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0 and "6 runs: 6 todo" in p.stdout, p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["bad.toml", "tiny.toml"]  # a dry run writes nothing


# ---------------------------------------------------------------------------------------------------
# ranking
# ---------------------------------------------------------------------------------------------------


def test_leaderboard_table_against_hand_computation():
    rows = []
    accs = {
        ("full", 0.0): [0.90, 0.92, 0.94],
        ("a", 0.5): [0.80, 0.84, 0.88],
        ("b", 0.5): [0.86, 0.86, 0.89],
        ("a", 0.3): [0.91, 0.93],
    }
    for (m, p), vals in accs.items():
        for s, v in enumerate(vals):
            rows.append(
                dict(
                    method=m,
                    pruner=m,
                    prune_ratio=p,
                    seed=s,
                    status="FINISHED",
                    final_acc=v,
                    best_acc=v,
                    realized_prune_ratio=p,
                    relative_compute=1 - p,
                    train_time_s=10 * (1 - p),
                )
            )
    rows.append(
        dict(
            method="b",
            pruner="b",
            prune_ratio=0.5,
            seed=3,
            status="FAILED",
            final_acc=float("nan"),
            best_acc=float("nan"),
            realized_prune_ratio=float("nan"),
            relative_compute=float("nan"),
            train_time_s=float("nan"),
        )
    )
    board = leaderboard_table(pd.DataFrame(rows)).set_index(["method", "prune_ratio"])
    t975 = {1: 12.706204736, 2: 4.302652730}  # Student t quantiles (tables)
    for (m, p), vals in accs.items():
        r = board.loc[(m, p)]
        n = len(vals)
        mean = sum(vals) / n
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
        assert r["n_seeds"] == n
        assert r["acc_mean"] == pytest.approx(mean)
        assert r["acc_std"] == pytest.approx(std)
        assert r["acc_ci95"] == pytest.approx(t975[n - 1] * std / math.sqrt(n), rel=1e-6)
        full_same = sum(accs[("full", 0.0)][:n]) / n  # paired: full on the same seeds (0..n-1)
        if m != "full":  # method - full: positive = better
            assert r["vs_full_mean"] == pytest.approx(mean - full_same)
        assert r["compute_saved"] == pytest.approx(p)
        assert r["time_saved"] == pytest.approx(p)
    assert board.loc[("a", 0.3), "vs_full_mean"] == pytest.approx(0.92 - 0.91)  # seeds 0-1 only: not 0.92 - 0.92
    assert board.loc[("b", 0.5), "n_failed"] == 1 and board.loc[("a", 0.5), "n_failed"] == 0
    assert board.loc[("b", 0.5), "rank"] == 1 and board.loc[("a", 0.5), "rank"] == 2  # 0.8700 > 0.8400
    assert math.isnan(board.loc[("full", 0.0), "rank"]) and board.loc[("a", 0.3), "rank"] == 1  # full: the reference


# ---------------------------------------------------------------------------------------------------
# leaderboards: end to end, resumption, failures
# ---------------------------------------------------------------------------------------------------


def test_leaderboard_end_to_end_and_idempotent(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = load_study(write_study(tmp_path))
    out = tmp_path / "out"
    lines: list[str] = []
    res = run_leaderboard(study, out, tracking_uri=uri, log=lines.append)
    assert ROW_KEYS <= set(res.columns)
    assert len(res) == 6 and (res["status"] == "FINISHED").all()
    assert sorted(res.groupby(["method", "prune_ratio", "seed"]).size()) == [1] * 6
    assert set(res.loc[res.method == "full", "prune_ratio"]) == {0.0}
    # the table's numbers are the runs' own: compare with what MLflow recorded for each run_id
    runs = {r.info.run_id: r for r in mlflow_runs(uri, "tiny")}
    assert len(runs) == 6
    for _, row in res.iterrows():
        r = runs[row["run_id"]]
        assert r.data.tags["prunebench.run_key"] == row["run_key"] and r.data.tags["prunebench.study"] == "tiny"
        assert r.data.metrics["final_acc"] == pytest.approx(row["final_acc"])
        assert r.data.metrics["samples_backprop"] == row["samples_backprop"]
        assert row["realized_prune_ratio"] == pytest.approx(1 - row["samples_backprop"] / (2 * row["num_samples"]))
    for name in ("results.parquet", "results.csv", "leaderboard.csv", "study.toml"):
        assert (out / name).is_file()
    assert (out / "study.toml").read_text() == study.source
    pq = pd.read_parquet(out / "results.parquet")
    assert list(pq["run_key"]) == list(res["run_key"])
    board = pd.read_csv(out / "leaderboard.csv")
    assert set(board["method"]) == {"full", "random-dynamic", "orderdp"}
    # a second invocation runs nothing and gives the same table
    lines.clear()
    res2 = run_leaderboard(study, out, tracking_uri=uri, log=lines.append)
    assert "6 already in MLflow, 0 to run" in lines[0]
    assert len(mlflow_runs(uri, "tiny")) == 6
    pd.testing.assert_frame_equal(res2[["run_key", "run_id", "final_acc"]], res[["run_key", "run_id", "final_acc"]])
    plan = run_leaderboard(study, out, tracking_uri=uri, dry_run=True)
    assert set(plan["state"]) == {"done"}


def test_failed_runs_are_recorded_then_retried(tmp_path, monkeypatch):
    from prunebench.pruners.random import RandomDynamic

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = load_study(write_study(tmp_path))

    def boom(self, epoch):
        raise RuntimeError("boom in plan_epoch")

    monkeypatch.setattr(RandomDynamic, "plan_epoch", boom)
    res = run_leaderboard(study, tmp_path / "out", tracking_uri=uri)
    failed = res[res.method == "random-dynamic"]
    assert len(res) == 6 and len(failed) == 2
    assert (failed["status"] == "FAILED").all() and failed["error"].str.contains("RuntimeError: boom").all()
    assert failed["final_acc"].isna().all()
    assert (res[res.method != "random-dynamic"]["status"] == "FINISHED").all()  # the rest went on
    statuses = {r.info.run_id: r.info.status for r in mlflow_runs(uri, "tiny")}
    assert all(statuses[i] == "FAILED" for i in failed["run_id"])
    board = leaderboard_table(res).set_index("method")
    assert board.loc["random-dynamic", "n_failed"] == 2 and board.loc["random-dynamic", "n_seeds"] == 0
    # kept as failed on request, retried by default
    again = run_leaderboard(study, tmp_path / "out", tracking_uri=uri, retry_failed=False)
    assert list(again.loc[again.method == "random-dynamic", "run_id"]) == list(failed["run_id"])
    monkeypatch.undo()
    lines: list[str] = []
    fixed = run_leaderboard(study, tmp_path / "out", tracking_uri=uri, log=lines.append)
    assert "4 already in MLflow, 2 to run" in lines[0]
    assert len(fixed) == 6 and (fixed["status"] == "FINISHED").all()
    assert not set(fixed["run_id"]) & set(failed["run_id"])


def test_nan_loss_is_a_failed_row(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    text = TINY.format(name="nan", epochs=2, lr=1e30).replace("seeds = [0, 1]", "seeds = [0]")
    res = run_leaderboard(load_study(write_study(tmp_path, name="nan", text=text)), tmp_path / "o", tracking_uri=uri)
    assert (res["status"] == "FAILED").all() and res["error"].str.contains("training loss became nan").all()
    assert len(res) == 3 and res["run_id"].notna().all()


def test_jobs_run_in_parallel_processes(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = load_study(write_study(tmp_path, epochs=1))
    res = run_leaderboard(study, tmp_path / "out", jobs=2, tracking_uri=uri)
    assert len(res) == 6 and (res["status"] == "FINISHED").all() and res["run_id"].nunique() == 6
    # same seeds, same runs as in this process (accuracy of a 1-epoch MLP is robust to thread counts)
    (tmp_path / "serial").mkdir()
    serial = run_leaderboard(
        load_study(write_study(tmp_path / "serial", epochs=1)),
        tmp_path / "o2",
        tracking_uri=f"sqlite:///{tmp_path / 'm2.db'}",
    )
    a = res.set_index("run_key")["samples_backprop"]
    b = serial.set_index("run_key")["samples_backprop"]
    assert a.sort_index().tolist() == b.sort_index().tolist()
    np.testing.assert_allclose(
        res.set_index("run_key")["final_acc"].sort_index(),
        serial.set_index("run_key")["final_acc"].sort_index(),
        atol=0.02,
    )


def test_kill_9_then_rerun_completes_without_duplicates(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path = write_study(tmp_path, epochs=3)
    cmd = [
        sys.executable,
        "-m",
        "prunebench",
        "leaderboard",
        str(path),
        "--tracking-uri",
        uri,
        "--out",
        str(tmp_path / "out"),
    ]
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while time.time() < deadline and "[2/6]" not in (tmp_path / "first.log").read_text():
        assert proc.poll() is None, (tmp_path / "first.log").read_text()
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert "[2/6]" in (tmp_path / "first.log").read_text()
    done_before = {
        r.data.tags["prunebench.run_key"]: r.info.run_id
        for r in mlflow_runs(uri, "tiny")
        if r.info.status == "FINISHED"
    }
    assert 2 <= len(done_before) < 6
    assert not (tmp_path / "out" / "results.csv").exists()  # no partial table
    p = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert p.returncode == 0, p.stderr
    assert f"{len(done_before)} already in MLflow, {6 - len(done_before)} to run" in p.stderr
    res = pd.read_csv(tmp_path / "out" / "results.csv")
    assert len(res) == 6 and res.groupby(["method", "prune_ratio", "seed"]).size().max() == 1
    assert (res["status"] == "FINISHED").all()
    for key, rid in done_before.items():  # finished runs were reused, not redone
        assert res.set_index("run_key").loc[key, "run_id"] == rid
    finished = [r for r in mlflow_runs(uri, "tiny") if r.info.status == "FINISHED"]
    assert len(finished) == 6 and len({r.data.tags["prunebench.run_key"] for r in finished}) == 6
    # the run that was in flight when killed is not left RUNNING
    assert not [r for r in mlflow_runs(uri, "tiny") if r.info.status == "RUNNING"]
    assert not (tmp_path / "out" / ".leaderboard.lock").exists()


def test_leaderboard_lock_refuses_a_live_holder_and_ignores_a_dead_ones_file(tmp_path):
    from prunebench.studies.leaderboard import _Lock

    lock = tmp_path / ".leaderboard.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import pathlib, sys, time; from prunebench.studies.leaderboard import _Lock\n"
            f"with _Lock(pathlib.Path({str(tmp_path)!r})):\n    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(PrunebenchError, match=f"another leaderboard \\(pid {holder.pid}\\) is writing"):
            with _Lock(tmp_path):
                pass
        assert lock.read_text() == f"{holder.pid}\n"  # the live holder's lock is left alone
    finally:
        holder.kill()  # SIGKILL: no __exit__, the file stays, the kernel drops the lock
        holder.wait()
    assert lock.read_text() == f"{holder.pid}\n"
    with _Lock(tmp_path):
        assert lock.read_text() == f"{os.getpid()}\n"
    assert not lock.exists()


def test_leaderboard_lock_has_one_winner_when_taken_at_once(tmp_path):
    """Leaderboards started together on one out dir: exactly one takes the lock (check-then-write let several)."""
    release = tmp_path / "release"
    script = textwrap.dedent(f"""
        import pathlib, sys, time
        from prunebench.errors import PrunebenchError
        from prunebench.studies.leaderboard import _Lock
        print("ready", flush=True)
        start = float(sys.stdin.readline())
        time.sleep(max(0.0, start - time.time() - 0.02))
        while time.time() < start:  # the last 20 ms spun, so all try within microseconds
            pass
        try:
            with _Lock(pathlib.Path({str(tmp_path)!r})):
                print("won", flush=True)
                t = time.time()
                while not pathlib.Path({str(release)!r}).exists() and time.time() - t < 60:
                    time.sleep(0.02)
        except PrunebenchError:
            print("refused", flush=True)
    """)
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(5)
    ]
    try:
        assert [p.stdout.readline().strip() for p in procs] == ["ready"] * 5
        start = f"{time.time() + 0.5:.4f}\n"
        for p in procs:
            p.stdin.write(start)
            p.stdin.flush()
        outs = sorted(p.stdout.readline().strip() for p in procs)  # the winner holds the lock meanwhile
        release.touch()
        for p in procs:
            p.communicate(timeout=60)
    finally:
        for p in procs:
            p.kill()
    assert outs == ["refused"] * 4 + ["won"]
    assert not (tmp_path / ".leaderboard.lock").exists()


def test_leaderboard_lock_excludes_under_contention(tmp_path):
    """4 processes take and release the lock in a tight loop for 3 s; a marker file created exclusively
    inside the lock would collide if two ever held it at once (the earlier O_EXCL + pid-file lock collided
    thousands of times here: a second taker read the new file before its pid was written, took it for stale)."""
    script = textwrap.dedent(f"""
        import os, pathlib, time
        from prunebench.errors import PrunebenchError
        from prunebench.studies.leaderboard import _Lock
        d = pathlib.Path({str(tmp_path)!r})
        wins = overlaps = 0
        t = time.time()
        while time.time() - t < 3:
            try:
                with _Lock(d):
                    try:
                        fd = os.open(d / "inside", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                    except FileExistsError:
                        overlaps += 1
                        continue
                    wins += 1
                    time.sleep(0.0005)
                    os.close(fd)
                    os.unlink(d / "inside")
            except PrunebenchError:
                pass
        print(wins, overlaps)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    counts = [tuple(map(int, p.communicate(timeout=120)[0].split())) for p in procs]
    assert sum(w for w, _ in counts) > 0
    assert [o for _, o in counts] == [0, 0, 0, 0]


# ---------------------------------------------------------------------------------------------------
# sweeps
# ---------------------------------------------------------------------------------------------------


def test_train_progress_raising_stop_run_ends_run_killed_with_a_complete_row(tmp_path):
    from prunebench.harness import StopRun, TrainConfig, Trainer

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def stop(m):
        if m["epoch"] == 1:
            raise StopRun("stop")

    tr = Trainer(
        TrainConfig.from_dict(
            dict(dataset="synthetic", model="mlp", epochs=4, tracking_uri=uri, experiment="es", pruner="full")
        ),
        progress=stop,
    )
    with pytest.raises(StopRun):
        tr.run()
    (run,) = mlflow_runs(uri, "es")
    assert run.info.status == "KILLED" and run.data.tags["prunebench.early_stopped"] == "after epoch 1"
    assert len(run.data.metrics) and "prunebench.error" not in run.data.tags
    row = tr.result().row  # the row of how the run ended: 2 of 4 epochs, killed, every column
    assert row["status"] == "KILLED" and row["error"] == "StopRun: stop" and row["epochs_run"] == 2
    assert row["run_id"] == run.info.run_id and row["samples_backprop"] == 2 * row["num_samples"]
    assert set(tr.result("FINISHED").row) == set(row)


def test_failed_row_is_the_complete_row_without_accuracy():
    from prunebench.harness import TrainConfig, Trainer
    from prunebench.harness.ending import failed_row

    def boom(m):
        raise RuntimeError("boom\nsecond line")

    tr = Trainer(
        TrainConfig.from_dict(dict(dataset="synthetic", model="mlp", epochs=2, tracking=False, pruner="full")),
        progress=boom,
    )
    with pytest.raises(RuntimeError) as e:
        tr.run()
    assert tr.status == "FAILED" and tr.error == "RuntimeError: boom"
    row = failed_row(e.value, tr, {"unused": 1})
    assert row["status"] == "FAILED" and row["error"] == "RuntimeError: boom" and row["epochs_run"] == 1
    assert np.isnan(row["final_acc"]) and np.isnan(row["best_acc"]) and "unused" not in row
    assert row["samples_backprop"] == row["num_samples"] and set(row) == set(tr.result().row)
    minimal = failed_row(e.value, None, {"run_id": None, "label": "x"})
    assert minimal["label"] == "x" and minimal["status"] == "FAILED" and np.isnan(minimal["final_acc"])


def test_cifar10_cpu_lists_the_reference_leaderboard():
    study = load_study(REPO / "studies" / "cifar10-cpu.toml")
    methods = {m.name: m for m in study.methods}
    pruners = {m.pruner for m in study.methods}
    assert {
        "full",
        "random-static",
        "random-dynamic",
        "loss-topk",
        "infobatch",
        "orderdp",
        "orderdp-fresh",
        "ucb",
        "epsilon-greedy",
        "el2n",
        "forgetting",
        "ccs",
        "moderate-ds",
    } <= pruners
    assert sorted(m.options["candidate_ratio"] for m in study.methods if m.pruner == "orderdp") == [0.8, 0.9]
    static = {"random-static", "el2n", "forgetting", "ccs", "moderate-ds"}
    for name, m in methods.items():
        if name == "full":
            assert m.prune_ratios == (0.0,)
        elif m.pruner in static:
            assert m.prune_ratios == (0.3, 0.5)
        else:
            assert m.prune_ratios == (0.3, 0.5, 0.7)
    assert study.recipe["model"] == "cnn-small" and study.recipe["batch_size"] == 256


def test_leaderboard_resumes_a_killed_run_from_its_checkpoint(tmp_path):
    """A cell whose run was interrupted mid-training continues from its checkpoint, in the same MLflow
    run, and ends exactly as an uninterrupted run of that cell."""
    from prunebench.harness import train
    from prunebench.harness.checkpoint import CHECKPOINT_NAME, load_checkpoint
    from prunebench.studies.leaderboard import with_checkpoint

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    study = load_study(write_study(tmp_path, name="ck", epochs=3))
    out = tmp_path / "out"
    spec = next(s for s in study.runs(tracking_uri=uri) if s.method == "orderdp" and s.seed == 1)
    ref = train(spec.config.replace(tracking=False))

    class Killed(Exception):
        pass

    def kill_after_epoch_1(m):
        if m["epoch"] == 1:
            raise Killed

    cell = with_checkpoint(spec, out / "checkpoints")
    assert cell.config.resume is False
    with pytest.raises(Killed):
        train(cell.config, progress=kill_after_epoch_1)
    interrupted = load_checkpoint(cell.config.checkpoint_dir)
    assert interrupted["epoch"] == 1
    assert with_checkpoint(spec, out / "checkpoints").config.resume is True

    lines = []
    results = run_leaderboard(study, out, tracking_uri=uri, log=lines.append)
    assert any("(1 from their checkpoints)" in line for line in lines)
    row = results[(results.method == "orderdp") & (results.seed == 1)].iloc[0]
    assert row["run_id"] == interrupted["mlflow_run_id"] and row["status"] == "FINISHED"
    assert row["final_acc"] == ref.row["final_acc"] and row["samples_backprop"] == ref.row["samples_backprop"]
    assert not (Path(cell.config.checkpoint_dir) / CHECKPOINT_NAME).exists()  # cleaned up once finished
    assert len(results) == len(study.runs()) and results.run_key.is_unique


# ---------------------------------------------------------------------------------------------------
# sharding a grid by seed, and carrying finished cells to another machine (--seeds, --import)
# ---------------------------------------------------------------------------------------------------


def test_seed_shards_merge_through_imported_tables(tmp_path):
    """Seed 0 runs against one MLflow store, seed 1 against another (another machine); importing the first
    table into the second leaderboard runs only seed 1 and yields the whole grid, rows carried verbatim."""
    from prunebench.reports import build_report

    path = write_study(tmp_path)
    uri_a, uri_b = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    study = load_study(path)
    res_a = run_leaderboard(study, tmp_path / "a", tracking_uri=uri_a, seeds=[0])
    assert sorted(res_a["seed"]) == [0, 0, 0] and (res_a["status"] == "FINISHED").all()
    assert len(mlflow_runs(uri_a, "tiny")) == 3
    # the shard's keys are the whole study's keys for that seed
    assert set(res_a["run_key"]) == {s.run_key for s in study.runs() if s.seed == 0}

    # tabulating the whole study trains nothing and leaves a run in flight alone (it may be another
    # leaderboard's): the table holds the done cells only
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri_a)
    s1 = next(s for s in study.runs() if s.seed == 1)
    inflight = client.create_run(
        client.get_experiment_by_name("tiny").experiment_id,
        tags={"prunebench.study": "tiny", "prunebench.kind": "leaderboard", "prunebench.run_key": s1.run_key},
    ).info.run_id
    lines: list[str] = []
    tab = run_leaderboard(study, tmp_path / "a", tracking_uri=uri_a, train=False, log=lines.append)
    # the fresh RUNNING run counts as another leaderboard's (claims.py), not as a cell to train
    assert "3 already in MLflow, 2 to run, 1 running in another leaderboard; tabulating the done ones" in lines[0]
    assert sorted(tab["run_key"]) == sorted(res_a["run_key"]) and len(mlflow_runs(uri_a, "tiny")) == 4
    assert client.get_run(inflight).info.status == "RUNNING"
    client.delete_run(inflight)
    with pytest.raises(PrunebenchError, match="nothing to tabulate"):
        run_leaderboard(study, tmp_path / "empty", tracking_uri=f"sqlite:///{tmp_path / 'e.db'}", train=False)

    # a report of the shard is importable too (tables/runs.csv): the dry run says so and writes nothing
    build_report(tmp_path / "a", tmp_path / "report-a")
    plan = run_leaderboard(study, tmp_path / "b", tracking_uri=uri_b, dry_run=True, imports=[tmp_path / "report-a"])
    assert plan.groupby("seed")["state"].agg(set).to_dict() == {0: {"imported"}, 1: {"todo"}}
    assert not (tmp_path / "b").exists() and not (tmp_path / "b.db").exists()

    lines: list[str] = []
    res = run_leaderboard(
        study, tmp_path / "b", tracking_uri=uri_b, log=lines.append, imports=[tmp_path / "a" / "results.csv"]
    )
    assert "3 of its 3 rows are finished cells of this grid" in lines[0]
    assert "0 already in MLflow, 3 imported, 3 to run" in lines[1]
    assert len(res) == 6 and (res["status"] == "FINISHED").all() and res["run_key"].is_unique
    assert len(mlflow_runs(uri_b, "tiny")) == 3  # seed 0 was not trained again
    a = res_a.set_index("run_key")
    for _, row in res[res["seed"] == 0].iterrows():  # carried over as they were, MLflow ids included
        assert row["run_id"] == a.loc[row["run_key"], "run_id"]
        assert row["final_acc"] == pytest.approx(a.loc[row["run_key"], "final_acc"])
        assert row["samples_backprop"] == a.loc[row["run_key"], "samples_backprop"]
    b_ids = {r.info.run_id for r in mlflow_runs(uri_b, "tiny")}
    assert set(res.loc[res["seed"] == 1, "run_id"]) == b_ids
    assert pd.read_parquet(tmp_path / "b" / "results.parquet")["run_key"].tolist() == res["run_key"].tolist()

    # reported where seed 0's store is gone (same URI, other machine): its curves are omitted, and said so
    moved = res.copy()
    moved["tracking_uri"] = uri_b
    build_report(moved, tmp_path / "report-b")
    hist = pd.read_csv(tmp_path / "report-b" / "tables" / "histories.csv")
    assert set(hist["seed"]) == {1}
    assert f"3 run(s) are not in MLflow store {uri_b}" in (tmp_path / "report-b" / "README.md").read_text()

    # a method shard: only the named methods' cells (full only when named), same keys as the whole grid
    shard = run_leaderboard(
        study, tmp_path / "b", tracking_uri=uri_b, dry_run=True, methods=["orderdp"], imports=[tmp_path / "a"]
    )
    assert set(shard["method"]) == {"orderdp"} and set(shard["state"]) == {"done", "imported"}
    assert set(shard["run_key"]) == {s.run_key for s in study.runs() if s.method == "orderdp"}

    # a table of another recipe matches no cell: nothing is imported
    other = load_study(write_study(tmp_path / "b", lr=0.05))
    plan = run_leaderboard(other, tmp_path / "c", tracking_uri=uri_b, dry_run=True, imports=[tmp_path / "a"])
    assert set(plan["state"]) == {"todo"}


@pytest.mark.parametrize(
    "args,message",
    [
        (["--seeds", "5"], "has seeds 0, 1"),
        (["--seeds", "a"], "expected comma-separated integers"),
        (["--methods", "orderdp,nope"], "has no method nope; valid: full, random-dynamic, orderdp"),
        (["--methods", ","], "(none given)"),
        (["--import", "nope.csv"], "no such file or folder"),
        (["--import", "bad.csv"], "lacks column(s) run_key"),
        (["--import", "."], "no results table there"),
    ],
)
def test_cli_bad_seeds_and_imports_are_one_line_exit_2(tmp_path, args, message):
    path = write_study(tmp_path)
    (tmp_path / "bad.csv").write_text("pruner,seed,status,final_acc\nfull,0,FINISHED,0.5\n")
    before = sorted(x.name for x in tmp_path.iterdir())
    p = subprocess.run(
        [sys.executable, "-m", "prunebench", "leaderboard", str(path), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and message in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == before  # no results/, no mlflow.db
