"""Pure per-sample scoring functions of the static (coreset) methods.

Each function maps recorded proxy-run quantities (softmax outputs, correctness, margins, embeddings) to
one score per sample. No randomness, no state, no selection: the selection rules live in
:mod:`prunebench.pruners.rules` and :mod:`prunebench.pruners.coverage`. Inputs are float tensors; the
sample axis is the last-but-one for ``[..., N, C]`` inputs and the last for ``[E, N]`` histories.
"""

from __future__ import annotations

import torch


def _onehot(targets: torch.Tensor, num_classes: int, dtype: torch.dtype, label_smoothing: float = 0.0) -> torch.Tensor:
    y = torch.nn.functional.one_hot(targets.long(), num_classes).to(dtype)
    if label_smoothing:
        y = y * (1.0 - label_smoothing) + label_smoothing / num_classes
    return y


def el2n(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """EL2N (Paul et al., NeurIPS 2021): ``||softmax(f(x)) - onehot(y)||_2`` per sample.

    ``probs`` is ``[..., N, C]`` (e.g. one slice per proxy seed); the result is ``[..., N]``.
    """
    return (probs - _onehot(targets, probs.shape[-1], probs.dtype)).norm(dim=-1)


def grand(
    probs: torch.Tensor,
    targets: torch.Tensor,
    embeddings: torch.Tensor,
    label_smoothing: float = 0.0,
    bias: bool = True,
) -> torch.Tensor:
    """GraNd (Paul et al., NeurIPS 2021) with DeepCore's last-layer gradient: the norm of
    ``[dl/dz, dl/dz (x) e]`` (gradient w.r.t. the classifier's bias and weight), ``z`` the logits, ``e``
    the penultimate embedding, ``l`` the training cross-entropy (with its label smoothing).

    Because ``||g (x) e|| = ||g|| ||e||`` the norm is ``||g|| sqrt(||e||^2 + 1)`` (``||g|| ||e||`` with
    ``bias=False``) and the outer product is never formed. ``probs [..., N, C]``, ``embeddings [..., N, d]``.
    """
    g = probs - _onehot(targets, probs.shape[-1], probs.dtype, label_smoothing)
    e2 = embeddings.pow(2).sum(dim=-1)
    return g.norm(dim=-1) * torch.sqrt(e2 + 1.0 if bias else e2)


def last_layer_grad_features(
    probs: torch.Tensor, targets: torch.Tensor, embeddings: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """DeepCore's last-layer gradient features ``[dl/dz, vec(dl/dz (x) e)]``, shape ``[N, C + C*d]``."""
    g = probs - _onehot(targets, probs.shape[-1], probs.dtype, label_smoothing)
    outer = (g[:, :, None] * embeddings[:, None, :]).flatten(1)
    return torch.cat([g, outer], dim=1)


def prob_margin(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``p_y - max_{c != y} p_c`` per sample (the AUM margin on softmax outputs)."""
    p_y = probs.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)
    other = probs.scatter(-1, targets.long().unsqueeze(-1), float("-inf")).amax(dim=-1)
    return p_y - other


def aum(margins: torch.Tensor) -> torch.Tensor:
    """AUM (Pleiss et al., NeurIPS 2020): the sum over epochs of the margin; ``margins [E, N] -> [N]``.

    Low (negative) AUM marks hard or mislabelled samples.
    """
    return margins.sum(dim=0)


def forgetting(correct: torch.Tensor) -> torch.Tensor:
    """Forgetting events (Toneva et al., ICLR 2019) from per-presentation correctness ``[E, N]`` (bool).

    A forgetting event is a correct -> incorrect transition between consecutive presentations. Samples
    never classified correctly count as the most forgotten: they get ``E``, more than the at most
    ``floor(E/2)`` events any learned sample can have.
    """
    c = correct.bool()
    events = (c[:-1] & ~c[1:]).sum(dim=0).to(torch.float32)
    never = ~c.any(dim=0)
    return torch.where(never, torch.full_like(events, float(c.shape[0])), events)


def least_confidence(probs: torch.Tensor) -> torch.Tensor:
    """Uncertainty as ``1 - max_c p_c`` (Coleman et al., ICLR 2020); higher is more uncertain."""
    return 1.0 - probs.amax(dim=-1)


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Predictive entropy ``-sum_c p_c log p_c`` (``0 log 0 = 0``); higher is more uncertain."""
    return -torch.special.xlogy(probs, probs).sum(dim=-1)


def margin(probs: torch.Tensor) -> torch.Tensor:
    """Top-1 minus top-2 probability; *lower* is more uncertain."""
    top2 = probs.topk(2, dim=-1).values
    return top2[..., 0] - top2[..., 1]


def tdds(train_probs: torch.Tensor, window: int, decay: float, eps: float = 1e-8) -> torch.Tensor:
    """TDDS (Zhang et al., CVPR 2024) from per-epoch softmax outputs ``[T, N, C] -> [N]``.

    Per epoch transition ``a_t = sum_c |p_{t+1} (log(p_{t+1} + eps) - log(p_t + eps))|``. For each window
    ``k = 0..T-W`` of ``W`` epochs (``W-1`` transitions) take the norm of the deviations of the ``a_t``
    from their window mean; weight window ``k`` by ``decay (1-decay)^(T-W-k)`` and sum (as the released
    code, github zhangxin-xd/Dataset-Pruning-TDDS). Higher scores are kept.
    """
    t = train_probs.shape[0]
    if not 2 <= window <= t:
        raise ValueError(f"tdds needs 2 <= window <= epochs recorded, got window={window}, epochs={t}")
    logp = torch.log(train_probs + eps)
    a = (train_probs[1:] * (logp[1:] - logp[:-1])).abs().sum(dim=-1)  # [T-1, N]
    wins = a.unfold(0, window - 1, 1)  # [T-W+1, N, W-1]: windows of W-1 consecutive transitions
    dev = (wins - wins.mean(dim=-1, keepdim=True)).norm(dim=-1)  # [T-W+1, N]
    k = torch.arange(dev.shape[0], dtype=dev.dtype)
    w = decay * (1.0 - decay) ** (t - window - k)
    return (w[:, None] * dev).sum(dim=0)


def class_median_distance(embeddings: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Euclidean distance of each embedding to its class's coordinate-wise median embedding
    (moderate-DS, Xia et al., ICLR 2023). ``[N, d] -> [N]``."""
    out = torch.empty(embeddings.shape[0], dtype=embeddings.dtype)
    for c in range(num_classes):
        idx = torch.nonzero(labels == c).flatten()
        if idx.numel() == 0:
            continue
        x = embeddings[idx]
        # the median of an even count is the mean of the two middle values (numpy's convention, as Xia et al.)
        s = x.sort(dim=0).values
        m = x.shape[0]
        med = 0.5 * (s[(m - 1) // 2] + s[m // 2])
        out[idx] = (x - med).norm(dim=1)
    return out
