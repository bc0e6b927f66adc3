"""The epoch: plan -> batches -> step, for the two shapes of pruning.

* Sample granularity (most methods): the pruner plans the epoch's kept indices (and loss weights); the
  batch source cuts them into batches; each batch is one :class:`~prunebench.harness.step.Step`.
* Batch granularity (selective backprop, orderdp-fresh, ...): candidate batches are scored without
  gradients; the pruner keeps part of each; the kept samples are accumulated into full backprop batches
  (the remainder is flushed at the end of the epoch).

Either way the pruner's ``lr_scale(epoch)`` multiplies the schedule for the epoch's steps, and the samples of
its ``refresh_indices(epoch)`` are forwarded without gradients after the last step (e.g. KAKURENBO's hidden
samples).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from prunebench.harness.augment import AugParams
from prunebench.harness.batches import Batch, FolderBatches, TensorBatches
from prunebench.harness.batchnorm import CandidateBNStats, FrozenBNStats
from prunebench.harness.cost import Budget, CostMeter
from prunebench.harness.step import Precision, Step, predictions
from prunebench.pruners import BatchPruner, CandidateBatch, Pruner


@dataclass
class EpochStats:
    """What one epoch trained: per-sample backprop ``counts`` [N], the summed loss, the sample-visits, and
    (probe epochs) the per-sample sums of loss weights ``weight_sums`` [N]."""

    counts: torch.Tensor
    loss_sum: torch.Tensor
    samples: int = 0
    weight_sums: torch.Tensor | None = None
    _ones: torch.Tensor | None = field(default=None, repr=False)

    def add(self, idx: torch.Tensor, losses: torch.Tensor, w: torch.Tensor | None) -> None:
        self.loss_sum += losses.sum()
        if self._ones is None or self._ones.numel() != idx.numel():
            self._ones = torch.ones(idx.numel(), dtype=torch.int64, device=idx.device)
        self.counts.index_add_(0, idx, self._ones)
        if self.weight_sums is not None:
            self.weight_sums.index_add_(0, idx, (w if w is not None else self._ones).float())


class Epoch:
    """``epoch(e) -> EpochStats``: plan with the pruner, then train the epoch's batches."""

    def __init__(
        self,
        pruner: Pruner,
        batches: TensorBatches | FolderBatches,
        step: Step,
        precision: Precision,
        meter: CostMeter,
        budget: Budget,
        batch_size: int,
        num_samples: int,
        probe_epochs: frozenset[int],
        candidate_bn: CandidateBNStats | None,
    ) -> None:
        self.pruner, self.batches, self.step, self.precision = pruner, batches, step, precision
        self.meter, self.budget, self.bs, self.n = meter, budget, batch_size, num_samples
        self.probe_epochs, self.candidate_bn = probe_epochs, candidate_bn
        self.frozen_bn = FrozenBNStats(step.model)

    def __call__(self, epoch: int) -> EpochStats:
        device = self.batches.device
        stats = EpochStats(
            torch.zeros(self.n, dtype=torch.int64, device=device),
            torch.zeros((), device=device),
            weight_sums=torch.zeros(self.n, device=device) if epoch in self.probe_epochs else None,
        )
        t0 = time.perf_counter()
        plan = self.pruner.plan_epoch(epoch)
        self.step.lr_scale = float(self.pruner.lr_scale(epoch))
        self.meter.selection_time += time.perf_counter() - t0
        if isinstance(self.pruner, BatchPruner):
            self.batch_epoch(epoch, plan.indices, stats)
        else:
            self.sample_epoch(epoch, plan.indices, plan.weights, stats)
        refresh = self.pruner.refresh_indices(epoch)
        if refresh is not None and refresh.numel() > 0:
            self.refresh(refresh)
        return stats

    def refresh(self, indices: torch.Tensor) -> None:
        """Forward ``indices`` without gradients (augmented as in training, BatchNorm statistics untouched) and
        hand the pruner their losses (and predictions); counted as forward passes."""
        for idx, _, y, logits, losses, _ in self._scored(indices, self.bs):
            self.meter.samples_forward += idx.numel()
            self.pruner.observe(idx, losses)
            if self.pruner.observes_predictions:
                conf, correct = predictions(logits, y).unbind(1)
                self.pruner.observe_predictions(idx, conf, correct.bool())

    def sample_epoch(self, epoch: int, indices: torch.Tensor, weights: torch.Tensor | None, stats: EpochStats) -> None:
        left = self.budget.steps_left()
        if left is not None:  # steps budget: never more steps than the plan has left
            indices = indices[: left * self.bs]
            weights = weights[: left * self.bs] if weights is not None else None
        stats.samples = indices.numel()
        steps = max(1, math.ceil(stats.samples / self.bs))
        for i, b in enumerate(self.batches.batches(indices, weights, self.bs)):
            idx, losses = self.step(b.x, b.y, b.idx, b.w, self.budget.progress(epoch, i / steps), b.real, b.m)
            stats.add(idx, losses, b.w_seen)

    def batch_epoch(self, epoch: int, candidates: torch.Tensor, stats: EpochStats) -> None:
        pruner: BatchPruner = self.pruner  # type: ignore[assignment]
        n_c = max(1, candidates.numel())
        kept = _KeptSamples()
        seen = 0
        weighted = False  # whether the pruner returned loss weights (e.g. importance sampling)
        for idx, x, y, logits, losses, params in self._scored(candidates, pruner.candidate_batch_size(self.bs)):
            if not self.budget.can_step():
                break
            self.meter.samples_forward += idx.numel()
            seen += idx.numel()
            t0 = time.perf_counter()
            sel = pruner.select_batch(
                CandidateBatch(idx, losses, logits.float(), y, self.bs, self.precision.label_smoothing)
            )
            self.meter.selection_time += time.perf_counter() - t0
            keep = sel.keep
            weighted = weighted or sel.weights is not None
            device = self.batches.device
            w = sel.weights.to(device).float() if sel.weights is not None else torch.ones(keep.numel(), device=device)
            kept.add(
                (
                    x[keep] if x is not None else None,
                    y[keep],
                    idx[keep],
                    w,
                    params[keep] if params is not None else None,
                )
            )
            if self.candidate_bn is not None:  # one step per candidate batch, with that batch's BN statistics
                with self.candidate_bn.apply():
                    self._train_kept(kept.take(kept.count), weighted, epoch, seen / n_c, stats)
                continue
            while kept.count >= self.bs and self.budget.can_step():
                self._train_kept(kept.take(self.bs), weighted, epoch, seen / n_c, stats)
        if kept.count > 0 and self.budget.can_step():
            self._train_kept(kept.take(kept.count), weighted, epoch, seen / n_c, stats)

    def _train_kept(self, cols: tuple, weighted: bool, epoch: int, frac: float, stats: EpochStats) -> None:
        x, y, idx, w, params = cols
        b: Batch = self.batches.kept(x, y, idx, w, params, weighted)
        g_idx, losses = self.step(b.x, b.y, b.idx, b.w, self.budget.progress(epoch, frac), b.real, b.m)
        stats.add(g_idx, losses, b.w_seen)
        stats.samples += idx.numel()

    def _scored(self, candidates: torch.Tensor, chunk: int):
        """Candidate batches with fresh no-grad losses: ``(idx, x, y, logits, losses, aug params)``; under
        DDP the whole global batch's ``y, logits, losses`` and ``x`` None (kept samples are re-gathered)."""
        model: nn.Module = self.step.model
        for idx, x, y, params, real in self.batches.candidates(candidates, chunk):
            model.train()
            bn = self.candidate_bn.record() if self.candidate_bn is not None else self.frozen_bn
            with torch.no_grad(), bn, self.precision.autocast():
                logits = self.step.step_model(x)
            losses = self.precision.losses(logits, y)
            y, logits, losses = self.batches.dist.gather_candidates(y, logits, losses, real)
            yield idx, (x if real is None else None), y, logits, losses, params


class _KeptSamples:
    """Kept candidates waiting for a full backprop batch: columns ``(x, y, idx, w, aug params)``."""

    def __init__(self) -> None:
        self.parts: list[tuple] = []
        self.count = 0

    def add(self, part: tuple) -> None:
        self.parts.append(part)
        self.count += part[2].numel()

    def take(self, size: int) -> tuple:
        """The first ``size`` kept samples (the rest stays buffered)."""
        cols = [
            None
            if self.parts[0][k] is None
            else (torch.cat([p[k] for p in self.parts]) if k != 4 else AugParams.cat([p[k] for p in self.parts]))
            for k in range(5)
        ]
        self.parts = [tuple(None if c is None else c[size:] for c in cols)] if size < cols[2].shape[0] else []
        self.count -= size
        return tuple(None if c is None else c[:size] for c in cols)
