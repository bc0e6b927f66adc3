"""DeepFool: the perturbation against closed forms, the pruner's selection, the proxy record's cost and cache."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from prunebench.errors import ConfigError
from prunebench.harness.deepfool import deepfool
from prunebench.harness.loop import train
from prunebench.pruners import PruneContext, create_pruner
from tests.conftest import fast_config


def _linear(w: torch.Tensor, b: torch.Tensor) -> torch.nn.Module:
    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(w.shape[1], w.shape[0]))
    with torch.no_grad():
        m[1].weight.copy_(w)
        m[1].bias.copy_(b)
    return m.eval().requires_grad_(False)


def _closed_form(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """min_{k != k0} |f_k0 - f_k| / ||w_k0 - w_k|| for the affine f = W x + b (the nearest pairwise boundary)."""
    f = x @ w.T + b
    k0 = f.argmax(dim=1)
    d = (f - f.gather(1, k0[:, None])).abs() / (w[None, :, :] - w[k0][:, None, :]).norm(dim=2)
    d[torch.arange(len(x)), k0] = float("inf")
    return d.min(dim=1).values


def test_binary_linear_model_one_step_is_the_distance_to_the_hyperplane():
    w, b = torch.tensor([[1.0, 2.0, -1.0], [-0.5, 0.0, 1.5]]), torch.tensor([0.3, -0.2])
    x = torch.tensor([[1.0, 0.5, 0.2], [-1.0, 0.3, 2.0], [0.1, -0.4, 0.0]])
    norms, _ = deepfool(_linear(w, b), x.view(3, 1, 1, 3), max_iter=50)
    # two classes: |w_diff . x + b_diff| / ||w_diff||
    wd, bd = w[0] - w[1], b[0] - b[1]
    expected = (x @ wd + bd).abs() / wd.norm()
    assert norms.tolist() == pytest.approx(expected.tolist(), rel=1e-4)


def test_multiclass_linear_model_matches_the_closed_form():
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(5, 8, generator=g), torch.randn(5, generator=g)
    x = torch.randn(40, 8, generator=g)
    norms, _ = deepfool(_linear(w, b), x.view(40, 1, 1, 8), max_iter=50)
    assert norms.tolist() == pytest.approx(_closed_form(w, b, x).tolist(), rel=1e-3)


def test_cost_counts_one_forward_and_c_backwards_per_active_sample_and_step():
    w, b = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]), torch.zeros(3)
    x = torch.tensor([[2.0, 0.1], [0.1, 3.0]]).view(2, 1, 1, 2)
    _, cost = deepfool(_linear(w, b), x, max_iter=1)  # one step: 2 forwards + 3 backwards each (x2)
    assert cost == 2 * 1 + 2 * 3 * 2
    # a model whose prediction never changes under the step (a constant logit gap): every step on every sample
    const = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2, 2))
    with torch.no_grad():
        const[1].weight.zero_()
        const[1].bias.copy_(torch.tensor([1.0, 0.0]))
    norms, cost = deepfool(const.eval().requires_grad_(False), x, max_iter=4)
    assert cost == 4 * (2 + 2 * 2 * 2) and norms.tolist() == [0.0, 0.0]  # zero gradients: no step, no NaN


class _Proxy:
    def __init__(self, norms: torch.Tensor, labels: torch.Tensor):
        self.norms, self.labels, self.requests = norms, labels, []

    def __call__(self, req):
        self.requests.append(req)
        return {"deepfool_norm": self.norms[None], "label_smoothing": 0.0, "head_bias": True}


def test_pruner_keeps_the_smallest_norms_globally_and_per_class():
    norms = torch.tensor([0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.4])
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    proxy = _Proxy(norms, labels)
    p = create_pruner("deepfool", num_samples=8, num_epochs=1, prune_ratio=0.5, seed=0, max_iter=7)
    p.prepare(PruneContext(labels=labels, num_classes=2, proxy=proxy))
    assert sorted(p.subset.tolist()) == [1, 3, 5, 7]  # the four smallest: .1 .2 .3 .4
    req = proxy.requests[-1]
    assert req.record == ("deepfool_norm",) and req.deepfool_max_iter == 7
    cb = create_pruner("deepfool", num_samples=8, num_epochs=1, prune_ratio=0.5, seed=0, class_balanced=True)
    cb.prepare(PruneContext(labels=labels, num_classes=2, proxy=proxy))
    assert sorted(cb.subset.tolist()) == [1, 3, 5, 7]
    proxy.norms = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.9, 0.8, 0.7, 0.6])
    cb.prepare(PruneContext(labels=labels, num_classes=2, proxy=proxy))
    assert sorted(cb.subset.tolist()) == [0, 1, 6, 7]  # two per class
    with pytest.raises(ConfigError, match="max_iter"):
        create_pruner("deepfool", num_samples=8, num_epochs=1, prune_ratio=0.5, max_iter=0)


def test_run_counts_deepfool_in_the_scoring_cost_and_caches_it(synthetic, tmp_path):
    cfg = fast_config(
        pruner="deepfool",
        prune_ratio=0.5,
        epochs=1,
        score_cache=str(tmp_path),
        pruner_options={"proxy_epochs": 1, "max_iter": 3},
    )
    row = train(cfg, data=synthetic).row
    n, c = 512, synthetic.num_classes
    assert row["scoring_cache_hit"] is False and row["scoring_samples_backprop"] == 1 * n
    # the final pass (n) plus DeepFool: per active sample and step one forward and c backwards (2 each);
    # at least the first step runs on every sample, at most max_iter steps
    df = row["scoring_samples_forward"] - n
    assert (1 + 2 * c) * n <= df <= 3 * (1 + 2 * c) * n
    assert row["scoring_relative_compute"] == pytest.approx((n + df + 3 * 1 * n) / (3 * 1 * n))
    cached = train(cfg, data=synthetic).row
    assert cached["scoring_cache_hit"] is True
    assert cached["scoring_samples_forward"] == row["scoring_samples_forward"]
    assert cached["scoring_relative_compute"] == row["scoring_relative_compute"]
    assert len(list(tmp_path.glob("proxy-*.npz"))) == 1


def test_plain_requests_keep_their_cache_key(synthetic):
    """The key of a request without train_on / deepfool is the JSON of before those fields existed."""
    from prunebench.harness.config import TrainConfig
    from prunebench.harness.loop import prune_context

    cfg = TrainConfig.from_dict(fast_config(pruner="el2n", score_cache=None))
    _, runner = prune_context(cfg, synthetic, torch.device("cpu"))
    full = json.dumps(
        {"base": json.loads(runner.base_key), "model": "mlp", "epochs": 4, "proxy_seed": 1, "train_probs": True},
        sort_keys=True,
    )
    assert runner._key("mlp", 4, 1, True) == (hashlib.sha256(full.encode()).hexdigest()[:24], full)
    assert runner._key("mlp", 4, 1, True, {}) == runner._key("mlp", 4, 1, True)
    assert runner._key("mlp", 4, 1, True, {"deepfool_max_iter": 50})[0] != runner._key("mlp", 4, 1, True)[0]
