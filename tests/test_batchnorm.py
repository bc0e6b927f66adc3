"""BatchNorm statistics of a batch method's backprop step (harness/batchnorm.py, orderdp-fresh's bn_stats),
against normalisations computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunebench.errors import ConfigError
from prunebench.harness import TrainConfig, Trainer
from prunebench.harness.batchnorm import CandidateBNStats


def _norm(x: np.ndarray, mean: np.ndarray, var: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    sh = (1, -1, 1, 1)
    return (x - mean.reshape(sh)) / np.sqrt(var.reshape(sh) + eps) * w.reshape(sh) + b.reshape(sh)


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))  # numpy's var is the biased one


def test_kept_forward_uses_the_candidate_batch_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4))
    with torch.no_grad():
        for bn in (model[0], model[2]):
            bn.weight.uniform_(0.5, 2.0), bn.bias.uniform_(-1.0, 1.0)
    model.train()
    bn1, conv, bn2 = model
    xc = torch.randn(10, 3, 6, 6, dtype=torch.float64) * 2 + 1
    model.double()
    keep = torch.tensor([7, 2, 5])
    stats = CandidateBNStats(model)
    with torch.no_grad(), stats.record():
        model(xc)

    # by hand: the candidate batch's per-layer mean and biased variance, then the kept rows through them
    w1, b1, w2, b2 = (t.detach().numpy() for t in (bn1.weight, bn1.bias, bn2.weight, bn2.bias))
    xc_np = xc.numpy()
    m1, v1 = _moments(xc_np)
    hc = F.conv2d(torch.from_numpy(_norm(xc_np, m1, v1, w1, b1, bn1.eps)), conv.weight).detach().numpy()
    m2, v2 = _moments(hc)
    xk = xc[keep].clone().requires_grad_(True)
    want1 = _norm(xk.detach().numpy(), m1, v1, w1, b1, bn1.eps)
    hk = F.conv2d(torch.from_numpy(want1), conv.weight).detach().numpy()
    want2 = _norm(hk, m2, v2, w2, b2, bn2.eps)

    # running statistics: updated once, by the candidate pass (unbiased variance, momentum 0.1)
    n1 = xc_np.shape[0] * 36
    np.testing.assert_allclose(bn1.running_mean.numpy(), 0.1 * m1, rtol=1e-10)
    np.testing.assert_allclose(bn1.running_var.numpy(), 0.9 + 0.1 * v1 * n1 / (n1 - 1), rtol=1e-10)
    running = [t.clone() for t in (bn1.running_mean, bn1.running_var, bn2.running_mean, bn2.running_var)]

    outs = {}
    hooks = [m.register_forward_hook(lambda m, a, o, k=k: outs.__setitem__(k, o)) for k, m in ((1, bn1), (2, bn2))]
    with stats.apply():
        out = model(xk)
        out[:, :, 0, 0].sum().backward()
    for h in hooks:
        h.remove()
    np.testing.assert_allclose(outs[1].detach().numpy(), want1, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(outs[2].detach().numpy(), want2, rtol=1e-9, atol=1e-12)
    # the kept batch's own statistics would give something else
    own = _norm(xk.detach().numpy(), *_moments(xk.detach().numpy()), w1, b1, bn1.eps)
    assert np.abs(own - want1).max() > 1e-2
    # the gradient flows through the kept batch's own statistics, scaled by r = s_k / s_c (Batch
    # Renormalization): for L = sum(G * bn1(x)), by hand, dL/dx = w / s_c (G - mean G - xh mean(G xh))
    # with xh = (x - mu_k) / s_k and means per channel
    xk2 = xc[keep].clone().requires_grad_(True)
    g = torch.randn(xk2.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with stats.apply():
        (bn1(xk2) * g).sum().backward()
    x2, gn = xk2.detach().numpy(), g.numpy()
    mk, vk = _moments(x2)
    sh = (1, -1, 1, 1)
    xh = (x2 - mk.reshape(sh)) / np.sqrt(vk.reshape(sh) + bn1.eps)
    want_grad = (w1 / np.sqrt(v1 + bn1.eps)).reshape(sh) * (
        gn - gn.mean(axis=(0, 2, 3), keepdims=True) - xh * (gn * xh).mean(axis=(0, 2, 3), keepdims=True)
    )
    np.testing.assert_allclose(xk2.grad.numpy(), want_grad, rtol=1e-8, atol=1e-12)
    assert xk.grad is not None and conv.weight.grad is not None
    # the kept pass leaves the running statistics and the train mode alone
    for a, b in zip(running, (bn1.running_mean, bn1.running_var, bn2.running_mean, bn2.running_var)):
        assert torch.equal(a, b)
    assert bn1.training and bn2.training and bn1.running_mean is not None


def _record_bn_calls(trainer: Trainer) -> list[tuple[bool, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]]:
    bn = trainer.model.stem[1]
    calls = []

    def hook(m, args, out):
        if not trainer.model.training:  # evaluation
            return
        calls.append(
            (
                torch.is_grad_enabled(),
                args[0].detach().float().numpy(),
                out.detach().float().numpy(),
                m.weight.detach().numpy().copy(),
                m.bias.detach().numpy().copy(),
                m.eps,
            )
        )

    bn.register_forward_hook(hook)
    return calls


@pytest.mark.parametrize("mode", ["candidates", "kept"])
def test_loop_kept_forward_bn_statistics(mode):
    cfg = dict(
        dataset="synthetic:n=200",
        model="cnn-small",
        epochs=1,
        batch_size=32,
        tracking=False,
        pruner="orderdp-fresh",
        prune_ratio=0.5,
        precision="fp32",
        channels_last=False,
        pruner_options={"candidate_ratio": 0.8, "bn_stats": mode},
    )
    trainer = Trainer(TrainConfig(**cfg))
    calls = _record_bn_calls(trainer)
    trainer.run()
    pairs = [(calls[i - 1], calls[i]) for i in range(1, len(calls)) if calls[i][0] and not calls[i - 1][0]]
    assert len(pairs) >= 3
    steps = sum(c[0] for c in calls)
    if mode == "candidates":  # one backprop step right after each candidate forward
        assert steps == len(pairs) == sum(not c[0] for c in calls)
    for (_, xc, _, _, _, _), (_, xk, out, w, b, eps) in pairs:
        # the kept samples' inputs are rows of the candidate batch's (same augmentation)
        rows = (np.abs(xk[:, None] - xc[None]).reshape(len(xk), len(xc), -1).max(-1) < 1e-6).any(1)
        assert rows.all()
        stats = _moments(xc) if mode == "candidates" else _moments(xk)
        np.testing.assert_allclose(out, _norm(xk, *stats, w, b, eps), rtol=1e-4, atol=1e-4)


def test_candidate_bn_stats_refused_under_compile():
    with pytest.raises(ConfigError, match="bn_stats='candidates'"):
        Trainer(
            TrainConfig(
                dataset="synthetic:n=64",
                model="cnn-small",
                epochs=1,
                batch_size=16,
                tracking=False,
                pruner="orderdp-fresh",
                prune_ratio=0.5,
                compile=True,
                pruner_options={"bn_stats": "candidates"},
            )
        )
