"""Gradient-direction probe: how well does the kept set's mean gradient point along the full-data gradient?

At the probe points the loop computes, at the current parameters and without any side effect on training
(no optimizer step, ``.grad`` untouched, BatchNorm running statistics frozen, no draw from the training
generators):

* ``g_kept``: the gradient of the epoch's kept-set loss ``sum_i w_i l_i / sum_i c_i`` over the samples
  trained in that epoch, where ``c_i`` counts sample ``i``'s backprop visits in the epoch and ``w_i`` sums
  its loss weights over those visits (so InfoBatch's rescaling and importance sampling's ``1/(B p)`` weights
  are included; ``w_i = c_i`` for unweighted methods). If more than ``probe_samples`` distinct samples were
  kept, a uniform subsample of them (without replacement) of that size is used.
* ``g_full``: the gradient of the plain mean loss over a fixed uniform sample of ``probe_samples`` training
  samples, drawn once per run from the run seed.

Reported: ``grad_cosine = <g_kept, g_full> / (|g_kept| |g_full|)``, ``grad_norm_kept``, ``grad_norm_full``.
Inputs are not augmented (a probe must not consume the augmentation generator) for tensor datasets;
the loss is the training loss (label smoothing included) in training mode with batch statistics.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, targets) -> per-sample losses


def flat_gradient(model: nn.Module, loss_fn: LossFn,
                  batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], denominator: float) -> torch.Tensor:
    """Flattened gradient of ``sum_batches sum_i w_i loss_i / denominator`` over ``(x, y, w)`` batches.

    Uses :func:`torch.autograd.grad`, so the parameters' ``.grad`` fields are left untouched; parameters
    that receive no gradient contribute zeros.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    for x, y, w in batches:
        loss = (loss_fn(model(x), y) * w).sum() / denominator
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for t, g in zip(total, grads):
            if g is not None:
                t += g.to(t.dtype)
    return torch.cat([t.flatten() for t in total])


def compare_gradients(g_kept: torch.Tensor, g_full: torch.Tensor) -> dict[str, float]:
    """Cosine similarity and the two norms (NaN cosine if either gradient is zero)."""
    g_kept, g_full = g_kept.double(), g_full.double()  # long fp32 dot products drift past |cos| = 1
    nk, nf = g_kept.norm(), g_full.norm()
    denom = nk * nf
    cos = (g_kept @ g_full) / denom if float(denom) > 0 else torch.tensor(float("nan"))
    return {"grad_cosine": float(cos), "grad_norm_kept": float(nk), "grad_norm_full": float(nf)}


def gradient_probe(model: nn.Module, loss_fn: LossFn,
                   kept_batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], kept_denominator: float,
                   full_batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], full_denominator: float,
                   ) -> dict[str, float]:
    """``grad_cosine``, ``grad_norm_kept``, ``grad_norm_full`` of the kept-set and full-data gradients."""
    g_kept = flat_gradient(model, loss_fn, kept_batches, kept_denominator)
    g_full = flat_gradient(model, loss_fn, full_batches, full_denominator)
    return compare_gradients(g_kept, g_full)
