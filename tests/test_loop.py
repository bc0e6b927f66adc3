"""The training loop end to end: cost accounting, schedules, weights, determinism, failures."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import fast_config

from prunebench.errors import ConfigError, TrainingError
from prunebench.harness import TrainConfig, Trainer, train
from prunebench.harness.optim import LAMB, LARS, lr_multiplier


def test_full_digits_learns(digits):
    r = train(dict(dataset="digits", pruner="full", epochs=8, tracking=False), data=digits)
    assert r.row["final_acc"] > 0.9
    assert r.row["realized_prune_ratio"] == 0.0 and r.row["relative_compute"] == 1.0
    assert r.row["samples_backprop"] == 8 * digits.num_train


@pytest.mark.parametrize(
    "pruner,ratio", [("orderdp", 0.4), ("random-dynamic", 0.3), ("loss-topk", 0.5), ("random-static", 0.25)]
)
def test_fixed_budget_cost_accounting(synthetic, pruner, ratio):
    r = train(fast_config(pruner=pruner, prune_ratio=ratio, epochs=4), data=synthetic)
    n, q = 512, round((1 - ratio) * 512)
    row = r.row
    assert row["samples_backprop"] == 4 * q
    assert row["samples_forward"] == 0
    assert row["optimizer_steps"] == 4 * math.ceil(q / 64)
    assert row["realized_prune_ratio"] == pytest.approx(1 - q / n)
    assert row["relative_compute"] == pytest.approx(q / n)
    assert r.usage.sum() == row["samples_backprop"]
    assert len(r.history) == 4 and all(h["kept"] == q for h in r.history)


def test_orderdp_fresh_counts_forward_passes(synthetic):
    r = train(
        fast_config(pruner="orderdp-fresh", prune_ratio=0.5, pruner_options={"candidate_ratio": 0.75}), data=synthetic
    )
    s, q = 384, 256
    row = r.row
    assert row["samples_forward"] == 3 * s
    assert abs(row["samples_backprop"] - 3 * q) <= 3 * 2  # rounding within candidate batches
    assert row["relative_compute"] == pytest.approx((3 * s + 3 * row["samples_backprop"]) / (3 * 3 * 512))
    assert row["relative_compute"] > 1 - row["realized_prune_ratio"]


def test_jaccard_and_usage_from_kept_masks(synthetic):
    r = train(fast_config(pruner="random-dynamic", prune_ratio=0.5), data=synthetic)
    masks = [r.kept_mask(e) for e in range(3)]
    for e in (1, 2):
        a, b = masks[e - 1], masks[e]
        assert r.history[e]["jaccard"] == pytest.approx((a & b).sum() / (a | b).sum())
    assert math.isnan(r.history[0]["jaccard"])
    np.testing.assert_array_equal(r.usage, np.sum(masks, axis=0))


def test_steps_budget_matches_full_steps(synthetic):
    full = train(fast_config(pruner="full", epochs=3), data=synthetic)
    pr = train(fast_config(pruner="orderdp", prune_ratio=0.5, epochs=3, budget="steps"), data=synthetic)
    assert pr.row["optimizer_steps"] == full.row["optimizer_steps"] == 3 * 8
    assert pr.row["epochs_run"] == 6
    assert pr.row["realized_prune_ratio"] == pytest.approx(0.0)


def test_same_seed_bitwise_identical_different_seed_differs(synthetic):
    cfg = fast_config(model="cnn-small", pruner="orderdp", prune_ratio=0.4, epochs=2)
    a, b = train(cfg, data=synthetic), train(cfg, data=synthetic)
    c = train({**cfg, "seed": 1}, data=synthetic)
    assert a.row["final_train_loss"] == b.row["final_train_loss"]
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    np.testing.assert_array_equal(a.kept_masks, b.kept_masks)
    assert not np.array_equal(a.kept_masks, c.kept_masks)


def test_train_leaves_global_rng_untouched(synthetic):
    torch.manual_seed(5)
    state = torch.get_rng_state()
    train(fast_config(pruner="random-dynamic", prune_ratio=0.3, epochs=1), data=synthetic)
    assert torch.equal(torch.get_rng_state(), state)


def test_weights_multiply_per_sample_loss_before_mean(synthetic):
    """One SGD step with loss weights equals a hand-computed step on sum(w * l) / b."""
    cfg = TrainConfig.from_dict(
        fast_config(pruner="full", momentum=0.0, weight_decay=0.0, label_smoothing=0.1, schedule="constant", lr=0.5)
    )
    tr = Trainer(cfg, data=synthetic)
    ref = copy.deepcopy(tr.model)
    idx = torch.arange(16)
    x = tr.batches.normalize(synthetic.x_train[idx])
    y = synthetic.y_train[idx]
    w = torch.linspace(0.5, 3.0, 16)
    tr.step(x, y, idx, w, 0.0)
    ref.train()
    losses = F.cross_entropy(ref(x), y, reduction="none", label_smoothing=0.1)
    (losses * w).sum().div(16).backward()
    with torch.no_grad():
        for p_ref, p_new in zip(ref.parameters(), tr.model.parameters()):
            torch.testing.assert_close(p_ref - 0.5 * p_ref.grad, p_new, rtol=1e-5, atol=1e-6)


def test_onecycle_matches_torch_onecycle():
    total = 100
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=1.0,
        total_steps=total + 1,
        pct_start=0.3,
        div_factor=25,
        final_div_factor=1e4,
        anneal_strategy="cos",
    )
    ours, theirs = [], []
    warm = (0.3 * (total + 1) - 1) / total  # torch ends warm-up at step pct_start * total_steps - 1
    for step in range(total + 1):
        theirs.append(opt.param_groups[0]["lr"])
        ours.append(lr_multiplier("onecycle", step / total, warmup=warm))
        opt.step()
        sched.step() if step < total else None
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-9)


def test_step_and_cosine_schedules():
    assert lr_multiplier("step", 0.49) == 1.0 and lr_multiplier("step", 0.5) == pytest.approx(0.1)
    assert lr_multiplier("step", 0.8) == pytest.approx(0.01)
    assert lr_multiplier("cosine", 0.0, warmup=0.0) == 1.0 and lr_multiplier(
        "cosine", 1.0, warmup=0.0
    ) == pytest.approx(0)
    assert lr_multiplier("cosine", 0.05, warmup=0.1) == pytest.approx(0.5)


def test_lars_trust_ratio_hand_computed():
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))  # ||w|| = 5
    opt = LARS([{"params": [w]}], lr=0.1, momentum=0.0, weight_decay=0.0, eta=0.01)
    w.grad = torch.tensor([0.0, 2.0])  # ||g|| = 2 -> trust = 0.01 * 5 / 2 = 0.025
    opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([3.0, 4.0 - 0.1 * 0.025 * 2.0]))


def test_lamb_first_step_hand_computed():
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    opt = LAMB([{"params": [w]}], lr=0.1, weight_decay=0.0, eps=0.0)
    w.grad = torch.tensor([1.0, -2.0])  # first Adam step: update = sign(g) = [1, -1], ||u|| = sqrt(2)
    opt.step()
    u = torch.tensor([1.0, -1.0]) * (5.0 / math.sqrt(2.0))
    torch.testing.assert_close(w.detach(), torch.tensor([3.0, 4.0]) - 0.1 * u)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw", "lars", "lamb"])
def test_every_optimizer_reduces_training_loss(synthetic, optimizer):
    r = train(
        fast_config(
            pruner="full",
            optimizer=optimizer,
            epochs=4,
            schedule="constant",
            lr={"sgd": 0.05, "adamw": 1e-3, "lars": 0.5, "lamb": 1e-3}[optimizer],
        ),
        data=synthetic,
    )
    assert r.history[-1]["train_loss"] < r.history[0]["train_loss"]


def test_nan_loss_stops_with_clear_error(synthetic):
    with pytest.raises(TrainingError, match="training loss became"):
        train(fast_config(pruner="full", lr=1e12, schedule="constant", optimizer="sgd", momentum=0.0), data=synthetic)


def test_unknown_config_key_and_bad_values():
    with pytest.raises(ConfigError, match="unknown option 'epoch'"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        TrainConfig.from_dict({"batch_size": 0})
    with pytest.raises(ConfigError, match="valid: 'sgd', 'adamw', 'lars', 'lamb'"):
        TrainConfig.from_dict({"optimizer": "adam"})


def test_augmentation_crop_is_a_window_of_the_padded_image():
    from prunebench.harness.augment import random_crop, random_flip

    x = torch.randint(0, 255, (8, 3, 6, 6), dtype=torch.uint8)
    out = random_crop(x, 2, torch.Generator().manual_seed(0))
    xp = F.pad(x, (2, 2, 2, 2))
    for i in range(8):
        assert any(torch.equal(out[i], xp[i, :, dy : dy + 6, dx : dx + 6]) for dy in range(5) for dx in range(5))
    f = random_flip(x, torch.Generator().manual_seed(0))
    flipped = [torch.equal(f[i], x[i].flip(-1)) for i in range(8)]
    assert all(torch.equal(f[i], x[i]) or flipped[i] for i in range(8)) and 0 < sum(flipped) < 8


def test_infobatch_through_loop_reports_realized_ratio(synthetic):
    r = train(fast_config(pruner="infobatch", prune_ratio=0.5, epochs=8), data=synthetic)
    assert r.history[0]["kept"] == 512  # epoch 0 unpruned
    assert all(h["kept"] < 512 for h in r.history[1:7])
    assert r.history[7]["kept"] == 512  # annealing from ceil(0.875 * 8) = 7
    assert 0 < r.row["realized_prune_ratio"] < 0.5


def test_image_folder_dataset(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 3)):
        for c in ("a", "b"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)
                Image.fromarray(arr).save(tmp_path / split / c / f"{i}.png")
    r = train(
        dict(
            dataset=f"imagefolder:{tmp_path}",
            model="cnn-small",
            pruner="random-dynamic",
            prune_ratio=0.5,
            epochs=2,
            batch_size=4,
            image_size=16,
            num_workers=0,
            tracking=False,
        )
    )
    assert r.row["samples_backprop"] == 2 * 6 and r.row["num_classes"] == 2
    assert 0.0 <= r.row["final_acc"] <= 1.0
