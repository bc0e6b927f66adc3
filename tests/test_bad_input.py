"""Table-driven bad input: each gives one line naming the problem and the valid values, exit code 2,
no traceback, and no result recorded as if valid."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from prunebench.cli import main


def _npz(path: Path, **over):
    rng = np.random.default_rng(0)
    arrays = dict(
        x_train=rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8),
        y_train=np.arange(40) % 10,
        x_test=rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8),
        y_test=np.arange(20) % 10,
    )
    arrays.update(over)
    path.mkdir(parents=True, exist_ok=True)
    np.savez(path / "cifar10.npz", **arrays)
    return str(path)


def _data(kind: str, root: Path) -> str:
    d = root / kind
    if kind == "corrupt":
        d.mkdir()
        (d / "cifar10.npz").write_bytes(b"PK\x03\x04 truncated")
        return str(d)
    if kind == "mismatched":
        return _npz(d, y_train=np.arange(39) % 10)
    if kind == "shape":
        return _npz(d, x_train=np.zeros((40, 8, 8, 4), dtype=np.uint8))
    if kind == "labels":
        return _npz(d, y_train=np.arange(40) % 12)
    if kind == "noclass9":
        return _npz(d, y_train=np.arange(40) % 9)
    if kind == "float":
        return _npz(d, x_train=np.zeros((40, 8, 8, 3), dtype=np.float64))
    raise AssertionError(kind)


RUN = ["run", "--epochs", "1", "--quiet"]
_STUDY = Path(__file__).resolve().parents[1] / "studies" / "digits-quick.toml"
CASES = [
    # (id, argv, expected fragment)
    ("unknown-pruner", [*RUN, "--pruner", "orderdpp"], "unknown pruner 'orderdpp'; valid: "),
    ("ratio-above-1", [*RUN, "--prune-ratio", "1.5"], "prune_ratio must be in [0, 1), got 1.5"),
    ("ratio-negative", [*RUN, "--prune-ratio", "-0.2"], "prune_ratio must be in [0, 1)"),
    ("ratio-not-number", [*RUN, "--prune-ratio", "half"], "expected a number, got 'half'"),
    (
        "ratio-leaves-nothing",
        [*RUN, "--pruner", "random-dynamic", "--prune-ratio", "0.9999"],
        "keeps round((1-p)*1438) = 0 samples",
    ),
    (
        "c-below-keep",
        [*RUN, "--prune-ratio", "0.1", "--set", "candidate_ratio=0.8"],
        "valid: 0.9 <= candidate_ratio <= 1",
    ),
    ("c-above-1", [*RUN, "--set", "candidate_ratio=1.2"], "candidate_ratio must be in (0, 1]"),
    ("unknown-set-key", [*RUN, "--set", "lrate=0.1"], "unknown --set key 'lrate'"),
    ("malformed-set", [*RUN, "--set", "lr"], "--set expects key=value"),
    ("duplicate-set", [*RUN, "--set", "lr=0.1", "--set", "lr=0.2"], "--set lr given twice"),
    ("unknown-dataset", [*RUN, "--dataset", "mnist"], "unknown dataset 'mnist'; valid:"),
    ("unknown-model", [*RUN, "--model", "vgg11"], "unknown model 'vgg11'; valid:"),
    ("unknown-tv-model", [*RUN, "--model", "tv:nonet"], "unknown torchvision model 'nonet'"),
    ("tv-model-grey", [*RUN, "--model", "tv:resnet18"], "expects 3-channel images, the dataset has 1"),
    ("bad-optimizer", [*RUN, "--set", "optimizer=adam"], "valid: 'sgd', 'adamw', 'lars', 'lamb'"),
    ("bad-schedule", [*RUN, "--set", "schedule=linear"], "valid: 'onecycle', 'cosine', 'step', 'constant'"),
    ("bad-budget", [*RUN, "--set", "budget=time"], "valid: 'epochs', 'steps'"),
    ("epochs-zero", ["run", "--epochs", "0"], "epochs must be >= 1"),
    ("batch-zero", [*RUN, "--batch-size", "0"], "batch_size must be >= 1"),
    ("lr-negative", [*RUN, "--lr", "-1"], "lr must be > 0"),
    ("label-smoothing", [*RUN, "--set", "label_smoothing=1.5"], "label_smoothing must be in [0, 1)"),
    ("bad-bool", [*RUN, "--pruner", "random-static", "--set", "class_balanced=maybe"], "expected true or false"),
    ("bad-augment", [*RUN, "--set", "augment=mixup"], "valid: crop+flip, crop, flip, none"),
    ("full-with-ratio", [*RUN, "--pruner", "full", "--prune-ratio", "0.3"], "prune_ratio must be 0"),
    ("infobatch-delta", [*RUN, "--pruner", "infobatch", "--set", "delta=2"], "delta must be in [0, 1]"),
    ("seed-negative", [*RUN, "--seed", "-3"], "seed must be >= 0"),
    ("bad-device", [*RUN, "--device", "tpu"], "valid: 'auto', 'cpu', 'cuda'"),
    ("synthetic-arg", [*RUN, "--dataset", "synthetic:nn=3"], "valid: synthetic:k=v"),
    ("imagefolder-no-path", [*RUN, "--dataset", "imagefolder"], "needs a path"),
    ("imagefolder-empty", [*RUN, "--dataset", "imagefolder:{tmp}"], "expected"),
    ("missing-data-dir", [*RUN, "--dataset", "cifar10", "--data-dir", "{tmp}/nope"], "does not exist"),
    (
        "no-cifar-in-dir",
        [*RUN, "--dataset", "cifar10", "--data-dir", "{tmp}"],
        "looked for cifar10.npz and cifar-10-batches-py/",
    ),
    ("corrupt-npz", [*RUN, "--dataset", "cifar10", "--data-dir", "{data:corrupt}"], "not a readable .npz file"),
    (
        "mismatched-npz",
        [*RUN, "--dataset", "cifar10", "--data-dir", "{data:mismatched}"],
        "has 40 images but y_train has 39 labels",
    ),
    ("wrong-image-shape", [*RUN, "--dataset", "cifar10", "--data-dir", "{data:shape}"], "must have 1 or 3 channels"),
    ("float-images", [*RUN, "--dataset", "cifar10", "--data-dir", "{data:float}"], "must be uint8 images"),
    (
        "labels-out-of-range",
        [*RUN, "--dataset", "cifar10", "--data-dir", "{data:labels}"],
        "labels in [0, 11]; valid: 0..9",
    ),
    (
        "empty-class-balanced",
        [
            *RUN,
            "--dataset",
            "cifar10",
            "--data-dir",
            "{data:noclass9}",
            "--model",
            "mlp",
            "--pruner",
            "random-static",
            "--set",
            "class_balanced=true",
        ],
        "class 9 has no training sample",
    ),
    ("resume-no-dir", [*RUN, "--resume"], "resume needs checkpoint_dir"),
    ("unknown-executor", ["leaderboard", str(_STUDY), "--executor", "k8s"], "invalid choice: 'k8s'"),
    ("gpu-fraction", ["leaderboard", str(_STUDY), "--gpus-per-run", "0.3"], "a fraction of a GPU must be 1/k"),
    ("ray-multi-gpu", ["leaderboard", str(_STUDY), "--executor", "ray", "--gpus-per-run", "2"], "DDP under torchrun"),
    (
        "slurm-bad-sbatch",
        ["sweep", str(_STUDY), "--executor", "slurm", "--sbatch", "qos=x"],
        "expected a list of sbatch options",
    ),
    (
        "checkpoint-every-0",
        [*RUN, "--checkpoint-dir", "{tmp}/ck", "--checkpoint-every", "0"],
        "checkpoint_every must be >= 1",
    ),
    ("tracking-unreachable", [*RUN, "--tracking-uri", "http://127.0.0.1:9"], "is unreachable"),
    ("unknown-command", ["frobnicate"], "invalid choice: 'frobnicate'"),
    ("unknown-flag", ["run", "--epoch", "3"], "unrecognized arguments"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, tmp_path, monkeypatch, capsys):
    _, argv, fragment = case
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    argv = [_data(a[len("{data:") : -1], tmp_path) if a.startswith("{data:") else a for a in argv]
    with pytest.raises(SystemExit) as ei:
        raise SystemExit(main(argv))
    err = capsys.readouterr().err
    assert ei.value.code == 2, err
    assert fragment in err, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    db = work / "mlflow.db"
    if db.exists():  # errors raised after the run started are recorded as FAILED, never as finished
        with sqlite3.connect(db) as con:
            statuses = [r[0] for r in con.execute("select status from runs")]
        assert "FINISHED" not in statuses


def test_at_least_thirty_cases():
    assert len(CASES) >= 30
