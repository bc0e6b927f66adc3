"""The step: one optimizer step on a kept batch, the hot path of every run.

It reads top to bottom: learning rate from the schedule's progress -> forward -> per-sample losses ->
(weighted) mean -> backward -> step -> the pruner (and any observer) sees the batch's losses -> count.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from prunebench.harness.cost import CostMeter
from prunebench.harness.distributed import DistInfo
from prunebench.harness.optim import lr_multiplier
from prunebench.pruners import Pruner

#: called as f(indices, logits, targets, losses) after every optimizer step
StepObserver = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], None]


class Precision:
    """bf16 autocast (or none) and the training loss, shared by the step, candidate scoring and evaluation."""

    def __init__(self, device: torch.device, bf16: bool, label_smoothing: float) -> None:
        self.device, self.bf16, self.label_smoothing = device, bf16, label_smoothing

    def autocast(self):
        if self.bf16:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def losses(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), y, reduction="none", label_smoothing=self.label_smoothing)


def predictions(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``[b, 2]`` float: each sample's largest softmax probability and whether its argmax is the label (0/1),
    for :meth:`Pruner.observe_predictions` (stacked so that DDP gathers them in one call)."""
    conf, pred = torch.softmax(logits.float(), dim=1).max(dim=1)
    return torch.stack([conf, (pred == y).float()], dim=1)


class Step:
    """``step(x, y, idx, w, t, real, m) -> (idx, losses)``: one optimizer step at schedule progress ``t``.

    Returns the indices and detached per-sample losses the pruner observed (under DDP the whole global
    batch: ``x`` is this rank's shard of ``m`` real samples, ``w`` is 0 on padding, see
    :mod:`prunebench.harness.distributed`). ``observers`` (e.g. the proxy run's recorders) are called
    after every step; the hot path only tests the empty list.
    """

    def __init__(
        self,
        model: nn.Module,
        step_model: nn.Module,
        optimizer: torch.optim.Optimizer,
        pruner: Pruner,
        precision: Precision,
        meter: CostMeter,
        dist: DistInfo,
        lr: float,
        schedule: str,
        warmup: float,
    ) -> None:
        self.model, self.step_model, self.optimizer, self.pruner = model, step_model, optimizer, pruner
        self.precision, self.meter, self.dist = precision, meter, dist
        self.lr, self.schedule, self.warmup = lr, schedule, warmup
        self.observers: list[StepObserver] = []
        #: the pruner's factor on the schedule for the current epoch (``Pruner.lr_scale``, set by the epoch);
        #: ``x * 1.0 == x`` exactly, so the default leaves every run bitwise unchanged
        self.lr_scale = 1.0

    def lr_at(self, t: float) -> float:
        return self.lr * lr_multiplier(self.schedule, t, warmup=self.warmup) * self.lr_scale

    def __call__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor,
        w: torch.Tensor | None,
        t: float,
        real: torch.Tensor | None = None,
        m: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lr = self.lr_at(t)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        self.model.train()
        with self.precision.autocast():
            logits = self.step_model(x)
        losses = self.precision.losses(logits, y)
        loss = self.dist.batch_loss(losses, w, m)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        losses = losses.detach()
        self.meter.local_steps += 1
        local_idx = idx
        idx, losses = self.dist.gather_observed(idx, losses, real)
        if self.observers:
            for f in self.observers:
                f(idx, logits.detach(), y, losses)
        self.pruner.observe(idx, losses)
        if self.pruner.observes_predictions:
            conf, correct = self.dist.gather_observed(local_idx, predictions(logits.detach(), y), real)[1].unbind(1)
            self.pruner.observe_predictions(idx, conf, correct.bool())
        self.meter.samples_backprop += idx.numel()
        self.meter.optimizer_steps += 1
        return idx, losses
