"""Contextual diversity and Cal against hand computation and brute force on tiny fixtures."""

from __future__ import annotations

import math

import pytest
import torch

from prunebench.errors import ConfigError
from prunebench.pruners import PruneContext, create_pruner
from prunebench.pruners.coverage import kcenter_greedy, symmetric_kl
from prunebench.pruners.diversity import nearest_neighbours, neighbour_divergence
from prunebench.pruners.rules import class_budgets


def _kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q))


def _skl(p, q):
    return 0.5 * _kl(p, q) + 0.5 * _kl(q, p)


def _probs(n, c, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(3 * torch.randn(n, c, generator=g), dim=1)


def test_symmetric_kl_by_hand():
    # 1/2 [(0.5-0.9)(ln 0.5 - ln 0.9) + (0.5-0.1)(ln 0.5 - ln 0.1)] = 0.4394449...
    d = symmetric_kl(
        torch.tensor([[0.5, 0.5]], dtype=torch.float64), torch.tensor([[0.9, 0.1], [0.5, 0.5]], dtype=torch.float64)
    )
    assert d.shape == (1, 2)
    assert float(d[0, 0]) == pytest.approx(0.5 * (0.4 * math.log(0.9 / 0.5) + 0.4 * math.log(5.0)), rel=1e-12)
    assert float(d[0, 1]) == pytest.approx(0.0, abs=1e-15)
    p = _probs(6, 5, 0)
    d = symmetric_kl(p, p)
    for i in range(6):
        for j in range(6):
            assert float(d[i, j]) == pytest.approx(_skl(p[i].tolist(), p[j].tolist()), rel=1e-9, abs=1e-12)


def test_symmetric_kl_of_an_underflowed_zero_is_finite():
    d = symmetric_kl(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.5]]))
    assert torch.isfinite(d).all() and float(d) > 10  # large, not NaN or inf (DeepCore's log(a/b) would be)


def _brute_kcenter(dist, first, k):
    """Farthest-point greedy from ``first`` on an explicit distance matrix (lists, no tensors)."""
    n = len(dist)
    picked = [first]
    mins = list(dist[first])
    for _ in range(k - 1):
        j = max((i for i in range(n) if i not in picked), key=lambda i: mins[i])
        picked.append(j)
        mins = [min(mins[i], dist[j][i]) for i in range(n)]
    return picked


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kcenter_symmetric_kl_equals_brute_force(seed):
    p = _probs(14, 4, seed)
    dist = [[_skl(p[i].tolist(), p[j].tolist()) for j in range(14)] for i in range(14)]
    got = kcenter_greedy(p, 7, torch.Generator().manual_seed(seed), block=2, metric="symmetric-kl").tolist()
    assert got == _brute_kcenter(dist, got[0], 7)


def test_kcenter_euclidean_equals_brute_force_and_rejects_unknown_metric():
    x = torch.randn(15, 3, generator=torch.Generator().manual_seed(5))
    dist = [[float(((x[i] - x[j]) ** 2).sum()) for j in range(15)] for i in range(15)]
    got = kcenter_greedy(x, 6, torch.Generator().manual_seed(1)).tolist()
    assert got == _brute_kcenter(dist, got[0], 6)
    with pytest.raises(ValueError, match="valid: 'euclidean', 'symmetric-kl'"):
        kcenter_greedy(x, 3, torch.Generator(), metric="cosine")


def _context(probs, emb, labels, num_classes):
    rec = {"probs": probs[None], "embeddings": emb[None], "label_smoothing": 0.0}
    return PruneContext(labels=labels, num_classes=num_classes, proxy=lambda req: rec)


N, C = 24, 3


@pytest.fixture
def fixture():
    probs = _probs(N, C, 7)
    emb = torch.randn(N, 4, generator=torch.Generator().manual_seed(8))
    labels = torch.arange(N) % C
    return probs, emb, labels


def test_contextual_diversity_is_kcenter_under_symmetric_kl(fixture):
    probs, emb, labels = fixture
    p = create_pruner("contextual-diversity", num_samples=N, num_epochs=2, prune_ratio=0.5, seed=3)
    p.prepare(_context(probs, emb, labels, C))
    dist = [[_skl(probs[i].tolist(), probs[j].tolist()) for j in range(N)] for i in range(N)]
    kept = p.subset.tolist()
    assert kept == _brute_kcenter(dist, kept[0], 12)


