"""Dataset subsets ``NAME:n=K[,seed=S]``: class-stratified, seeded, part of a run's identity."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from prunebench.datasets import load_dataset
from prunebench.datasets.base import parse_dataset_spec, stratified_subset
from prunebench.errors import ConfigError


def test_stratified_subset_keeps_class_proportions_within_one():
    rng = np.random.default_rng(5)
    labels = rng.choice(7, size=1003, p=[0.3, 0.2, 0.15, 0.15, 0.1, 0.06, 0.04])
    for n in (27, 50, 333, 1000, 1003):
        idx = stratified_subset(labels, n, seed=0, num_classes=7)
        assert len(idx) == n and len(np.unique(idx)) == n and np.all(np.diff(idx) > 0)
        got = np.bincount(labels[idx], minlength=7)
        want = n * np.bincount(labels, minlength=7) / len(labels)
        assert np.all(np.abs(got - want) < 1.0), (n, got, want)


def test_largest_remainder_by_hand():
    labels = np.array([0] * 5 + [1] * 3 + [2] * 2)  # n=4: exact 2.0, 1.2, 0.8 -> floors 2, 1, 0; the rest to class 2
    idx = stratified_subset(labels, 4, seed=0, num_classes=3)
    assert np.bincount(labels[idx], minlength=3).tolist() == [2, 1, 1]


def test_subset_is_seeded():
    labels = np.arange(2000) % 10
    a, b = stratified_subset(labels, 500, 0, 10), stratified_subset(labels, 500, 0, 10)
    c = stratified_subset(labels, 500, 1, 10)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_digits_subset_loads():
    full, sub = load_dataset("digits"), load_dataset("digits:n=500")
    assert sub.num_train == 500 and sub.x_test.shape == full.x_test.shape
    assert (
        np.bincount(sub.y_train.numpy()).tolist()
        == np.bincount(full.y_train.numpy()[stratified_subset(full.y_train.numpy(), 500, 0, 10)]).tolist()
    )
    # the subset's images are the full set's images at the drawn indices
    idx = stratified_subset(full.y_train.numpy(), 500, 0, 10)
    assert np.array_equal(sub.x_train.numpy(), full.x_train.numpy()[idx])
    # normalisation statistics come from the subset (plain numpy, independent of channel_stats)
    x = sub.x_train.numpy().astype(np.float64) / 255
    assert sub.mean[0] == pytest.approx(x.mean(), abs=1e-9) and sub.std[0] == pytest.approx(x.std(), abs=1e-9)
    assert sub.key != full.key and "n500" in sub.key
    assert load_dataset("digits:n=500,seed=3").key != sub.key


@pytest.mark.parametrize(
    "name, fragment",
    [
        ("digits:n=0", "need n >= 1"),
        ("digits:n=5000", "valid: 1..1438"),
        ("digits:n=abc", "must be integers"),
        ("digits:m=5", "bad argument 'm=5'"),
        ("digits:seed=1", "needs n=K"),
        ("digits:n=5", "without a training image"),
    ],
)
def test_bad_subsets(name, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(".", r"\.")):
        load_dataset(name)


def test_imagefolder_path_keeps_its_own_argument():
    _, arg, sub = parse_dataset_spec("imagefolder:/data/x,n=100,seed=2")
    assert arg == "/data/x" and (sub.n, sub.seed) == (100, 2)
    _, arg, sub = parse_dataset_spec("synthetic:n=100,seed=2")  # synthetic's own n and seed
    assert arg == "n=100,seed=2" and sub is None


STUDY = """
[study]
name = "sub"
seeds = [0]
prune_ratios = [0.5]

[recipe]
dataset = "{dataset}"
model = "mlp"
epochs = 2
batch_size = 64
device = "cpu"

[methods.random-dynamic]
"""


def test_subset_is_part_of_the_run_key(tmp_path):
    from prunebench.studies import load_study

    keys = {}
    for ds in ("digits", "digits:n=400", "digits:n=400,seed=1", "digits:n=300"):
        p = tmp_path / f"s{len(keys)}.toml"
        p.write_text(textwrap.dedent(STUDY.format(dataset=ds)))
        keys[ds] = {r.run_key for r in load_study(p).runs()}
    assert len(set().union(*keys.values())) == 4 * 2  # full + random-dynamic per dataset, all distinct


def test_leaderboard_on_a_subset_end_to_end(tmp_path):
    from prunebench.studies import load_study, run_leaderboard

    p = tmp_path / "s.toml"
    p.write_text(textwrap.dedent(STUDY.format(dataset="digits:n=300")))
    res = run_leaderboard(load_study(p), tmp_path / "out", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    assert len(res) == 2 and (res["status"] == "FINISHED").all()
    assert set(res["dataset"]) == {"digits:n=300"}
    # the training budget is the subset's: 2 epochs x 300 images for full data
    full = res[res["method"] == "full"].iloc[0]
    assert full["samples_backprop"] == 2 * 300


def test_resume_refuses_another_subset(tmp_path):
    from prunebench.harness import train

    ck = tmp_path / "ck"
    base = {
        "dataset": "digits:n=200",
        "model": "mlp",
        "pruner": "full",
        "epochs": 1,
        "tracking": False,
        "checkpoint_dir": str(ck),
        "device": "cpu",
    }
    train(base)
    # refused by the dataset name or, first, by the data's identity (its size here)
    with pytest.raises(ConfigError, match="dataset|num_train"):
        train({**base, "dataset": "digits:n=300", "resume": True})
