"""KAKURENBO (Nguyen et al., NeurIPS 2023): hidden set, adaptive fraction, learning-rate compensation, refresh.

Expected values are computed independently: the hidden set by sorting the stored losses by hand, the
fraction and the factor from the release's step rule, the learning rate from what the optimizer holds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import fast_config

from prunebench.errors import ConfigError
from prunebench.harness import TrainConfig, Trainer, train
from prunebench.harness.optim import lr_multiplier
from prunebench.harness.step import predictions
from prunebench.pruners import create_pruner
from prunebench.testing import check_resume


def _kk(n=40, epochs=10, f=0.5, threshold=0.7, seed=0):
    return create_pruner("kakurenbo", num_samples=n, num_epochs=epochs, prune_ratio=f, seed=seed, threshold=threshold)


def _release_fraction(epoch, fraction):
    """The release's ``adjust_fraction`` for its 200-epoch CIFAR-100 recipe, transcribed."""
    if epoch < 60:
        return 1 * fraction
    if epoch < 120:
        return 0.8 * fraction
    if epoch < 160:
        return 0.6 * fraction
    return 0.4 * fraction


def test_fraction_and_lr_factor_follow_the_release_on_its_recipe():
    p = _kk(n=100, epochs=200, f=0.3)
    for e in range(200):
        assert p.max_fraction(e) == _release_fraction(e, 0.3), e
        assert p.lr_scale(e) == (1.0 if e == 0 else 1 / (1 - _release_fraction(e, 0.3))), e


def test_fraction_stages_on_a_short_run():
    p = _kk(epochs=10, f=0.5)
    assert [p.max_fraction(e) for e in range(10)] == [0.5] * 3 + [0.4] * 3 + [0.3] * 2 + [0.2] * 2


def _fixture(n=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    loss = torch.randperm(n, generator=g).float() / 10 + 0.05  # distinct losses
    conf = torch.rand(n, generator=g)
    correct = torch.rand(n, generator=g) < 0.6
    return loss, conf, correct


def _brute_hidden(loss, conf, correct, k, tau):
    order = sorted(range(loss.numel()), key=lambda i: float(loss[i]))
    return {i for i in order[:k] if bool(correct[i]) and float(conf[i]) >= tau}


@pytest.mark.parametrize("epoch", [1, 3, 6, 9])
@pytest.mark.parametrize("tau", [0.0, 0.5, 0.7])
def test_hidden_set_equals_brute_force(epoch, tau):
    n = 40
    p = _kk(n=n, epochs=10, f=0.5, threshold=tau)
    loss, conf, correct = _fixture(n)
    idx = torch.arange(n)
    p.observe(idx, loss)
    p.observe_predictions(idx, conf, correct)
    p.epoch_end(epoch - 1)
    k = int(p.max_fraction(epoch) * n)
    expected = _brute_hidden(loss, conf, correct, k, tau)
    assert expected  # the fixture hides something
    sel = p.plan_epoch(epoch)
    trained = sel.indices.tolist()
    assert len(trained) == len(set(trained))  # each kept sample once
    assert set(range(n)) - set(trained) == expected
    assert sel.weights is None


def test_epoch_zero_hides_nothing_and_no_prediction_hides_nothing():
    p = _kk()
    assert sorted(p.plan_epoch(0).indices.tolist()) == list(range(40))
    p.observe(torch.arange(40), torch.zeros(40))  # losses, but no prediction stored: all "incorrect"
    assert sorted(p.plan_epoch(1).indices.tolist()) == list(range(40))


def test_equal_losses_hide_exactly_k_at_random():
    n = 40
    plans = []
    for seed in (0, 1):
        p = _kk(n=n, f=0.5, threshold=0.5, seed=seed)
        p.observe(torch.arange(n), torch.ones(n))
        p.observe_predictions(torch.arange(n), torch.ones(n), torch.ones(n, dtype=torch.bool))
        sel = p.plan_epoch(1)
        assert sel.indices.numel() == n - int(0.5 * n)
        plans.append(set(sel.indices.tolist()))
    assert plans[0] != plans[1]


def test_refresh_is_the_untrained_samples_then_none_at_the_last_epoch():
    n = 40
    p = _kk(n=n, epochs=4, f=0.5, threshold=0.5)
    loss, conf, correct = _fixture(n)
    p.observe(torch.arange(n), loss)
    p.observe_predictions(torch.arange(n), conf, correct)
    p.epoch_end(0)
    sel = p.plan_epoch(1)
    p.observe(sel.indices, torch.full((sel.indices.numel(),), 9.0))
    refresh = p.refresh_indices(1)
    assert sorted(refresh.tolist()) == sorted(set(range(n)) - set(sel.indices.tolist()))
    p.observe(refresh, torch.full((refresh.numel(),), 5.0))
    p.epoch_end(1)
    assert p.refresh_indices(3) is None
    assert p.refresh_indices(2).numel() == n  # nothing trained since epoch_end


def test_predictions_are_softmax_over_classes():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 5.0], [1.0, 1.0, 1.0]])
    y = torch.tensor([0, 1, 2])
    out = predictions(logits, y)
    e2 = math.exp(2)
    e5 = math.exp(5)
    torch.testing.assert_close(out[:, 0], torch.tensor([e2 / (e2 + 2), e5 / (e5 + 2), 1 / 3]))
    assert out[:, 1].tolist() == [1.0, 0.0, 0.0]  # ties: the first class is the prediction


