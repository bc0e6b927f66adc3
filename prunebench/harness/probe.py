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

from collections.abc import Callable, Iterable

import torch
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, targets) -> per-sample losses


def flat_gradient(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    denominator: float,
) -> torch.Tensor:
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


def gradient_probe(
    model: nn.Module,
    loss_fn: LossFn,
    kept_batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    kept_denominator: float,
    full_batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    full_denominator: float,
) -> dict[str, float]:
    """``grad_cosine``, ``grad_norm_kept``, ``grad_norm_full`` of the kept-set and full-data gradients."""
    g_kept = flat_gradient(model, loss_fn, kept_batches, kept_denominator)
    g_full = flat_gradient(model, loss_fn, full_batches, full_denominator)
    return compare_gradients(g_kept, g_full)


class Probe:
    """The probe of a run: its own generator (checkpointed), the fixed full-data sample, its time."""

    def __init__(
        self, model: nn.Module, loss_fn: LossFn, num_samples: int, probe_samples: int, seed: int, batch_size: int
    ) -> None:
        from prunebench.harness.batchnorm import FrozenBNStats
        from prunebench.seeding import make_generator

        self.model, self.loss_fn, self.probe_samples, self.bs = model, loss_fn, probe_samples, batch_size
        self.frozen_bn = FrozenBNStats(model)
        self.gen = make_generator(seed, "probe")
        self.full = torch.randperm(num_samples, generator=self.gen)[:probe_samples].sort().values

    def __call__(self, batches, autocast, counts: torch.Tensor, wsum: torch.Tensor | None) -> dict[str, float]:
        """Probe at the current parameters; ``batches`` is the run's batch source (its ``plain`` batches),
        ``counts`` and ``wsum`` the epoch's per-sample backprop counts and loss-weight sums."""
        kept = torch.nonzero(counts.cpu() > 0).flatten()
        if kept.numel() > self.probe_samples:
            kept = kept[torch.randperm(kept.numel(), generator=self.gen)[: self.probe_samples]].sort().values
        w = (wsum if wsum is not None else counts.float()).cpu()[kept]
        visits = float(counts.cpu()[kept].sum())
        full = self.full
        self.model.train()
        with self.frozen_bn, autocast():
            out = gradient_probe(
                self.model,
                self.loss_fn,
                batches.plain(kept, w, self.bs),
                max(visits, 1.0),
                batches.plain(full, torch.ones(full.numel()), self.bs),
                float(full.numel()),
            )
        return {**out, "probe_kept": int(kept.numel())}