def test_contextual_diversity_class_balanced(fixture):
    probs, emb, labels = fixture
    p = create_pruner("contextual-diversity", num_samples=N, num_epochs=2, prune_ratio=0.5, seed=3, class_balanced=True)
    p.prepare(_context(probs, emb, labels, C))
    kept = p.subset
    budgets = class_budgets(labels, 12, C).tolist()
    assert torch.bincount(labels[kept], minlength=C).tolist() == budgets
    for c in range(C):
        members = torch.nonzero(labels == c).flatten().tolist()
        mine = [members.index(i) for i in kept.tolist() if labels[i] == c]  # in picked order
        sub = probs[members]
        dist = [[_skl(sub[i].tolist(), sub[j].tolist()) for j in range(len(members))] for i in range(len(members))]
        assert mine == _brute_kcenter(dist, mine[0], budgets[c])


def _brute_knn(x, k, among=None):
    """Indices of the k nearest other points (float64 distances, ties by index)."""
    n = x.shape[0]
    among = list(range(n)) if among is None else among
    out = []
    for i in among:
        d = sorted((float(((x[i].double() - x[j].double()) ** 2).sum()), j) for j in among if j != i)
        out.append([j for _, j in d[:k]])
    return out


def test_nearest_neighbours_equal_brute_force():
    x = torch.randn(30, 5, generator=torch.Generator().manual_seed(2))
    got = nearest_neighbours(x, 4, chunk_elems=70)  # 2 rows per chunk: the chunking is exercised
    assert got.tolist() == _brute_knn(x, 4)


def test_nearest_neighbours_never_self_even_with_duplicates():
    x = torch.tensor([[0.0], [0.0], [0.0], [5.0]])
    nb = nearest_neighbours(x, 2)
    assert all(i not in nb[i].tolist() for i in range(4))
    assert sorted(nb[0].tolist()) == [1, 2] and set(nb[3].tolist()) < {0, 1, 2}


@pytest.mark.parametrize("divergence", ["symmetric", "neighbour-to-sample"])
def test_neighbour_divergence_by_brute_force(divergence):
    p = _probs(9, 4, 3)
    nb = torch.tensor([[(i + 1) % 9, (i + 3) % 9] for i in range(9)])
    got = neighbour_divergence(p, nb, divergence, chunk_elems=10)
    for i in range(9):
        pi = p[i].tolist()
        ds = [_skl(pi, p[j].tolist()) if divergence == "symmetric" else _kl(p[j].tolist(), pi) for j in nb[i].tolist()]
        assert float(got[i]) == pytest.approx(sum(ds) / 2, rel=1e-9)


@pytest.mark.parametrize("class_balanced", [False, True])
def test_cal_scores_and_keeps_the_largest(fixture, class_balanced):
    probs, emb, labels = fixture
    k = 3
    p = create_pruner(
        "cal", num_samples=N, num_epochs=2, prune_ratio=0.5, seed=1, neighbors=k, class_balanced=class_balanced
    )
    p.prepare(_context(probs, emb, labels, C))
    expected = torch.empty(N)
    groups = [torch.nonzero(labels == c).flatten().tolist() for c in range(C)] if class_balanced else [list(range(N))]
    for members in groups:
        for i, nbs in zip(members, _brute_knn(emb, k, members)):
            expected[i] = sum(_skl(probs[i].tolist(), probs[j].tolist()) for j in nbs) / k
    assert torch.allclose(p.scores, expected, rtol=1e-5)
    kept = torch.zeros(N, dtype=torch.bool)
    kept[p.subset] = True
    for members in groups:
        m = torch.tensor(members)
        assert float(expected[m][kept[m]].min()) >= float(expected[m][~kept[m]].max())
    if class_balanced:
        assert torch.bincount(labels[p.subset], minlength=C).tolist() == class_budgets(labels, 12, C).tolist()


def test_cal_options_validated(fixture):
    probs, emb, labels = fixture
    with pytest.raises(ConfigError, match="neighbors must be an integer >= 1"):
        create_pruner("cal", num_samples=N, num_epochs=2, neighbors=0)
    with pytest.raises(ConfigError, match="divergence"):
        create_pruner("cal", num_samples=N, num_epochs=2, divergence="kl")
    p = create_pruner("cal", num_samples=N, num_epochs=2, neighbors=8, class_balanced=True)
    with pytest.raises(ConfigError, match="class 0 has 8"):
        p.prepare(_context(probs, emb, labels, C))