def test_options_are_validated():
    with pytest.raises(ConfigError, match="threshold"):
        _kk(threshold=1.5)


def test_resumable_with_hiding():
    # 4 classes in the contract's simulation: tau = 0.2 makes every correct prediction confident enough
    check_resume("kakurenbo", options={"threshold": 0.2})


# -- in the loop ---------------------------------------------------------------------------------------


def _lr_log(cfg, synthetic):
    tr = Trainer(TrainConfig.from_dict(cfg), data=synthetic)
    log = []
    tr.step_observers.append(lambda idx, logits, y, losses: log.append((tr.epoch, tr.optimizer.param_groups[0]["lr"])))
    return tr, log


def test_learning_rate_applied_is_schedule_times_scale(synthetic):
    epochs, f, lr = 5, 0.5, 0.05
    cfg = fast_config(
        pruner="kakurenbo", prune_ratio=f, epochs=epochs, schedule="constant", lr=lr, pruner_options={"threshold": 0.3}
    )
    tr, log = _lr_log(cfg, synthetic)
    r = tr.run()
    n = synthetic.num_train
    # stages: e < 1.5, < 3, < 4, after (30 %, 60 %, 80 % of 5 epochs); epoch 0 unscaled
    expected_scale = [1.0] + [1 / (1 - f * d) for d in (1.0, 0.8, 0.6, 0.4)]
    for e, got in log:
        assert got == lr * expected_scale[e], e
    assert [h["lr_scale"] for h in r.history] == expected_scale
    kept = [h["kept"] for h in r.history]
    assert kept[0] == n and min(kept[1:]) < n  # something was hidden
    # the refresh forwards exactly the hidden samples of every epoch but the last
    assert r.row["samples_forward"] == sum(n - k for k in kept[:-1])
    assert r.row["samples_backprop"] == sum(kept)


def test_default_scale_leaves_the_schedule_bitwise(synthetic):
    epochs, lr, bs = 3, 0.05, 64
    cfg = fast_config(
        pruner="random-dynamic", prune_ratio=0.25, epochs=epochs, lr=lr, schedule="onecycle", batch_size=bs
    )
    tr, log = _lr_log(cfg, synthetic)
    r = tr.run()
    steps = math.ceil(round(0.75 * synthetic.num_train) / bs)
    expected = [
        lr * lr_multiplier("onecycle", (e + i / steps) / epochs, warmup=tr.config.warmup)
        for e in range(epochs)
        for i in range(steps)
    ]
    assert [v for _, v in log] == expected  # == : bitwise, the pre-hook formula
    assert all(h["lr_scale"] == 1.0 for h in r.history) and r.row["samples_forward"] == 0


def test_resume_is_bitwise_identical(synthetic, tmp_path):
    cfg = fast_config(pruner="kakurenbo", prune_ratio=0.5, epochs=4, pruner_options={"threshold": 0.3})
    ref = train(cfg, data=synthetic)

    class Stop(Exception):
        pass

    def stop(m):
        if m["epoch"] == 1:
            raise Stop

    with pytest.raises(Stop):
        train({**cfg, "checkpoint_dir": str(tmp_path)}, data=synthetic, progress=stop)
    resumed = train({**cfg, "checkpoint_dir": str(tmp_path), "resume": True}, data=synthetic)
    for k in ("final_acc", "samples_forward", "samples_backprop", "optimizer_steps"):
        assert ref.row[k] == resumed.row[k], k
    for a, b in zip(ref.history, resumed.history):
        assert (a["train_loss"], a["lr"], a["lr_scale"], a["kept"]) == (
            b["train_loss"],
            b["lr"],
            b["lr_scale"],
            b["kept"],
        )
    np.testing.assert_array_equal(ref.usage, resumed.usage)
