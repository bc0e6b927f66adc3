"""GLISTER: the greedy against a brute force with autograd on a real linear head, and the pruner."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from prunebench.errors import ConfigError
from prunebench.pruners import PruneContext, create_pruner
from prunebench.pruners.glister import glister_greedy


def _fixture(n=14, d=3, c=3, seed=0, bias=True):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(c, d, generator=g, dtype=torch.float64)
    b = torch.randn(c, generator=g, dtype=torch.float64) if bias else torch.zeros(c, dtype=torch.float64)
    labels = torch.randint(0, c, (n,), generator=g)
    probs = torch.softmax(emb @ w.T + b, dim=1)
    return emb, w, b, labels, probs


def _head_grads(emb, labels, w, b, ls, bias):
    """Per-sample gradients [n, C*d (+ C)] of the loss w.r.t. the head's weight (and bias), by autograd."""
    out = []
    for i in range(len(labels)):
        wi, bi = w.clone().requires_grad_(True), b.clone().requires_grad_(bias)
        loss = F.cross_entropy((emb[i : i + 1] @ wi.T + bi), labels[i : i + 1], label_smoothing=ls)
        gs = torch.autograd.grad(loss, [wi, bi] if bias else [wi])
        out.append(torch.cat([x.flatten() for x in gs]))
    return torch.stack(out)


def _val_grad(emb, labels, w, b, ls, bias):
    wv, bv = w.clone().requires_grad_(True), b.clone().requires_grad_(bias)
    loss = F.cross_entropy(emb @ wv.T + bv, labels, label_smoothing=ls)  # the mean over the validation set
    gs = torch.autograd.grad(loss, [wv, bv] if bias else [wv])
    return torch.cat([x.flatten() for x in gs])


def _brute(emb, labels, w, b, k, eta, ls, bias, per_round=1):
    """GLISTER's greedy: gains g_e(theta) . grad L_V(theta_S), theta_S = theta - eta mean_{S} g(theta)."""
    grads = _head_grads(emb, labels, w, b, ls, bias)
    d = emb.shape[1]
    picked: list[int] = []
    while len(picked) < k:
        if picked:
            step = grads[picked].mean(dim=0)
            w_s = w - eta * step[: w.numel()].view_as(w)
            b_s = b - eta * step[w.numel() :] if bias else b
        else:
            w_s, b_s = w, b
        gains = grads @ _val_grad(emb, labels, w_s, b_s, ls, bias)
        gains[picked] = -float("inf")
        m = min(per_round, k - len(picked))
        picked += torch.topk(gains, m).indices.tolist()
    assert d == emb.shape[1]
    return picked


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("ls", [0.0, 0.1])
@pytest.mark.parametrize("eta", [0.1, 2.0])
def test_greedy_matches_brute_force_with_autograd(bias, ls, eta):
    emb, w, b, labels, probs = _fixture(bias=bias)
    got = glister_greedy(probs.float(), emb.float(), labels, 8, eta, ls, bias)
    assert got.tolist() == _brute(emb, labels, w, b, 8, eta, ls, bias)


def test_rounds_pick_several_per_taylor_update():
    emb, w, b, labels, probs = _fixture(n=16, seed=3)
    got = glister_greedy(probs, emb, labels, 9, 1.0, 0.0, True, rounds=3)
    assert got.tolist() == _brute(emb, labels, w, b, 9, 1.0, 0.0, True, per_round=3)


def test_the_update_matters_deepcore_static_topk_differs():
    """DeepCore's misspelt update_state leaves the validation gradient at theta: its picks are the static top-k
    of the first gains. The paper's greedy moves theta_S and picks otherwise on this fixture."""
    emb, w, b, labels, probs = _fixture(n=14, seed=0)
    greedy = glister_greedy(probs, emb, labels, 8, 2.0, 0.0, True)
    grads = _head_grads(emb, labels, w, b, 0.0, True)
    static = torch.topk(grads @ _val_grad(emb, labels, w, b, 0.0, True), 8).indices
    assert sorted(greedy.tolist()) != sorted(static.tolist())
    assert greedy[0] == static[0]  # the first pick is the same (theta_S = theta)


class _Proxy:
    def __init__(self, probs, emb, ls=0.0):
        self.probs, self.emb, self.ls = probs, emb, ls

    def __call__(self, req):
        return {
            "probs": self.probs[None].float(),
            "embeddings": self.emb[None].float(),
            "label_smoothing": self.ls,
            "head_bias": True,
        }


def test_pruner_runs_the_greedy_within_each_class_on_the_class_as_validation_set():
    emb, w, b, _, _ = _fixture(n=18, seed=1)
    labels = torch.arange(18) % 3
    probs = torch.softmax(emb @ w.T + b, dim=1)
    p = create_pruner("glister", num_samples=18, num_epochs=1, prune_ratio=0.5, seed=0, eta=0.5)
    p.prepare(PruneContext(labels=labels, num_classes=3, proxy=_Proxy(probs, emb)))
    expected = []
    for c in range(3):
        idx = torch.nonzero(labels == c).flatten()
        expected += idx[_brute(emb[idx], labels[idx], w, b, 3, 0.5, 0.0, True)].tolist()
    assert p.subset.tolist() == expected
    g = create_pruner("glister", num_samples=18, num_epochs=1, prune_ratio=0.5, seed=0, eta=0.5, class_balanced=False)
    g.prepare(PruneContext(labels=labels, num_classes=3, proxy=_Proxy(probs, emb)))
    assert g.subset.tolist() == _brute(emb, labels, w, b, 9, 0.5, 0.0, True)


def test_options_validated():
    for bad in ({"eta": 0.0}, {"eta": float("nan")}, {"rounds": 0}):
        with pytest.raises(ConfigError):
            create_pruner("glister", num_samples=20, num_epochs=1, prune_ratio=0.5, **bad)
