"""InfoBatch: threshold, keep probability, weights, epoch 0, annealing (Qin et al., ICLR 2024)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from prunebench.pruners import create_pruner


def _ib(n=10, epochs=8, r=0.5, delta=0.875, seed=0):
    return create_pruner("infobatch", num_samples=n, num_epochs=epochs, prune_ratio=r, seed=seed, delta=delta)


def test_epoch_zero_prunes_nothing():
    sel = _ib().plan_epoch(0)
    assert sorted(sel.indices.tolist()) == list(range(10))
    assert torch.all(sel.weights == 1)


def test_threshold_weights_and_count_on_hand_fixture():
    p = _ib(n=10, r=0.5)
    scores = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 1.0, 2.0, 3.0, 4.0, 5.5])  # mean = 1.7
    p.observe(torch.arange(10), scores)
    sel = p.plan_epoch(1)
    kept = dict(zip(sel.indices.tolist(), sel.weights.tolist()))
    well = {0, 1, 2, 3, 4, 5}  # score < 1.7
    for i in (6, 7, 8, 9):  # score >= mean: all kept, weight 1
        assert kept[i] == 1.0
    kept_well = [i for i in kept if i in well]
    assert len(kept_well) == math.floor(0.5 * 6)  # the reference keeps int(keep_ratio * n_well)
    assert all(kept[i] == pytest.approx(2.0) for i in kept_well)  # 1 / (1 - r)
    assert len(sel.indices) == 7 and len(set(sel.indices.tolist())) == 7


def test_keep_probability_of_well_learned_is_one_minus_r():
    p = _ib(n=100, r=0.3, epochs=100)
    scores = torch.cat([torch.zeros(50), torch.ones(50) * 10])  # 50 well-learned
    p.observe(torch.arange(100), scores)
    counts = np.zeros(100)
    trials = 3000
    for _ in range(trials):
        counts[p.plan_epoch(1).indices.numpy()] += 1
    np.testing.assert_allclose(counts[50:] / trials, 1.0)
    assert abs(counts[:50].mean() / trials - 0.7) < 0.01
    assert np.abs(counts[:50] / trials - 0.7).max() < 0.06


def test_weights_make_the_mean_loss_unbiased():
    """E[sum_kept w_i l_i] = sum_i l_i: the rescaling keeps the expected total loss."""
    p = _ib(n=40, r=0.5, epochs=100)
    losses = torch.linspace(0.1, 4.0, 40)
    p.observe(torch.arange(40), losses)
    tot = 0.0
    trials = 4000
    for _ in range(trials):
        sel = p.plan_epoch(1)
        tot += float((losses[sel.indices] * sel.weights).sum())
    assert tot / trials == pytest.approx(float(losses.sum()), rel=0.01)


@pytest.mark.parametrize("epochs", [12, 18, 90, 200])
@pytest.mark.parametrize("delta", [0.875, 1.0])
def test_annealing_follows_the_release_rule(epochs, delta):
    # the release (InfoBatch.__iter__ / prune) prunes an epoch while `epoch + 1 <= delta * epochs`
    # (0-based epochs); written out here as its loop, independent of the pruner's arithmetic
    release_pruned = [e for e in range(epochs) if e + 1 <= delta * epochs]
    expected_first_full = {(12, 0.875): 10, (18, 0.875): 15, (90, 0.875): 78, (200, 0.875): 175}
    if delta == 1.0:
        assert release_pruned == list(range(epochs))
    else:
        assert release_pruned[-1] + 1 == expected_first_full[(epochs, delta)]
    p = _ib(n=20, epochs=epochs, delta=delta)
    p.observe(torch.arange(20), torch.linspace(0, 1, 20))  # 10 well-learned samples: r = .5 drops 5
    pruned = [e for e in range(1, epochs) if p.plan_epoch(e).indices.numel() < 20]
    assert pruned == [e for e in release_pruned if e >= 1]
    for e in range(epochs):
        if e not in release_pruned:
            sel = p.plan_epoch(e)
            assert sorted(sel.indices.tolist()) == list(range(20)) and torch.all(sel.weights == 1)


def test_scores_update_only_for_trained_samples():
    p = _ib(n=6)
    p.observe(torch.tensor([1, 3]), torch.tensor([0.25, 0.5]))
    s = p.scores_cpu()
    assert s.tolist() == pytest.approx([1.0, 0.25, 1.0, 0.5, 1.0, 1.0])
