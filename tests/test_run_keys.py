"""The run keys of committed cells, recomputed from the study files in studies/.

A leaderboard counts a cell as done by its run key (``--import reports/cifar10-cpu`` must still find the
105 cells run there), so the key of a cell must never change with a refactoring of how a run's identity
is declared (``TrainConfig``'s field metadata). The expected keys are the ones the runs were logged with,
read from the committed tables; nothing here is computed by the code under test except the recomputation.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from prunebench.studies.spec import load_study

ROOT = Path(__file__).resolve().parents[1]
#: (study file, committed table of its runs)
COMMITTED = [
    ("studies/cifar10-cpu.toml", "reports/cifar10-cpu/tables/runs.csv"),
    ("studies/digits-quick.toml", "reports/digits-quick/tables/runs.csv"),
    ("studies/cifar10-cpu-bnstats.toml", "reports/cifar10-cpu-bnstats/results.csv"),
]
#: committed tables of grid-sweep runs: (study file, sweep, table)
SWEEPS = [
    ("studies/digits-quick.toml", s, f"reports/digits-quick/tables/sweep-{s}-runs.csv")
    for s in ("split-p0.5", "infobatch-delta", "pareto")
]


def _rows(table: str) -> list[dict[str, str]]:
    with open(ROOT / table, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all(r["run_key"] for r in rows), f"{table}: no run keys to check"
    return rows


@pytest.mark.parametrize("study_file,table", COMMITTED)
def test_committed_leaderboard_keys_recompute_from_the_study_file(study_file, table):
    study = load_study(ROOT / study_file)
    keys = {(r.method, round(r.prune_ratio, 9), r.seed): r.run_key for r in study.runs()}
    rows = _rows(table)
    for row in rows:
        cell = (row["method"], round(float(row["prune_ratio"]), 9), int(row["seed"]))
        assert cell in keys, f"{table}: cell {cell} is not in {study_file}'s grid"
        assert keys[cell] == row["run_key"], f"{table}: the run key of {cell} changed"


@pytest.mark.parametrize("study_file,sweep,table", SWEEPS)
def test_committed_sweep_keys_recompute_from_the_study_file(study_file, sweep, table):
    study = load_study(ROOT / study_file)
    spec = study.sweeps[sweep]
    keys = {}
    for pt in spec.grid():
        p, opts = spec.resolve(pt)
        for seed in spec.seeds:
            keys[(spec.label(pt), seed)] = study.run_key(spec.label(pt), spec.pruner, opts, p, seed)
    full = {r.seed: r.run_key for r in study.runs() if r.method == "full"}
    checked = 0
    for row in _rows(table):
        seed = int(row["seed"])
        want = full[seed] if row["method"] == "full" else keys[(row["method"], seed)]
        assert want == row["run_key"], f"{table}: the run key of {row['method']} seed {seed} changed"
        checked += 1
    assert checked >= len(spec.grid())


def test_execution_fields_do_not_reach_the_key_from_the_command_line():
    """--device, --checkpoint-dir, --data-dir given to a leaderboard leave every key as committed."""
    study = load_study(ROOT / "studies/digits-quick.toml")
    base = [r.run_key for r in study.runs()]
    assert [
        r.run_key
        for r in study.runs(
            device="cuda", data_dir="/elsewhere", checkpoint_dir="/ck", num_workers=0, record_kept=False
        )
    ] == base
