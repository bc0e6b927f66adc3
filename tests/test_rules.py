"""Selection rules of the epoch-level hot path: exact top-k with random ties, order-free."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
import torch

from prunebench.pruners import PruneContext, create_pruner
from prunebench.pruners.rules import ordered_subset, topk_mask


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_topk_mask_hand_worked():
    s = torch.tensor([3.0, 1.0, 2.0, 5.0, 4.0])
    assert torch.nonzero(topk_mask(s, 2, gen(0))).flatten().tolist() == [3, 4]
    assert torch.nonzero(topk_mask(s, 2, gen(0), largest=False)).flatten().tolist() == [1, 2]
    assert torch.nonzero(topk_mask(s, 4, gen(0))).flatten().tolist() == [0, 2, 3, 4]
    assert topk_mask(s, 0, gen(0)).sum() == 0 and topk_mask(s, 5, gen(0)).all() and topk_mask(s, 9, gen(0)).all()


@pytest.mark.parametrize("n,k,levels", [(1000, 600, 7), (1000, 1, 2), (257, 256, 3), (500, 250, 500)])
def test_topk_mask_matches_sorting(n, k, levels):
    g = gen(n + k)
    s = torch.randint(0, levels, (n,), generator=g).float()
    for largest in (True, False):
        m = topk_mask(s, k, g, largest=largest)
        assert int(m.sum()) == k
        kept, dropped = s[m], s[~m]
        if dropped.numel():
            assert (kept.min() >= dropped.max()) if largest else (kept.max() <= dropped.min())


def test_topk_mask_ties_are_uniform():
    # four tied at the threshold, two places for them: each tied entry kept with probability 1/2,
    # and each of the C(4,2) = 6 pairs equally often
    s = torch.tensor([9.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    pairs = Counter()
    reps = 6000
    g = gen(1)
    for _ in range(reps):
        m = topk_mask(s, 3, g)
        assert m[0] and not m[5]
        pairs[tuple(torch.nonzero(m[1:5]).flatten().tolist())] += 1
    assert set(pairs) == set(itertools.combinations(range(4), 2))
    for c in pairs.values():  # binomial sd ~ 29 around 1000
        assert abs(c - reps / 6) < 150


def test_ordered_subset_is_the_masked_set_in_uniform_order():
    mask = torch.tensor([True, False, True, False, True])
    orders = Counter()
    g = gen(2)
    reps = 6000
    for _ in range(reps):
        out = ordered_subset(mask, g)
        assert out.dtype == torch.int64 and sorted(out.tolist()) == [0, 2, 4]
        orders[tuple(out.tolist())] += 1
    assert len(orders) == 6
    for c in orders.values():  # binomial sd ~ 29 around 1000
        assert abs(c - reps / 6) < 150


def test_kept_tied_samples_are_not_front_loaded():
    """Samples chosen by the tie draw sit anywhere in the epoch order, not first. Half the samples
    score 2 and the rest tie at 1; OrderDP (c = 0.8, q = N/2) keeps every score-2 candidate and fills
    up from the tied ones, and both groups must have the same mean position in the epoch."""
    n = 200
    tied_pos, top_pos = [], []
    for seed in range(200):
        pr = create_pruner("orderdp", num_samples=n, num_epochs=4, prune_ratio=0.5, seed=seed, candidate_ratio=0.8)
        pr.prepare(PruneContext(labels=torch.zeros(n, dtype=torch.int64), num_classes=1))
        pr.observe(torch.arange(n), (torch.arange(n) < n // 2).float() + 1.0)
        idx = pr.plan_epoch(1).indices
        assert idx.numel() == 100 and idx.unique().numel() == 100
        pos = torch.arange(100, dtype=torch.float32)
        top = idx < n // 2
        top_pos.append(pos[top].mean())
        tied_pos.append(pos[~top].mean())
    assert abs(float(torch.stack(top_pos).mean()) - 49.5) < 1.5
    assert abs(float(torch.stack(tied_pos).mean()) - 49.5) < 1.5


@pytest.mark.parametrize("name,opts", [("loss-topk", {}), ("ucb", {}), ("epsilon-greedy", {}), ("infobatch", {})])
def test_epoch_order_independent_of_scores(name, opts):
    """The kept set's training order is a uniform shuffle: the mean position of the highest-score
    kept samples equals that of the lowest-score ones."""
    n = 1000
    pr = create_pruner(name, num_samples=n, num_epochs=10, prune_ratio=0.3, seed=0, **opts)
    pr.prepare(PruneContext(labels=torch.zeros(n, dtype=torch.int64), num_classes=1))
    losses = torch.linspace(0.0, 2.0, n)
    pr.observe(torch.arange(n), losses)
    hi, lo = [], []
    for e in range(1, 8):
        idx = pr.plan_epoch(e).indices
        pos = torch.empty(n).fill_(float("nan"))
        pos[idx] = torch.arange(idx.numel(), dtype=torch.float32) / idx.numel()
        hi.append(pos[n // 2 :][~pos[n // 2 :].isnan()].mean())
        lo.append(pos[: n // 2][~pos[: n // 2].isnan()].mean())
    assert abs(float(torch.stack(hi).mean()) - 0.5) < 0.03
    assert abs(float(torch.stack(lo).mean()) - 0.5) < 0.03
