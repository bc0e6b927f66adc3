"""The command line: JSON output, listing, one-line errors with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from prunebench.cli import main
from prunebench.pruners import list_pruners

REQUIRED = {
    "run_id",
    "dataset",
    "model",
    "pruner",
    "label",
    "seed",
    "epochs",
    "final_acc",
    "best_acc",
    "train_time_s",
    "selection_time_s",
    "samples_forward",
    "samples_backprop",
    "realized_prune_ratio",
    "relative_compute",
    "jaccard_mean",
}


def _cli(args, cwd, env=None):
    e = {**os.environ, "PRUNEBENCH_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "prunebench", *args], cwd=cwd, capture_output=True, text=True, env=e, timeout=300
    )


def test_run_json_prints_exactly_one_object(tmp_path):
    p = _cli(
        [
            "run",
            "--dataset",
            "synthetic",
            "--model",
            "mlp",
            "--epochs",
            "2",
            "--json",
            "--tracking-uri",
            f"sqlite:///{tmp_path / 'm.db'}",
        ],
        tmp_path,
    )
    assert p.returncode == 0, p.stderr
    row = json.loads(p.stdout)
    assert REQUIRED <= set(row)
    assert row["pruner"] == "orderdp" and row["dataset"] == "synthetic" and row["run_id"]
    assert "epoch 2/2" in p.stderr  # progress goes to stderr


def test_list_shows_every_pruner(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in list_pruners():
        assert name in out
    assert "digits" in out and "cnn-small" in out


BAD = [
    (["run", "--pruner", "nope"], "unknown pruner 'nope'; valid:"),
    (["run", "--prune-ratio", "1.5"], "prune_ratio must be in [0, 1)"),
    (["run", "--prune-ratio", "abc"], "expected a number"),
    (["run", "--set", "candidate_ratio=0.3"], "valid: 0.6 <= candidate_ratio <= 1"),
    (["run", "--set", "candidat=0.9"], "unknown --set key 'candidat'"),
    (["run", "--set", "novalue"], "--set expects key=value"),
    (["run", "--dataset", "mnist"], "unknown dataset 'mnist'; valid:"),
    (["run", "--model", "vgg"], "unknown model 'vgg'; valid:"),
    (["run", "--dataset", "cifar10", "--data-dir", "/no/such/dir"], "does not exist"),
    (["run", "--epochs", "0"], "epochs must be >= 1"),
    (["run", "--set", "optimizer=adam"], "valid: 'sgd', 'adamw', 'lars', 'lamb'"),
    (["run", "--pruner", "full", "--prune-ratio", "0.3"], "prune_ratio must be 0"),
    (["run", "--seed", "-1"], "seed must be"),
    (["bogus"], "invalid choice"),
]


@pytest.mark.parametrize("args,message", BAD)
def test_bad_input_one_line_exit_2(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as ei:
        raise SystemExit(main([*args, "--no-tracking"] if args[0] == "run" else args))
    err = capsys.readouterr().err
    assert ei.value.code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "mlflow.db").exists()


def test_missing_cifar_says_where_it_looked(tmp_path, capsys):
    assert main(["run", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--no-tracking"]) == 2
    err = capsys.readouterr().err
    assert "looked for cifar10.npz and cifar-10-batches-py/" in err and str(tmp_path) in err
