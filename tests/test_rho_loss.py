"""RHO-LOSS: selection against a brute-force top-k of train - irreducible losses, the holdout split, its cost."""

from __future__ import annotations

import math

import pytest
import torch

from prunebench.errors import ConfigError
from prunebench.harness.loop import train
from prunebench.pruners import CandidateBatch, PruneContext, create_pruner
from tests.conftest import fast_config


class _Proxy:
    """Hand-made IL-model outputs; remembers the requests."""

    def __init__(self, probs):
        self.probs, self.requests = probs, []

    def __call__(self, req):
        self.requests.append(req)
        return {"probs": self.probs[None], "label_smoothing": 0.0, "head_bias": True}


def _setup(n=40, c=3, p=0.5, seed=0, **opts):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, c, (n,), generator=g)
    probs = torch.softmax(torch.randn(n, c, generator=g), dim=1)
    pr = create_pruner("rho-loss", num_samples=n, num_epochs=2, prune_ratio=p, seed=seed, **opts)
    proxy = _Proxy(probs)
    pr.prepare(PruneContext(labels=labels, num_classes=c, proxy=proxy))
    return pr, proxy, labels, probs


def test_holdout_is_trained_on_by_the_il_model_and_never_by_the_target():
    pr, proxy, labels, probs = _setup(n=40, holdout=0.25)
    req = proxy.requests[-1]
    held = set(req.train_on.tolist())
    assert len(held) == 10 and req.epochs == 2 and req.seeds == (0,)  # il_epochs default: the run's epochs
    for e in range(3):
        plan = set(pr.plan_epoch(e).indices.tolist())
        assert len(plan) == 30 and not plan & held and plan | held == set(range(40))
    other, *_ = _setup(n=40, holdout=0.25, seed=1)
    assert set(other.holdout_idx.tolist()) != held  # the split follows the run seed


def test_irreducible_loss_is_the_il_models_cross_entropy():
    pr, _, labels, probs = _setup()
    expected = [-math.log(float(probs[i, labels[i]])) for i in range(len(labels))]
    assert pr.il.tolist() == pytest.approx(expected, rel=1e-6)


def test_selection_is_the_brute_force_topk_of_reducible_loss():
    pr, _, labels, probs = _setup(n=40, p=0.5, holdout=0.2)
    g = torch.Generator().manual_seed(7)
    idx = pr.plan_epoch(0).indices[:16]
    logits = torch.randn(16, 3, generator=g) * 2
    y = labels[idx]
    sel = pr.select_batch(CandidateBatch(idx, torch.rand(16), logits, y, batch_size=10))
    k = round(pr.fraction * 16)
    assert pr.fraction == pytest.approx(0.5 / 0.8) and k == 10 and sel.weights is None
    red = []
    for j in range(16):  # CE by hand: log sum exp z - z_y, minus the IL loss
        z = logits[j].tolist()
        ce = math.log(sum(math.exp(v) for v in z)) - z[int(y[j])]
        red.append(ce + math.log(float(probs[idx[j], y[j]])))
    expected = sorted(range(16), key=lambda j: -red[j])[:k]
    assert sorted(sel.keep.tolist()) == sorted(expected)


def test_candidate_batch_and_share_follow_prune_ratio_and_holdout():
    pr = create_pruner("rho-loss", num_samples=1000, num_epochs=1, prune_ratio=0.5, holdout=0.1)
    assert pr.fraction == pytest.approx(0.5 / 0.9)
    assert pr.candidate_batch_size(64) == round(64 * 0.9 / 0.5)  # 115: n_B = n_b / f
    assert pr.expected_keep_fraction() == pytest.approx(0.5)  # (1-p) N per epoch, as other methods at p
    fixed = create_pruner("rho-loss", num_samples=1000, num_epochs=1, prune_ratio=0.5, select_fraction=0.1)
    assert fixed.candidate_batch_size(32) == 320 and fixed.expected_keep_fraction() == pytest.approx(0.09)
    assert create_pruner("rho-loss", num_samples=1000, num_epochs=1).prune_ratio == 0.9  # the paper's 10%
    with pytest.raises(ConfigError, match="prune_ratio >= holdout"):
        create_pruner("rho-loss", num_samples=1000, num_epochs=1, prune_ratio=0.3, holdout=0.5)
    for bad in ({"holdout": 0.0}, {"holdout": 1.0}, {"il_epochs": 0}, {"select_fraction": 1.5}):
        with pytest.raises(ConfigError):
            create_pruner("rho-loss", num_samples=1000, num_epochs=1, prune_ratio=0.5, **bad)
    with pytest.raises(ConfigError, match="proxy run"):
        create_pruner("rho-loss", num_samples=100, num_epochs=1).prepare(PruneContext(torch.arange(100) % 2, 2))


def test_run_counts_the_il_model_and_never_trains_on_the_holdout(synthetic, tmp_path):
    n = 512
    cfg = fast_config(
        pruner="rho-loss",
        prune_ratio=0.5,
        epochs=2,
        score_cache=str(tmp_path),
        record_kept=True,
        pruner_options={"holdout": 0.25, "il_epochs": 2},
    )
    res = train(cfg, data=synthetic)
    row = res.row
    m = round(0.25 * n)
    # the IL model: 2 epochs on the holdout only, then one forward over every training sample
    assert row["scoring_samples_backprop"] == 2 * m and row["scoring_samples_forward"] == n
    assert row["scoring_cache_hit"] is False and row["scoring_proxy_runs"] == 1
    # the target: every non-holdout sample forwarded once per epoch, about (1-p) N trained per epoch
    assert row["samples_forward"] == 2 * (n - m)
    assert abs(row["samples_backprop"] - 2 * n // 2) <= 2 * 4
    holdout = create_pruner("rho-loss", num_samples=n, num_epochs=2, prune_ratio=0.5, seed=0, holdout=0.25).holdout_idx
    for e in range(2):
        kept = res.kept_mask(e)
        assert kept.shape == (n,) and kept.any() and not kept[holdout.numpy()].any()
    again = train(cfg, data=synthetic).row  # the IL model's losses from the cache: the same cost
    assert again["scoring_cache_hit"] is True
    assert again["scoring_samples_backprop"] == 2 * m and again["scoring_samples_forward"] == n
    assert again["final_train_loss"] == row["final_train_loss"]


def test_proxy_rejects_a_bad_train_on(proxy_context):
    from prunebench.pruners import ProxyRequest

    ctx = proxy_context(200)
    for bad in (torch.tensor([0, 0]), torch.tensor([200]), torch.tensor([-1]), torch.zeros(0, dtype=torch.int64)):
        with pytest.raises(ConfigError, match="train_on"):
            ctx.proxy(ProxyRequest(epochs=1, train_on=bad))
