"""The budget axis of a study ([study] epochs, ratios_by_epochs, probe) and [study] reuse (issue 23)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
import pytest

from prunebench.errors import ConfigError
from prunebench.studies.leaderboard import imported_rows, leaderboard_table
from prunebench.studies.spec import load_study

BASE = """
[study]
name = "{name}"
seeds = [0, 1]
prune_ratios = [0.3, 0.5]
{study}

[recipe]
dataset = "synthetic"
model = "mlp"
epochs = 4
batch_size = 64
lr = 0.1
device = "cpu"

[methods.random-dynamic]

[methods.orderdp]
options = {{ candidate_ratio = 0.8 }}
"""


def write(tmp_path: Path, name: str, study: str = "") -> Path:
    p = tmp_path / f"{name}.toml"
    p.write_text(textwrap.dedent(BASE.format(name=name, study=study)))
    return p


AXIS = (
    'epochs = [8, 4, 2]\nratios_by_epochs = { "8" = [0.5] }\nprobe = { methods = ["full", "orderdp"], at = [0.5, 1.0] }'
)


def test_budget_axis_cells_epochs_ratios_and_probe(tmp_path):
    study = load_study(write(tmp_path, "b", AXIS))
    runs = study.runs()
    assert study.epochs == (2, 4, 8)
    # per seed: full + 2 methods x 2 ratios at 2 and 4 epochs; full + 2 methods x p=0.5 at 8 epochs
    assert len(runs) == 2 * (5 + 5 + 3)
    assert [r.config.epochs for r in runs] == [2] * 10 + [4] * 10 + [8] * 6  # shortest budget first
    assert {r.prune_ratio for r in runs if r.config.epochs == 8} == {0.0, 0.5}
    assert len({r.run_key for r in runs}) == len(runs)
    probed = {(r.method, r.config.epochs): r.config.probe_epochs for r in runs}
    # at = 0.5, 1.0 of E epochs: after epoch round(E/2) and E, 0-based
    assert probed[("full", 2)] == (0, 1) and probed[("orderdp", 4)] == (1, 3) and probed[("orderdp", 8)] == (3, 7)
    assert probed[("random-dynamic", 8)] == ()
    assert {r.config.run_name for r in runs if r.method == "full" and r.seed == 0} == {
        "full p=0 seed=0 epochs=2",
        "full p=0 seed=0 epochs=4",
        "full p=0 seed=0 epochs=8",
    }


def test_a_budget_equal_to_the_recipe_is_the_same_run_as_without_the_axis(tmp_path):
    plain = load_study(write(tmp_path, "same"))
    (tmp_path / "axis").mkdir()
    axis = load_study(write(tmp_path / "axis", "same", "epochs = [4, 8]"))
    at4 = [r.run_key for r in axis.runs() if r.config.epochs == 4]
    assert sorted(at4) == sorted(r.run_key for r in plain.runs())


def test_reuse_maps_another_studys_cells_of_the_same_configuration(tmp_path):
    write(tmp_path, "ref")  # 4 epochs, no probe
    study = load_study(write(tmp_path, "budget", AXIS + '\nreuse = ["ref.toml"]'))
    ref = load_study(tmp_path / "ref.toml")
    aliases = study.reused_keys()
    # by hand: ref's cells at 4 epochs whose configuration this study has without a probe (random-dynamic)
    mine = {
        (r.method, r.prune_ratio, r.seed): r.run_key
        for r in study.runs()
        if r.config.epochs == 4 and not r.config.probe_epochs
    }
    expected = {
        r.run_key: mine[(r.method, r.prune_ratio, r.seed)]
        for r in ref.runs()
        if (r.method, r.prune_ratio, r.seed) in mine
    }
    assert aliases == expected and len(expected) == 4  # random-dynamic x 2 ratios x 2 seeds
    # a results table of ref is imported under this study's keys
    rows = [
        {
            "run_key": r.run_key,
            "status": "FINISHED",
            "final_acc": 0.5 + 0.01 * i,
            "seed": r.seed,
            "prune_ratio": r.prune_ratio,
        }
        for i, r in enumerate(ref.runs())
    ]
    table = tmp_path / "ref-results.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    got, lines = imported_rows([table], study.runs(), aliases=aliases)
    assert set(got) == set(expected.values())
    by_key = {r["run_key"]: r["final_acc"] for r in rows}
    assert all(got[own]["final_acc"] == by_key[theirs] for theirs, own in expected.items())
    assert "4 of its 10 rows" in lines[0]
    # without the aliases nothing of ref is a cell here
    assert imported_rows([table], study.runs())[0] == {}


def test_leaderboard_pairs_within_each_budget():
    rows = []
    for e, full, m in ((2, (0.80, 0.82), (0.70, 0.71)), (8, (0.90, 0.94), (0.89, 0.92))):
        for seed in (0, 1):
            rows.append(
                dict(
                    method="full",
                    pruner="full",
                    prune_ratio=0.0,
                    seed=seed,
                    status="FINISHED",
                    final_acc=full[seed],
                    epochs=e,
                    relative_compute=1.0,
                    realized_prune_ratio=0.0,
                )
            )
            rows.append(
                dict(
                    method="random-dynamic",
                    pruner="random-dynamic",
                    prune_ratio=0.5,
                    seed=seed,
                    status="FINISHED",
                    final_acc=m[seed],
                    epochs=e,
                    relative_compute=0.5,
                    realized_prune_ratio=0.5,
                )
            )
    board = leaderboard_table(pd.DataFrame(rows))
    assert list(board.columns[:2]) == ["epochs", "prune_ratio"]
    rd = board[board.method == "random-dynamic"].set_index("epochs")
    assert rd.loc[2, "vs_full_mean"] == pytest.approx(((0.70 - 0.80) + (0.71 - 0.82)) / 2)
    assert rd.loc[8, "vs_full_mean"] == pytest.approx(((0.89 - 0.90) + (0.92 - 0.94)) / 2)


@pytest.mark.parametrize(
    "study, match",
    [
        ("epochs = [2, 2]", "study.epochs: epoch counts repeat"),
        ("epochs = [0]", "study.epochs: expected a non-empty list of epoch counts >= 1"),
        (
            'epochs = [2]\nratios_by_epochs = { "3" = [0.5] }',
            r"study.ratios_by_epochs.3: '3' is not one of \[study\] epochs",
        ),
        ('probe = { methods = ["nope"] }', "study.probe.methods: expected a non-empty list of this study's methods"),
        (
            'probe = { methods = ["full"], at = [0] }',
            r"study.probe.at: expected a non-empty list of run fractions in \(0, 1\]",
        ),
        ('reuse = ["missing.toml"]', "study.reuse: 'missing.toml': no such study file"),
    ],
)
def test_bad_budget_keys_are_one_line(tmp_path, study, match):
    with pytest.raises(ConfigError, match=match) as e:
        load_study(write(tmp_path, "bad", study))
    assert "\n" not in str(e.value)
