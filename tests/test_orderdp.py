"""OrderDP: gamma against exact combinatorics, keep frequencies per rank, seeds, tie-breaking."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy.stats import hypergeom

from prunebench.errors import ConfigError
from prunebench.pruners import CandidateBatch, create_pruner
from prunebench.pruners.orderdp import gamma


def gamma_exact(n: int, s: int, q: int) -> list[Fraction]:
    """The doc's sum of binomials, in exact rational arithmetic (independent of the implementation)."""
    total = math.comb(n, s)
    return [
        Fraction(sum(math.comb(j - 1, l - 1) * math.comb(n - j, s - l) for l in range(1, q + 1)), total)
        for j in range(1, n + 1)
    ]


@pytest.mark.parametrize("n,s,q", [(10, 10, 3), (10, 3, 3), (12, 7, 4), (20, 10, 4), (30, 24, 9), (7, 5, 1), (1, 1, 1)])
def test_gamma_matches_binomial_sum(n, s, q):
    g = gamma(n, s, q)
    ex = np.array([float(f) for f in gamma_exact(n, s, q)])
    np.testing.assert_allclose(g, ex, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n,s,q", [(1000, 800, 600), (5000, 2500, 1000), (997, 997, 1)])
def test_gamma_matches_scipy_hypergeom(n, s, q):
    j = np.arange(1, n + 1)
    ref = (s / n) * hypergeom.cdf(q - 1, n - 1, j - 1, s - 1)
    np.testing.assert_allclose(gamma(n, s, q), ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("n,s,q", [(100, 80, 60), (1000, 1000, 300), (1000, 300, 300), (999, 500, 17)])
def test_gamma_properties(n, s, q):
    g = gamma(n, s, q)
    assert g.sum() == pytest.approx(q, rel=1e-12)
    np.testing.assert_allclose(g[:q], s / n, rtol=1e-12)
    assert np.all(np.diff(g) <= 1e-15)
    assert np.all(g[n - s + q :] == 0)
    if n - s + q - 1 < n:
        assert g[n - s + q - 1] > 0


def test_gamma_imagenet_size_is_stable():
    n = 1_281_167
    s, q = round(0.8 * n), round(0.6 * n)
    g = gamma(n, s, q)
    assert np.all(np.isfinite(g)) and g.min() >= 0 and g.max() <= s / n + 1e-15
    assert g.sum() == pytest.approx(q, rel=1e-9)
    assert np.all(np.diff(g) <= 1e-12)
    np.testing.assert_allclose(g[:q], s / n)
    assert np.all(g[n - s + q :] == 0)


def test_gamma_rejects_bad_arguments():
    with pytest.raises(ConfigError):
        gamma(10, 3, 4)


def test_empirical_keep_frequency_per_rank_matches_gamma():
    n, s_ratio, p = 20, 0.5, 0.8  # s = 10, q = 4
    pr = create_pruner("orderdp", num_samples=n, num_epochs=1, prune_ratio=p, seed=7, candidate_ratio=s_ratio)
    # distinct scores: sample i has rank (n - i) so rank 1 = index n-1
    pr.observe(torch.arange(n), torch.arange(n, dtype=torch.float32))
    trials = 20000
    counts = np.zeros(n)
    for _ in range(trials):
        counts[pr.plan_epoch(0).indices.numpy()] += 1
    freq_by_rank = (counts / trials)[::-1]  # rank j = 1..n
    g = gamma(n, pr.candidate_count, pr.keep_count)
    sd = np.sqrt(g * (1 - g) / trials) + 1e-9
    z = np.abs(freq_by_rank - g) / sd
    assert z.max() < 5.0, (freq_by_rank, g)


def test_s_equals_n_is_greedy_top_q():
    n = 50
    pr = create_pruner("orderdp", num_samples=n, num_epochs=1, prune_ratio=0.6, seed=0, candidate_ratio=1.0)
    scores = torch.randperm(n, generator=torch.Generator().manual_seed(0)).float()
    pr.observe(torch.arange(n), scores)
    kept = set(pr.plan_epoch(0).indices.tolist())
    assert kept == set(torch.topk(scores, 20).indices.tolist())


def test_s_equals_q_is_uniform():
    n = 40
    pr = create_pruner("orderdp", num_samples=n, num_epochs=1, prune_ratio=0.75, seed=0, candidate_ratio=0.25)
    pr.observe(torch.arange(n), torch.arange(n, dtype=torch.float32))  # strongly ordered scores
    counts = np.zeros(n)
    for _ in range(4000):
        counts[pr.plan_epoch(0).indices.numpy()] += 1
    # each sample kept w.p. q/n = 0.25 regardless of its score
    assert np.abs(counts / 4000 - 0.25).max() < 0.05


def test_ties_broken_uniformly_at_random_at_epoch_zero():
    n = 30
    counts = np.zeros(n)
    trials = 3000
    pr = create_pruner("orderdp", num_samples=n, num_epochs=1, prune_ratio=0.5, seed=1, candidate_ratio=1.0)
    for _ in range(trials):  # all scores equal (initial): with s = N the choice is pure tie-breaking
        counts[pr.plan_epoch(0).indices.numpy()] += 1
    freq = counts / trials
    assert np.abs(freq - 0.5).max() < 0.06  # lowest indices are not favoured
    assert abs(freq[:15].mean() - freq[15:].mean()) < 0.03


def test_seed_changes_candidate_draws_and_same_seed_repeats():
    def plans(seed):
        pr = create_pruner("orderdp", num_samples=100, num_epochs=3, prune_ratio=0.4, seed=seed)
        return [set(pr.plan_epoch(e).indices.tolist()) for e in range(3)]

    assert plans(0) == plans(0)
    a, b = plans(0), plans(1)
    assert all(x != y for x, y in zip(a, b))


def test_observe_sets_scores_and_keeps_stale_ones():
    pr = create_pruner("orderdp", num_samples=10, num_epochs=1, prune_ratio=0.5, seed=0)
    pr.observe(torch.tensor([2, 5]), torch.tensor([0.7, 1.5]))
    s = pr.scores_cpu()
    assert s[2] == pytest.approx(0.7) and s[5] == pytest.approx(1.5)
    assert torch.all(s[[0, 1, 3, 4, 6, 7, 8, 9]] == 3.0)


def test_candidate_ratio_below_keep_fraction_rejected():
    with pytest.raises(ConfigError, match="below the keep fraction"):
        create_pruner("orderdp", num_samples=100, num_epochs=1, prune_ratio=0.1, seed=0, candidate_ratio=0.8)
    with pytest.raises(ConfigError, match="candidate_ratio must be in"):
        create_pruner("orderdp", num_samples=100, num_epochs=1, prune_ratio=0.1, seed=0, candidate_ratio=1.5)


def test_kept_are_top_q_of_some_candidate_set():
    """Each kept set must be the top-q of the s candidates: every kept score >= every candidate
    not kept; so the q kept never include a sample ranked below n - s + q."""
    n, pr_ = 60, create_pruner("orderdp", num_samples=60, num_epochs=1, prune_ratio=0.7, seed=3, candidate_ratio=0.5)
    pr_.observe(torch.arange(n), torch.arange(n, dtype=torch.float32))
    for _ in range(200):
        kept = pr_.plan_epoch(0).indices
        assert kept.numel() == 18
        ranks = n - kept  # score i has rank n - i
        assert int(ranks.max()) <= n - 30 + 18


# --- orderdp-fresh -------------------------------------------------------------------------------------


def test_fresh_keeps_top_k_of_each_candidate_batch():
    pr = create_pruner("orderdp-fresh", num_samples=1000, num_epochs=1, prune_ratio=0.6, seed=0, candidate_ratio=0.8)
    assert pr.candidate_count == 800 and pr.keep_count == 400
    b = pr.candidate_batch_size(32)
    assert b == 64
    losses = torch.rand(b, generator=torch.Generator().manual_seed(0))
    idx = torch.arange(100, 100 + b)
    sel = pr.select_batch(CandidateBatch(idx, losses, torch.zeros(b, 10), torch.zeros(b, dtype=torch.int64), 32))
    assert sel.weights is None
    assert set(sel.keep.tolist()) == set(torch.topk(losses, 32).indices.tolist())


def test_fresh_plan_is_uniform_candidate_set():
    pr = create_pruner("orderdp-fresh", num_samples=100, num_epochs=1, prune_ratio=0.6, seed=0, candidate_ratio=0.8)
    cand = pr.plan_epoch(0).indices
    assert cand.numel() == 80 and torch.unique(cand).numel() == 80


def test_fresh_ties_are_random():
    pr = create_pruner("orderdp-fresh", num_samples=100, num_epochs=1, prune_ratio=0.5, seed=0, candidate_ratio=1.0)
    counts = np.zeros(20)
    for _ in range(2000):
        sel = pr.select_batch(
            CandidateBatch(torch.arange(20), torch.ones(20), torch.zeros(20, 2), torch.zeros(20, dtype=torch.int64), 10)
        )
        counts[sel.keep.numpy()] += 1
    assert np.abs(counts / 2000 - 0.5).max() < 0.07


def test_label_smoothed_loss_floor_above_the_imagenet_release_initial_score():
    """Under label smoothing eps over C classes the cross-entropy is at least the entropy of the smoothed
    target t (Gibbs), reached at softmax = t: for eps = 0.1, C = 1000 that is 1.0148 > 1.0, so the ImageNet
    release's initial score 1.0 ranks every never-trained sample below every trained one; 3.0 does not."""
    eps, c = 0.1, 1000
    hi, lo = 1 - eps + eps / c, eps / c
    floor = -(hi * math.log(hi) + (c - 1) * lo * math.log(lo))
    assert floor == pytest.approx(1.01485, abs=1e-5)
    t = torch.full((1, c), lo, dtype=torch.float64)
    t[0, 0] = hi
    at_t = torch.nn.functional.cross_entropy(t.log(), torch.tensor([0]), label_smoothing=eps).item()
    assert at_t == pytest.approx(floor, rel=1e-12)
    g = torch.Generator().manual_seed(0)
    z = (
        torch.randn(2000, c, generator=g, dtype=torch.float64)
        * torch.rand(2000, 1, generator=g, dtype=torch.float64)
        * 30
    )
    z[:, 0] += torch.rand(2000, generator=g, dtype=torch.float64) * 40  # many confident, correct predictions
    losses = torch.nn.functional.cross_entropy(
        z, torch.zeros(2000, dtype=torch.long), reduction="none", label_smoothing=eps
    )
    assert losses.min().item() >= floor - 1e-12
    # with initial score 1.0 an untrained sample loses every tie-free comparison with a trained one
    pr = create_pruner(
        "orderdp", num_samples=6, num_epochs=2, prune_ratio=0.5, seed=0, candidate_ratio=1.0, initial_score=1.0
    )
    pr.observe(torch.tensor([0, 1, 2]), torch.tensor([floor, floor + 0.5, 4.0]))
    for _ in range(5):
        assert sorted(pr.plan_epoch(1).indices.tolist()) == [0, 1, 2]
    pr3 = create_pruner("orderdp", num_samples=6, num_epochs=2, prune_ratio=0.5, seed=0, candidate_ratio=1.0)
    pr3.observe(torch.tensor([0, 1, 2]), torch.tensor([floor, floor + 0.5, 4.0]))
    kept = sorted(pr3.plan_epoch(1).indices.tolist())  # 4.0, then two of the untrained (3.0, tied)
    assert kept[0] == 2 and set(kept[1:]) <= {3, 4, 5}
