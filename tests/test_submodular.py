"""CRAIG, GradMatch, GraphCut and LogDeterminant (prunebench/pruners/submodular.py): the pure functions against
independent computations on tiny fixtures (dense features, set functions evaluated from their definitions,
brute force, numpy least squares), then the pruners on a real tiny proxy run."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import scipy.optimize
import torch

from prunebench.errors import ConfigError
from prunebench.pruners import create_pruner, get_pruner_class
from prunebench.pruners import scores as S
from prunebench.pruners import submodular as SM
from prunebench.pruners.base import COST_PROFILE_ITEMS
from prunebench.pruners.rules import class_budgets
from prunebench.pruners.submodular import (
    grad_factors,
    gradient_cosine_similarity,
    gradmatch_select,
    graph_cut_greedy,
    logdet_greedy,
    nnls_gram,
    omp_nonneg,
)

NEW = ["craig", "gradmatch", "graphcut", "logdet"]


def _fixture(n=9, c=3, d=4, seed=0, smoothing=0.1):
    rng = np.random.default_rng(seed)
    logits = torch.from_numpy(rng.normal(size=(n, c)) * 2)
    probs = torch.softmax(logits, dim=1)
    y = torch.from_numpy(rng.integers(0, c, n))
    e = torch.from_numpy(np.abs(rng.normal(size=(n, d))))
    return probs, y, e, smoothing


def _dense(probs, y, e, ls, bias=True) -> np.ndarray:
    """The gradient features written out: [dl/dz, dl/dz (x) e] (DeepCore's calc_gradient), per sample."""
    if bias:
        return S.last_layer_grad_features(probs, y, e, ls).numpy()
    c = probs.shape[1]
    t = np.eye(c)[y.numpy()] * (1 - ls) + ls / c
    g = probs.numpy() - t
    return np.stack([np.outer(gi, ei).ravel() for gi, ei in zip(g, e.numpy())])


def _cos_kernel(f: np.ndarray) -> np.ndarray:
    """DeepCore's cossim_np: 0.5 + 0.5 cos."""
    nrm = np.linalg.norm(f, axis=1)
    return 0.5 + 0.5 * (f @ f.T) / np.outer(nrm, nrm)


# ---------------------------------------------------------------------------------------------------
# gradient factors and the similarity
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
def test_factors_give_the_gradient_features_inner_products(bias):
    probs, y, e, ls = _fixture()
    g, a = grad_factors(probs, y, e, ls, bias=bias)
    f = _dense(probs, y, e, ls, bias)
    assert ((g @ g.T) * (a @ a.T)).numpy() == pytest.approx(f @ f.T, rel=1e-12, abs=1e-12)
    # and the bias part of the gradient (first C coordinates) is g itself: softmax minus smoothed one-hot
    assert g.numpy() == pytest.approx(S.last_layer_grad_features(probs, y, e, ls).numpy()[:, :3])


def test_cosine_similarity_matches_deepcore_cossim():
    probs, y, e, ls = _fixture()
    g, a = grad_factors(probs, y, e, ls)
    k = _cos_kernel(_dense(probs, y, e, ls))
    assert gradient_cosine_similarity(g, a).numpy() == pytest.approx(k, rel=1e-12)
    cols = torch.tensor([4, 0])
    assert gradient_cosine_similarity(g, a, cols).numpy() == pytest.approx(k[:, [4, 0]], rel=1e-12)


def test_zero_gradient_has_cosine_zero():
    g = torch.tensor([[1.0, -1.0], [0.0, 0.0]], dtype=torch.float64)
    a = torch.tensor([[1.0, 2.0], [1.0, 0.5]], dtype=torch.float64)
    s = gradient_cosine_similarity(g, a)
    assert s.numpy() == pytest.approx(np.array([[1.0, 0.5], [0.5, 0.5]]), abs=1e-14)


# ---------------------------------------------------------------------------------------------------
# graph cut
# ---------------------------------------------------------------------------------------------------


def _graph_cut(k: np.ndarray, s: list[int], lam: float) -> float:
    """F(S) = lam sum_{i in V, j in S} s_ij - sum_{i, j in S} s_ij, from its definition."""
    s = list(s)
    return lam * k[:, s].sum() - k[np.ix_(s, s)].sum()


@pytest.mark.parametrize("lam", [1.0, 0.3, 2.5])
def test_graph_cut_greedy_is_the_greedy_of_the_set_function(lam):
    probs, y, e, ls = _fixture(n=10, seed=1)
    g, a = grad_factors(probs, y, e, ls)
    kern = _cos_kernel(_dense(probs, y, e, ls))
    picked, gains = graph_cut_greedy(g, a, 6, lam, torch.Generator().manual_seed(0))
    sel: list[int] = []
    for t in range(6):
        vals = {x: _graph_cut(kern, sel + [x], lam) - _graph_cut(kern, sel, lam) for x in range(10) if x not in sel}
        best = max(vals, key=vals.get)
        assert int(picked[t]) == best
        assert float(gains[t]) == pytest.approx(vals[best], rel=1e-10)
        sel.append(best)
    # brute force: the first pick is the best single element
    assert int(picked[0]) == max(range(10), key=lambda x: _graph_cut(kern, [x], lam))


def test_graph_cut_ties_are_broken_at_random():
    # four identical gradients: every order is a tie, and different seeds pick different first elements
    g = torch.tensor([[0.5, -0.5]] * 4, dtype=torch.float64)
    a = torch.ones(4, 3, dtype=torch.float64)
    firsts = {int(graph_cut_greedy(g, a, 1, 1.0, torch.Generator().manual_seed(s))[0][0]) for s in range(20)}
    assert len(firsts) > 1


# ---------------------------------------------------------------------------------------------------
# log determinant
# ---------------------------------------------------------------------------------------------------


def _logdet(k: np.ndarray, s: list[int], ridge: float) -> float:
    if not s:
        return 0.0
    sign, val = np.linalg.slogdet(k[np.ix_(s, s)] + ridge * np.eye(len(s)))
    assert sign > 0
    return float(val)


@pytest.mark.parametrize("ridge", [1e-3, 0.5])
def test_logdet_greedy_is_the_greedy_of_log_det(ridge):
    probs, y, e, ls = _fixture(n=10, seed=2)
    g, a = grad_factors(probs, y, e, ls)
    kern = _cos_kernel(_dense(probs, y, e, ls))
    picked, gains = logdet_greedy(g, a, 7, ridge, torch.Generator().manual_seed(3))
    # every singleton ties (unit diagonal): the greedy's first pick is a random one; from there on it is unique
    sel = [int(picked[0])]
    assert float(gains[0]) == pytest.approx(np.log(1 + ridge))
    for t in range(1, 7):
        vals = {x: _logdet(kern, sel + [x], ridge) - _logdet(kern, sel, ridge) for x in range(10) if x not in sel}
        best = max(vals, key=vals.get)
        assert int(picked[t]) == best
        assert float(gains[t]) == pytest.approx(vals[best], rel=1e-8, abs=1e-10)
        sel.append(best)
    # the sum of the gains is log det of the picked set
    assert float(gains.sum()) == pytest.approx(_logdet(kern, sel, ridge), rel=1e-8)


def test_logdet_best_pair_given_the_first_pick_by_brute_force():
    probs, y, e, ls = _fixture(n=8, seed=4)
    g, a = grad_factors(probs, y, e, ls)
    kern = _cos_kernel(_dense(probs, y, e, ls))
    picked, _ = logdet_greedy(g, a, 2, 1e-3, torch.Generator().manual_seed(0))
    first = int(picked[0])
    best = max((x for x in range(8) if x != first), key=lambda x: _logdet(kern, [first, x], 1e-3))
    assert int(picked[1]) == best
    # the second pick is the least similar to the first (2x2 determinant 1 - s^2 with unit diagonal)
    others = [x for x in range(8) if x != first]
    assert best == min(others, key=lambda x: kern[first, x])


def test_logdet_past_the_kernels_rank_stays_finite_and_picks_distinct():
    # 2 classes, d=1 and no bias: features g (x) e in a 1-dim space (g sums to 0), kernel rank <= 2
    probs, y, e, ls = _fixture(n=12, c=2, d=1, seed=5)
    g, a = grad_factors(probs, y, e, ls, bias=False)
    picked, gains = logdet_greedy(g, a, 8, 1e-3, torch.Generator().manual_seed(0))
    assert torch.unique(picked).numel() == 8
    assert bool(torch.isfinite(gains).all()) and float(gains.min()) >= np.log(1e-3) - 1e-9


# ---------------------------------------------------------------------------------------------------
# GradMatch: OMP with non-negative weights
# ---------------------------------------------------------------------------------------------------


def _omp_reference(f: np.ndarray, k: int, lam: float) -> tuple[list[int], np.ndarray]:
    """OMP on explicit features: residual projections, ridge refits by numpy, final non-negative ridge fit by
    NNLS on the stacked system [F_S^T; sqrt(lam) I] w = [b; 0]."""
    b = f.sum(axis=0)
    r = b.copy()
    sel: list[int] = []
    for _ in range(k):
        p = f @ r
        p[sel] = -np.inf
        sel.append(int(np.argmax(p)))
        fs = f[sel]
        w = np.linalg.solve(fs @ fs.T + lam * np.eye(len(sel)), fs @ b)
        r = b - fs.T @ w
    fs = f[sel]
    stacked = np.vstack([fs.T, np.sqrt(lam) * np.eye(k)])
    w, _ = scipy.optimize.nnls(stacked, np.concatenate([b, np.zeros(k)]))
    return sel, w


@pytest.mark.parametrize("lam", [1.0, 0.05])
def test_omp_matches_a_numpy_reference(lam):
    probs, y, e, ls = _fixture(n=12, c=3, d=3, seed=6)
    g, a = grad_factors(probs, y, e, ls)
    f = _dense(probs, y, e, ls)
    picked, w = omp_nonneg(g, a, 5, lam, torch.Generator().manual_seed(0))
    sel, w_ref = _omp_reference(f, 5, lam)
    assert picked.tolist() == sel
    assert w.numpy() == pytest.approx(w_ref, abs=1e-8)
    assert bool((w >= 0).all())


def _omp_previous(g, a, k, lam, generator):
    """The previous straightforward implementation of omp_nonneg (kept as a reference for the fast path): per
    step a triangular solve for the new Cholesky row, a full Cholesky solve of the ridge refit, the residual
    from the factors and every candidate's projection on it; the final fit by scipy's Lawson-Hanson NNLS."""
    n = g.shape[0]
    perm = torch.randperm(n, generator=generator)
    g, a = g[perm].double(), a[perm].double()
    target = g.T @ a
    p0 = ((g @ target) * a).sum(dim=1)
    proj = p0.clone()
    chol = torch.zeros(k, k, dtype=torch.float64)
    taken = torch.zeros(n, dtype=torch.bool)
    picked = torch.empty(k, dtype=torch.int64)
    for t in range(k):
        j = int(torch.argmax(proj.masked_fill(taken, float("-inf"))))
        picked[t] = j
        taken[j] = True
        kcol = (g[picked[:t]] @ g[j]) * (a[picked[:t]] @ a[j])
        kjj = float((g[j] @ g[j]) * (a[j] @ a[j]))
        if t:
            row = torch.linalg.solve_triangular(chol[:t, :t], kcol[:, None], upper=False).flatten()
            chol[t, :t] = row
            chol[t, t] = math.sqrt(max(kjj + lam - float(row @ row), lam))
        else:
            chol[0, 0] = math.sqrt(kjj + lam)
        w = torch.cholesky_solve(p0[picked[: t + 1], None], chol[: t + 1, : t + 1]).flatten()
        resid = target - g[picked[: t + 1]].T @ (w[:, None] * a[picked[: t + 1]])
        proj = ((g @ resid) * a).sum(dim=1)
    rhs = torch.linalg.solve_triangular(chol, p0[picked][:, None], upper=False).flatten().numpy()
    w_nn, _ = scipy.optimize.nnls(chol.numpy().T, rhs, maxiter=max(50 * k, 1000))
    return perm[picked], torch.from_numpy(w_nn)


@pytest.mark.parametrize("block", [3, 128])
@pytest.mark.parametrize("lam", [0.5, 0.02])
def test_omp_fast_path_matches_the_previous_implementation(block, lam, monkeypatch):
    # block 3: many blocked Schur updates and row compactions within 30 picks of 70
    monkeypatch.setattr(SM, "_BLOCK", block)
    probs, y, e, ls = _fixture(n=70, c=4, d=6, seed=11)
    g, a = grad_factors(probs, y, e, ls)
    picked, w = omp_nonneg(g, a, 30, lam, torch.Generator().manual_seed(2))
    ref_picked, ref_w = _omp_previous(g, a, 30, lam, torch.Generator().manual_seed(2))
    assert picked.tolist() == ref_picked.tolist()
    assert w.numpy() == pytest.approx(ref_w.numpy(), rel=1e-7, abs=1e-9)


def test_nnls_gram_matches_scipy_nnls():
    rng = np.random.default_rng(3)
    for m, p in [(40, 25), (30, 60)]:
        f = rng.normal(size=(m, p))
        b = rng.normal(size=p)
        w = nnls_gram(torch.from_numpy(f @ f.T + 0.1 * np.eye(m)), torch.from_numpy(f @ b)).numpy()
        stacked = np.vstack([f.T, np.sqrt(0.1) * np.eye(m)])
        ref, _ = scipy.optimize.nnls(stacked, np.concatenate([b, np.zeros(m)]))
        assert 0 < int((ref == 0).sum()) < m
        assert w == pytest.approx(ref, abs=1e-10)


def test_logdet_and_graph_cut_blocked_and_dense_paths_agree(monkeypatch):
    probs, y, e, ls = _fixture(n=40, c=3, d=5, seed=12)
    g, a = grad_factors(probs, y, e, ls)
    kern = _cos_kernel(_dense(probs, y, e, ls))
    ld = logdet_greedy(g, a, 25, 1e-3, torch.Generator().manual_seed(0))
    gc = graph_cut_greedy(g, a, 25, 1.0, torch.Generator().manual_seed(0))
    monkeypatch.setattr(SM, "_BLOCK", 2)
    monkeypatch.setattr(SM, "_DENSE_MAX_N", 0)  # graph cut: a kernel column per pick
    ld2 = logdet_greedy(g, a, 25, 1e-3, torch.Generator().manual_seed(0))
    gc2 = graph_cut_greedy(g, a, 25, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(ld[0], ld2[0]) and ld[1].numpy() == pytest.approx(ld2[1].numpy(), rel=1e-9)
    assert torch.equal(gc[0], gc2[0]) and gc[1].numpy() == pytest.approx(gc2[1].numpy(), rel=1e-9)
    # and the blocked log-det gains still sum to log det of the picked set
    assert float(ld2[1].sum()) == pytest.approx(_logdet(kern, ld2[0].tolist(), 1e-3), rel=1e-8)


def test_omp_weights_satisfy_the_nonnegative_ridge_kkt_conditions():
    probs, y, e, ls = _fixture(n=15, c=3, d=3, seed=7)
    g, a = grad_factors(probs, y, e, ls)
    f = _dense(probs, y, e, ls)
    lam = 0.2
    picked, w = omp_nonneg(g, a, 6, lam, torch.Generator().manual_seed(1))
    fs, b, w = f[picked.numpy()], f.sum(axis=0), w.numpy()
    grad = 2 * (fs @ (fs.T @ w - b) + lam * w)  # gradient of ||F_S^T w - b||^2 + lam ||w||^2
    assert grad[w > 1e-12] == pytest.approx(0.0, abs=1e-8)  # stationary on the support
    assert bool((grad[w <= 1e-12] >= -1e-8).all())  # no descent into the feasible cone


def test_omp_exact_recovery_with_tiny_ridge():
    # b is a positive combination of rows 0 and 1 of an orthogonal design: OMP picks them and recovers the weights
    f = np.zeros((4, 4))
    f[0, 0], f[1, 1], f[2, 2], f[3, 3] = 3.0, 1.0, 1.0, 1.0
    # features are g (x) a: one class coordinate, a the rest
    g = torch.ones(4, 1, dtype=torch.float64)
    a = torch.from_numpy(f)
    # the sum of the rows is b = (3, 1, 1, 1): row 0 projects 9, the others 1
    picked, w = omp_nonneg(g, a, 4, 1e-9, torch.Generator().manual_seed(0))
    assert int(picked[0]) == 0
    # each row i alone reproduces its own coordinate of b: w_i f_ii = b_i, i.e. w = 1 each
    order = torch.argsort(picked)
    assert w[order].numpy() == pytest.approx([1.0] * 4, rel=1e-6)


def test_gradmatch_select_replaces_zero_weight_picks_with_weight_one():
    # rows 0,1 point along the mean gradient, rows 2,3,4 against it: the third pick gets NNLS weight 0
    g = torch.ones(5, 1, dtype=torch.float64)
    a = torch.tensor([[3.0, 0.0], [2.0, 1.0], [-1.0, 0.0], [-1.0, -0.2], [-0.5, 0.0]], dtype=torch.float64)
    picked, w = omp_nonneg(g, a, 3, 1e-6, torch.Generator().manual_seed(0))
    assert set(picked[:2].tolist()) == {0, 1} and float(w[2]) == 0.0
    kept, wk = gradmatch_select(g, a, 3, 1e-6, torch.Generator().manual_seed(0))
    assert set(kept[:2].tolist()) == {0, 1} and int(kept[2]) in {3, 4}  # a random *unpicked* row
    assert float(wk[2]) == 1.0
    assert wk[:2].numpy() == pytest.approx(w[:2].numpy(), rel=1e-6)


# ---------------------------------------------------------------------------------------------------
# the pruners on a real tiny proxy
# ---------------------------------------------------------------------------------------------------

N = 200


def _prepared(name, proxy_context, ratio=0.4, seed=0, **opts):
    p = create_pruner(name, num_samples=N, num_epochs=3, prune_ratio=ratio, seed=seed, **opts)
    p.prepare(proxy_context(N))
    return p


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("balanced", [True, False])
def test_budgets_exact_and_class_budgets(name, balanced, proxy_context):
    p = _prepared(name, proxy_context, 0.55, class_balanced=balanced)
    labels = proxy_context(N).labels
    assert p.subset.numel() == 90 and torch.unique(p.subset).numel() == 90
    if balanced:
        assert torch.bincount(labels[p.subset], minlength=4).tolist() == class_budgets(labels, 90, 4).tolist()
    sel = p.plan_epoch(0)
    if get_pruner_class(name).uses_weights:
        assert sel.weights is not None and bool((sel.weights > 0).all())
        assert float(sel.weights.sum()) == pytest.approx(90.0, rel=1e-5)  # normalised to mean 1
    else:
        assert sel.weights is None


def test_craig_is_facility_location_on_gradients(proxy_context):
    ctx = proxy_context(N)
    c = create_pruner("craig", num_samples=N, num_epochs=3, prune_ratio=0.5, seed=3)
    f = create_pruner("facility-location", num_samples=N, num_epochs=3, prune_ratio=0.5, seed=3, features="gradients")
    e = create_pruner("facility-location", num_samples=N, num_epochs=3, prune_ratio=0.5, seed=3)
    for p in (f, e):  # generators are keyed by the pruner's name: give all three the same draws
        p.generator.set_state(c.generator.get_state())
        p.prepare(ctx)
    c.prepare(ctx)
    assert "features" not in {x.name for x in dataclasses.fields(get_pruner_class("craig").Options)}
    assert torch.equal(c.subset, f.subset) and torch.equal(c.subset_weights, f.subset_weights)
    assert set(c.subset.tolist()) != set(e.subset.tolist())


def test_gradmatch_subset_matches_the_class_gradients(proxy_context):
    """Per class, the weighted kept gradients approximate the class's summed gradient better than a random subset
    of the same size with uniform weights (each at its best common scale: the kept weights are normalised). A weak
    ridge: this proxy's gradients are small (||f||^2 ~ 0.2), and the default lam = 0.5 shrinks the fit strongly."""
    p = _prepared("gradmatch", proxy_context, 0.5, lam=1e-3)
    ctx = proxy_context(N)
    from prunebench.pruners.base import ProxyRequest

    rec = ctx.proxy(ProxyRequest(epochs=p.options.proxy_epochs, seeds=(0,), record=()))
    f = S.last_layer_grad_features(
        torch.as_tensor(rec["probs"][0]), ctx.labels, torch.as_tensor(rec["embeddings"][0]), rec["label_smoothing"]
    ).double()
    w = torch.zeros(N, dtype=torch.float64)
    w[p.subset] = p.subset_weights.double()
    gen = torch.Generator().manual_seed(0)
    for c in range(4):
        members = torch.nonzero(ctx.labels == c).flatten()
        kept = members[w[members] > 0]
        target = f[members].sum(0)
        rand = members[torch.randperm(members.numel(), generator=gen)[: kept.numel()]]
        err = _scaled_error(f[kept].T @ w[kept], target)
        err_rand = _scaled_error(f[rand].sum(0), target)
        assert err < 0.7 * err_rand, (c, err, err_rand)


def _scaled_error(v: torch.Tensor, t: torch.Tensor) -> float:
    """min_s ||s v - t|| / ||t||."""
    s = float(v @ t) / float(v @ v)
    return float((s * v - t).norm() / t.norm())


@pytest.mark.parametrize(
    "name,bad",
    [
        ("gradmatch", {"lam": 0.0}),
        ("gradmatch", {"lam": float("inf")}),
        ("graphcut", {"lam": -1.0}),
        ("logdet", {"ridge": 0.0}),
        ("logdet", {"ridge": float("nan")}),
        ("craig", {"proxy_epochs": 0}),
    ],
)
def test_bad_options_rejected(name, bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        create_pruner(name, num_samples=N, num_epochs=3, prune_ratio=0.5, seed=0, **bad)


@pytest.mark.parametrize("name", NEW)
def test_method_table_metadata(name):
    cls = get_pruner_class(name)
    assert cls.family in ("submodular", "gradient matching") and cls.paper and cls.defaults_source
    assert cls.cost_profile == ("proxy run",) and set(cls.cost_profile) <= set(COST_PROFILE_ITEMS)
    assert cls.uses_weights == (name in ("craig", "gradmatch"))
    assert cls.granularity == "static"
