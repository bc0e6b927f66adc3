"""SeTa: the window schedule, the loss clusters and the realized prune ratio against hand-worked examples."""

from __future__ import annotations

import pytest
import torch

from prunebench.errors import ConfigError
from prunebench.pruners import create_pruner
from prunebench.pruners.seta import loss_clusters, window


def test_window_schedule_by_hand():
    # release's CIFAR setting: k = 5, window_scale = 0.9 -> w = round(4.5) = 4 (half to even), slide 1:
    # all, [1,5), [0,4), [1,5), ...
    assert [window(5, t, 0.9) for t in range(5)] == [(0, 5), (1, 5), (0, 4), (1, 5), (0, 4)]
    # ImageNet setting: k = 10, window_scale = 0.6 -> w = 6, starts 1,2,3,4,0,1 (period 5)
    assert [window(10, t, 0.6) for t in range(7)] == [(0, 10), (1, 7), (2, 8), (3, 9), (4, 10), (0, 6), (1, 7)]
    # round(2.5) = 2: a window of 2 of 5 clusters, period 4
    assert [window(5, t, 0.5) for t in range(6)] == [(0, 5), (1, 3), (2, 4), (3, 5), (0, 2), (1, 3)]
    assert window(5, 3, 1.0) == (0, 5)  # the full window never slides
    assert window(1, 4, 0.9) == (0, 1)


def test_clusters_of_separated_losses_are_the_blobs_easy_to_hard():
    g = torch.Generator().manual_seed(0)
    blobs = [torch.full((n,), c) + 0.01 * torch.rand(n, generator=g) for n, c in [(7, 4.0), (5, 0.5), (9, 2.0)]]
    values = torch.cat(blobs)
    groups = loss_clusters(values, 3, torch.Generator().manual_seed(1))
    assert [sorted(gr.tolist()) for gr in groups] == [list(range(7, 12)), list(range(12, 21)), list(range(0, 7))]


def test_degenerate_clusterings_follow_the_release():
    pos = list(range(10))
    assert [g.tolist() for g in loss_clusters(torch.rand(10), 1, torch.Generator())] == [pos]
    # equal losses: torch.chunk, which gives 3,3,3,1 for k = 4 and five chunks of 2 for k = 6
    assert [g.numel() for g in loss_clusters(torch.full((10,), 3.0), 4, torch.Generator())] == [3, 3, 3, 1]
    assert [g.numel() for g in loss_clusters(torch.full((10,), 3.0), 6, torch.Generator())] == [2, 2, 2, 2, 2]
    # at most k distinct losses: one cluster per value
    got = loss_clusters(torch.tensor([2.0, 1.0, 3.0, 1.0, 2.0]), 4, torch.Generator())
    assert [sorted(g.tolist()) for g in got] == [[1, 3], [0, 4], [2]]


@pytest.mark.parametrize("seed", range(5))
def test_kmeans_ends_at_a_lloyd_fixed_point(seed):
    """Every value is nearest to the mean of its own cluster, and clusters are ordered by mean."""
    g = torch.Generator().manual_seed(seed)
    values = torch.cat([torch.randn(40, generator=g), 3 + torch.rand(25, generator=g) * 4])
    groups = loss_clusters(values, 4, torch.Generator().manual_seed(seed))
    assert sorted(torch.cat(groups).tolist()) == list(range(65))
    means = [float(values[gr].double().mean()) for gr in groups]
    assert means == sorted(means) and len(groups) == 4
    for i, gr in enumerate(groups):
        for v in values[gr].tolist():
            d = [abs(v - m) for m in means]
            assert d[i] <= min(d) + 1e-9


def _run(pruner, epochs):
    kept = []
    for e in range(epochs):
        sel = pruner.plan_epoch(e)
        assert torch.unique(sel.indices).numel() == sel.indices.numel() and sel.weights is None
        kept.append(sel.indices)
    return kept


def test_schedule_by_hand_and_realized_prune_ratio():
    """r = 0 (the release's ImageNet default): no random pruning, five loss clusters of sizes 2,3,4,5,6.
    k = 5, window_scale = 0.9: window 4; E = 8, delta = 0.875: epochs 0..6 prune, epoch 7 anneals."""
    sizes, n = [2, 3, 4, 5, 6], 20
    member = torch.repeat_interleave(torch.arange(5), torch.tensor(sizes))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(3))  # clusters scattered over indices
    losses = torch.empty(n)
    losses[perm] = member.float() * 10 + torch.linspace(0, 1, n)
    group_of = torch.empty(n, dtype=torch.long)
    group_of[perm] = member
    p = create_pruner("seta", num_samples=n, num_epochs=8, prune_ratio=0.0, seed=0)
    p.observe(torch.arange(n), losses)
    kept = _run(p, 8)
    expect_groups = [range(5), range(1, 5), range(0, 4), range(1, 5), range(0, 4), range(1, 5), range(0, 4), range(5)]
    for e, gs in enumerate(expect_groups):
        assert sorted(kept[e].tolist()) == sorted(i for i in range(n) if int(group_of[i]) in gs), e
    counts = [k.numel() for k in kept]
    assert counts == [20, 18, 14, 18, 14, 18, 14, 20]
    assert 1 - sum(counts) / (8 * n) == pytest.approx(0.15)


def test_random_pruning_subset_and_partial_annealing_sizes():
    """N = 101, r = 0.3: floor(0.7 * 101) = 70 samples in epoch 0 and in annealing (round would give 71);
    pruning epochs keep a window of those 70, never a sample of the clusters outside it."""
    n = 101
    p = create_pruner("seta", num_samples=n, num_epochs=8, prune_ratio=0.3, seed=4, num_group=5, window_scale=0.9)
    grp = torch.arange(n) % 5
    p.observe(torch.arange(n), grp.float())  # five distinct losses = five clusters, easy = group 0
    kept = _run(p, 8)
    assert [kept[e].numel() for e in (0, 7)] == [70, 70]
    for e in range(1, 7):
        assert kept[e].numel() <= 70
        outside = 0 if e % 2 else 4  # start 1 drops the easiest cluster, start 0 the hardest
        assert not bool((grp[kept[e]] == outside).any())
        # with every sample of the window kept, each window group contributes its whole share of the subset
        assert set(grp[kept[e]].tolist()) == set(range(5)) - {outside}


def test_scores_start_at_three_and_track_the_latest_loss():
    p = create_pruner("seta", num_samples=10, num_epochs=4, prune_ratio=0.0, seed=0)
    assert p.scores.tolist() == [3.0] * 10
    p.observe(torch.tensor([2, 5]), torch.tensor([0.5, 7.0]))
    p.observe(torch.tensor([5]), torch.tensor([1.0]))
    assert p.scores[[2, 5, 0]].tolist() == [0.5, 1.0, 3.0]


def test_options_validated():
    with pytest.raises(ConfigError, match="num_group must be an integer >= 1"):
        create_pruner("seta", num_samples=10, num_epochs=2, num_group=0)
    with pytest.raises(ConfigError, match="window of round"):
        create_pruner("seta", num_samples=10, num_epochs=2, num_group=5, window_scale=0.1)
    with pytest.raises(ConfigError, match="window_scale must be in"):
        create_pruner("seta", num_samples=10, num_epochs=2, window_scale=1.5)
    with pytest.raises(ConfigError, match="delta must be in"):
        create_pruner("seta", num_samples=10, num_epochs=2, delta=1.5)
    assert create_pruner("seta", num_samples=10, num_epochs=2).label == "seta[k=5,ws=0.9,delta=0.875,p=0.1]"
