"""The training loop: ``train(config) -> RunResult`` with one flat result row.

Each step reads: plan -> gather -> augment -> forward -> (weights) -> backward -> step -> observe.

* Small datasets live on the device as one uint8 tensor; a step is an index gather plus batched
  on-device augmentation. Folder datasets stream through a DataLoader whose sampler yields the plan.
* The learning rate is a function of progress over the planned run (epochs, or optimizer steps in the
  ``steps`` budget), so pruned or variable-length epochs never distort the schedule.
* Cost is always counted: forward-only sample passes, backpropagated sample-visits, optimizer steps,
  train wall-clock without evaluation (CUDA synchronised), selection time as its own figure, per-epoch
  Jaccard overlap of consecutive kept sets, per-sample usage counts.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import prunebench
from prunebench.datasets import FolderData, TensorData, load_dataset
from prunebench.errors import ConfigError, TrainingError
from prunebench.harness import distributed as ddp
from prunebench.harness import liveness
from prunebench.harness.augment import AugParams, apply_params, augment_batch, draw_params
from prunebench.harness.batchnorm import CandidateBNStats
from prunebench.harness.checkpoint import (CHECKPOINT_NAME, check_tracking_reachable, check_writable_dir, deferred_sigint,
                                           load_checkpoint, save_checkpoint)
from prunebench.harness.config import EXECUTION_FIELDS, MACHINE_FIELDS, TrainConfig
from prunebench.harness.identity import FINGERPRINT_TAG, data_fingerprint, data_identity, data_mismatch
from prunebench.harness.models import create_model
from prunebench.harness.optim import create_optimizer, default_lr, lr_multiplier
from prunebench.harness.probe import gradient_probe
from prunebench.harness.tracking import create_tracker
from prunebench.pruners import BatchPruner, CandidateBatch, PruneContext, Pruner, create_pruner
from prunebench.pruners.base import get_pruner_class
from prunebench.seeding import derive_seed, make_generator

#: numbers of the result row that the run measured: its final MLflow metrics (with every ``scoring_*``
#: number); the row's other numbers (num_classes, world_size, ...) are settings, logged as params
RESULT_METRICS = ("final_acc", "best_acc", "final_top5", "final_train_loss", "train_time_s", "selection_time_s",
                  "scoring_time_s", "eval_time_s", "probe_time_s", "total_time_s", "samples_forward",
                  "samples_backprop", "optimizer_steps", "realized_prune_ratio", "relative_compute", "jaccard_mean",
                  "epochs_run")

ProgressFn = Callable[[dict[str, Any]], None]
PLAN_SCORE_SNAPSHOTS = 10  # epochs (1..E-1, evenly spaced) whose plan-time pruner scores are logged
log = logging.getLogger("prunebench.harness")


@dataclass
class RunResult:
    """Everything a run produced.

    ``row`` is the one flat result row (config, cost, metrics) that studies and reports consume;
    ``history`` holds one dict per epoch; ``usage`` counts how often each sample was backpropagated;
    ``kept_masks`` is a packed bit matrix [epochs, ceil(N/8)] of the samples trained in each epoch.
    """

    row: dict[str, Any]
    history: list[dict[str, Any]]
    usage: np.ndarray
    kept_masks: np.ndarray | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def kept_mask(self, epoch: int) -> np.ndarray:
        """Boolean mask [N] of the samples trained in ``epoch``."""
        assert self.kept_masks is not None
        return np.unpackbits(self.kept_masks[epoch], count=self.usage.shape[0]).astype(bool)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but CUDA is not available; valid here: auto, cpu")
    return torch.device(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _FrozenBNStats:
    """Context manager: BatchNorm layers normalise with batch statistics but do not update running ones
    (momentum 0), so a no-grad candidate forward has no side effect on the model."""

    def __init__(self, model: nn.Module) -> None:
        self.bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def __enter__(self):
        self.saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None) for m in self.bns]
        for m in self.bns:
            m.momentum = 0.0
        return self

    def __exit__(self, *exc):
        for m, (mom, nbt) in zip(self.bns, self.saved):
            m.momentum = mom
            if nbt is not None:
                m.num_batches_tracked.copy_(nbt)
        return False


class PlannedSampler(torch.utils.data.Sampler):
    """Yields the current epoch's planned indices (folder datasets)."""

    def __init__(self) -> None:
        self.indices: list[int] = []

    def set_indices(self, indices: torch.Tensor) -> None:
        self.indices = indices.tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class Trainer:
    """One run. Built by :func:`train`; exposed for checkpointing, proxies and tests."""

    def __init__(self, config: TrainConfig, data: TensorData | FolderData | None = None,
                 progress: ProgressFn | None = None, distributed: bool = True) -> None:
        self.config = config
        self.progress = progress
        self.device = resolve_device(config.device)
        # under torchrun (WORLD_SIZE > 1) join the process group; proxies pass distributed=False
        self.dist = ddp.init_distributed(self.device.type) if distributed else ddp.DistInfo()
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        ddp.check_batch_size(config.batch_size, self.dist)
        get_pruner_class(config.pruner)  # fail fast on an unknown name, before loading data
        self.data = data if data is not None else load_dataset(
            config.dataset, config.data_dir, download=config.download, image_size=config.image_size
        )
        d = self.data
        self.n = d.num_train
        self.epochs = int(config.epochs or d.default_epochs)
        self.bs = config.batch_size
        self.full_steps_per_epoch = math.ceil(self.n / self.bs)
        self.total_steps = self.epochs * self.full_steps_per_epoch if config.budget == "steps" else None
        self.is_tensor = isinstance(d, TensorData)
        self.augment = (config.augment or d.augment) if self.is_tensor else "folder"
        self.crop_padding = getattr(d, "crop_padding", 0) or (4 if self.augment in ("crop", "crop+flip") else 0)
        self.lr = config.lr if config.lr is not None else default_lr(config.optimizer, self.bs)
        self.use_bf16 = config.precision == "bf16" or (config.precision == "auto" and self.device.type == "cuda")
        self.channels_last = config.channels_last if config.channels_last is not None else self.device.type == "cuda"

        self.pruner = self._make_pruner()
        bn_from_candidates = isinstance(self.pruner, BatchPruner) and self.pruner.bn_stats == "candidates"
        if bn_from_candidates and (self.dist.enabled or config.compile):
            raise ConfigError(f"{self.pruner.label}: bn_stats='candidates' runs in one process without compile; "
                              f"valid there: bn_stats='kept'")

        # model init from its own seed without touching the caller's global RNG state
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(config.seed, "model"))
            model = create_model(config.model, d.num_classes, d.input_shape)
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        step_model = model
        if self.dist.enabled:
            if isinstance(self.pruner, BatchPruner) and not self.is_tensor:
                raise ConfigError(f"{config.pruner} under DDP needs an in-memory dataset (digits, CIFAR, synthetic); "
                                  f"{config.dataset} streams from files")
            step_model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.step_model = torch.compile(step_model) if config.compile else step_model
        self.optimizer = create_optimizer(config.optimizer, model, self.lr, config.momentum, config.nesterov,
                                          config.weight_decay)
        self.aug_gen = make_generator(config.seed, "augment", self.device)
        self.mean = torch.tensor(d.mean, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(d.std, device=self.device).view(1, -1, 1, 1)
        self._scale, self._shift = 1.0 / self.std, -self.mean / self.std
        self._scale_u8 = self._scale / 255.0
        if self.is_tensor:
            self.x_train = d.x_train.to(self.device)
            self.y_train = d.y_train.to(self.device)
        else:
            self.sampler = PlannedSampler()
        self.frozen_bn = _FrozenBNStats(model)
        # a batch method asking for the candidate batch's BatchNorm statistics in its backprop step
        self.candidate_bn = CandidateBNStats(model) if bn_from_candidates else None

        # counters
        self.samples_forward = 0  # forward-only sample passes (candidate scoring)
        self.samples_backprop = 0  # sample-visits with a forward-backward pass
        self.optimizer_steps = 0
        self.local_steps = 0  # backward passes taken by this process (equal on every DDP rank)
        self.train_time = 0.0
        self.selection_time = 0.0
        self.eval_time = 0.0
        self.scoring_time = 0.0
        self.scoring_cost: dict[str, float] = {}
        self.usage = torch.zeros(self.n, dtype=torch.int64, device=self.device)
        self.prev_mask: torch.Tensor | None = None
        self.history: list[dict[str, Any]] = []
        self.kept_masks: list[np.ndarray] = []
        # loss-score pruners (orderdp, loss-topk, ...): the stored scores at plan time of a few epochs,
        # so reports can rank samples as the pruner did and compare keep frequencies per rank with gamma
        self.plan_scores: dict[int, np.ndarray] = {}
        self.plan_score_epochs = (set(np.linspace(1, self.epochs - 1, PLAN_SCORE_SNAPSHOTS).round().astype(int).tolist())
                                  if self.epochs > 1 else set())
        self.epoch = 0
        self.run_id: str | None = None
        # called as f(indices, logits, targets, losses) after every optimizer step (e.g. the proxy run's
        # recorders); the hot path only tests the empty list
        self.step_observers: list[Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], None]] = []
        self.proxy_runner = None  # set by _context(): the static methods' proxy (its cost goes in the row)
        # called with the MLflow run id once the run has started (a leaderboard's claim on its grid cell);
        # what it raises ends the run like a training error
        self.on_start: Callable[[str | None], None] | None = None
        # gradient-direction probe (harness/probe.py): fixed full-data sample, per-epoch loss-weight sums
        self.probe_epochs = frozenset(config.probe_epochs)
        if self.probe_epochs and config.budget == "epochs" and max(self.probe_epochs) >= self.epochs:
            raise ConfigError(f"config: probe_epochs {sorted(self.probe_epochs)} beyond the run; valid: 0 <= epoch < {self.epochs}")
        self.probe_gen = make_generator(config.seed, "probe")
        self.probe_full = torch.randperm(self.n, generator=self.probe_gen)[: config.probe_samples].sort().values
        self.probe_wsum: torch.Tensor | None = None
        self.probe_time = 0.0

    # ------------------------------------------------------------------------------------------------
    def _make_pruner(self) -> Pruner:
        cfg = self.config
        num_epochs = self.epochs
        cls = get_pruner_class(cfg.pruner)
        p = cfg.prune_ratio if cfg.prune_ratio is not None else cls.default_prune_ratio
        if cfg.budget == "steps" and p > 0:
            # same optimizer steps as full data: the pruner plans over the stretched number of epochs
            keep = max(1, round((1 - p) * self.n))
            num_epochs = math.ceil(self.total_steps / math.ceil(keep / self.bs))
        return create_pruner(cfg.pruner, num_samples=self.n, num_epochs=num_epochs, prune_ratio=p, seed=cfg.seed,
                             **cfg.pruner_options)

    def _context(self) -> PruneContext:
        from prunebench.harness.proxy import proxy_context

        ctx, self.proxy_runner = proxy_context(self.config, self.data, self.device)
        return ctx

    # ------------------------------------------------------------------------------------------------
    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        # (x / 255 - mean) / std as one fused multiply-add; the layout change happens on the 1-byte input
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        scale, shift = (self._scale_u8, self._shift) if x.dtype == torch.uint8 else (self._scale, self._shift)
        return torch.addcmul(shift, x.float(), scale)

    def _batches(self, indices: torch.Tensor, chunk: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield ``(indices, normalised augmented inputs, labels)`` for ``indices`` in chunks."""
        if self.is_tensor:
            idx_all = indices.to(self.device, non_blocking=True)
            for s in range(0, idx_all.numel(), chunk):
                idx = idx_all[s : s + chunk]
                x = augment_batch(self.x_train[idx], self.augment, self.crop_padding, self.aug_gen)
                yield idx, self._normalize(x), self.y_train[idx]
        else:
            self.sampler.set_indices(indices)
            loader = torch.utils.data.DataLoader(
                self.data.train, batch_size=chunk, sampler=self.sampler, num_workers=self.config.num_workers,
                pin_memory=self.device.type == "cuda", drop_last=False,
            )
            for idx, x, y in loader:
                yield (idx.to(self.device, non_blocking=True), self._normalize(x.to(self.device, non_blocking=True)),
                       y.to(self.device, non_blocking=True))

    def _autocast(self):
        if self.use_bf16:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _losses(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), y, reduction="none", label_smoothing=self.config.label_smoothing)

    def _step(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, w: torch.Tensor | None, t: float,
              real: torch.Tensor | None = None, m: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on a kept batch; returns the (global) indices and detached per-sample losses.

        Under DDP, ``x`` is this rank's shard of a global batch of ``m`` real samples, ``w`` carries 0 for
        padding (``real`` False); see :mod:`prunebench.harness.distributed`.
        """
        lr = self.lr * lr_multiplier(self.config.schedule, t, warmup=self.config.warmup)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        self.model.train()
        with self._autocast():
            logits = self.step_model(x)
        losses = self._losses(logits, y)
        if self.dist.enabled:  # DDP averages gradients over ranks: scale to the global weighted mean
            loss = (losses * w).sum() * (self.dist.world / m)
        else:
            loss = (losses * w).mean() if w is not None else losses.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        losses = losses.detach()
        self.local_steps += 1
        if self.dist.enabled:  # every rank's pruner observes the whole global batch, in global order
            keep = ddp.all_gather_cat(real)
            idx, losses = ddp.all_gather_cat(idx)[keep], ddp.all_gather_cat(losses)[keep]
        if self.step_observers:
            for f in self.step_observers:
                f(idx, logits.detach(), y, losses)
        self.pruner.observe(idx, losses)
        self.samples_backprop += idx.numel()
        self.optimizer_steps += 1
        return idx, losses

    # -- distributed batches --------------------------------------------------------------------------
    def _pad_shard(self, idx: torch.Tensor, w: torch.Tensor, params: AugParams | None):
        """Pad a global batch to a multiple of the world size (copies of its first sample, weight 0) and
        return this rank's shard: (idx, w, real, params)."""
        m = idx.numel()
        pad = ddp.pad_to_multiple(m, self.dist.world) - m
        real = torch.ones(m, dtype=torch.bool, device=idx.device)
        if pad:
            fill = torch.zeros(pad, dtype=torch.long, device=idx.device)
            idx = torch.cat([idx, idx[fill]])
            w = torch.cat([w, torch.zeros(pad, dtype=w.dtype, device=w.device)])
            real = torch.cat([real, torch.zeros(pad, dtype=torch.bool, device=idx.device)])
            params = AugParams.cat([params, params[fill]]) if params is not None else None
        sh = lambda t: ddp.shard(t, self.dist)  # noqa: E731
        return sh(idx), sh(w), sh(real), (params[self.dist.rank * (idx.numel() // self.dist.world):
                                                  (self.dist.rank + 1) * (idx.numel() // self.dist.world)]
                                           if params is not None else None)

    def _shard_inputs(self, idx: torch.Tensor, params: AugParams | None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.x_train[idx]
        if params is not None:
            x = apply_params(x, params, self.crop_padding)
        return self._normalize(x), self.y_train[idx]

    def _dist_batches(self, indices: torch.Tensor, weights: torch.Tensor | None, chunk: int):
        """Yield ``(local idx, x, y, local w, local real, m)`` for each global batch of ``chunk``."""
        n = indices.numel()
        w_all = weights if weights is not None else torch.ones(n)
        if self.is_tensor:
            idx_all, w_all = indices.to(self.device), w_all.to(self.device).float()
            for s in range(0, n, chunk):
                g_idx, g_w = idx_all[s : s + chunk], w_all[s : s + chunk]
                params = draw_params(g_idx.numel(), self.augment, self.crop_padding, self.aug_gen, self.device)
                idx, w, real, p = self._pad_shard(g_idx, g_w, params)
                x, y = self._shard_inputs(idx, p)
                yield idx, x, y, w, real, g_idx.numel()
        else:  # folder data: the sampler yields this rank's shards, batches align with global batches
            local, lw, lreal, sizes = [], [], [], []
            for s in range(0, n, chunk):
                g_idx, g_w = indices[s : s + chunk], w_all[s : s + chunk].float()
                idx, w, real, _ = self._pad_shard(g_idx, g_w, None)
                local.append(idx), lw.append(w), lreal.append(real), sizes.append(g_idx.numel())
            shard_bs = chunk // self.dist.world
            it = self._batches(torch.cat(local), shard_bs)
            for (idx, x, y), w, real, m in zip(it, lw, lreal, sizes):
                yield idx, x, y, w.to(self.device), real.to(self.device), m

    def _progress(self, epoch: int, frac: float) -> float:
        if self.total_steps is not None:
            return self.optimizer_steps / self.total_steps
        return (epoch + frac) / self.epochs

    def _steps_left(self) -> int | None:
        return None if self.total_steps is None else self.total_steps - self.optimizer_steps

    # ------------------------------------------------------------------------------------------------
    def _run_epoch(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Train one epoch; returns (per-sample count of backprops this epoch, loss sum, samples)."""
        counts = torch.zeros(self.n, dtype=torch.int64, device=self.device)
        loss_sum = torch.zeros((), device=self.device)
        self.probe_wsum = torch.zeros(self.n, device=self.device) if epoch in self.probe_epochs else None
        t0 = time.perf_counter()
        sel = self.pruner.plan_epoch(epoch)
        self.selection_time += time.perf_counter() - t0
        indices, weights = sel.indices, sel.weights
        if isinstance(self.pruner, BatchPruner):
            return self._run_batch_epoch(epoch, indices, counts, loss_sum)
        left = self._steps_left()
        if left is not None:
            indices = indices[: left * self.bs]
            weights = weights[: left * self.bs] if weights is not None else None
        w_dev = weights.to(self.device, non_blocking=True) if weights is not None else None
        n_e = indices.numel()
        steps_e = max(1, math.ceil(n_e / self.bs))
        ones = None
        if self.dist.enabled:
            batches = ((idx, x, y, w, real, m) for idx, x, y, w, real, m in self._dist_batches(indices, weights, self.bs))
        else:
            batches = ((idx, x, y, w_dev[i * self.bs : i * self.bs + idx.numel()] if w_dev is not None else None, None, 0)
                       for i, (idx, x, y) in enumerate(self._batches(indices, self.bs)))
        for i, (idx, x, y, w, real, m) in enumerate(batches):
            idx, losses = self._step(x, y, idx, w, self._progress(epoch, i / steps_e), real, m)
            if w is not None and self.dist.enabled:
                w = None if weights is None else weights.to(self.device)[i * self.bs : i * self.bs + idx.numel()]
            loss_sum += losses.sum()
            if ones is None or ones.numel() != idx.numel():
                ones = torch.ones(idx.numel(), dtype=torch.int64, device=self.device)
            counts.index_add_(0, idx, ones)
            if self.probe_wsum is not None:
                self.probe_wsum.index_add_(0, idx, w.float() if w is not None else ones.float())
        return counts, loss_sum, n_e

    def _run_batch_epoch(self, epoch: int, candidates: torch.Tensor, counts: torch.Tensor,
                         loss_sum: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Batch granularity: score candidate batches without gradients, accumulate the kept samples
        into full backprop batches (the remainder is flushed at the end of the epoch)."""
        pruner: BatchPruner = self.pruner  # type: ignore[assignment]
        chunk = pruner.candidate_batch_size(self.bs)
        n_c = max(1, candidates.numel())
        buf: list[tuple[torch.Tensor, ...]] = []
        buffered = 0
        seen = 0
        trained = 0

        weighted = False  # whether the pruner returned loss weights (e.g. importance sampling)
        dist_on = self.dist.enabled

        def flush(size: int, frac: float) -> None:
            nonlocal buf, buffered, trained, loss_sum
            cols = [None if buf[0][k] is None else (torch.cat([b[k] for b in buf]) if k != 4 else
                                                    AugParams.cat([b[k] for b in buf])) for k in range(5)]
            xs, ys, ids, ws, ps = cols
            buf = [tuple(None if c is None else c[size:] for c in cols)] if size < ids.shape[0] else []
            buffered -= size
            idx, w = ids[:size], ws[:size]
            if dist_on:  # this rank's shard of the kept global batch, re-gathered with the same augmentation
                l_idx, l_w, real, l_p = self._pad_shard(idx, w, ps[:size] if ps is not None else None)
                x, y = self._shard_inputs(l_idx, l_p)
                g_idx, losses = self._step(x, y, l_idx, l_w if weighted else (l_w > 0).float(),
                                           self._progress(epoch, frac), real, size)
            else:
                g_idx, losses = self._step(xs[:size], ys[:size], idx, w if weighted else None, self._progress(epoch, frac))
            loss_sum += losses.sum()
            counts.index_add_(0, g_idx, torch.ones_like(g_idx))
            if self.probe_wsum is not None:
                self.probe_wsum.index_add_(0, g_idx, w.float())
            trained += size

        for idx, x, y, logits, losses, params in self._candidate_batches(candidates, chunk):
            left = self._steps_left()
            if left is not None and left <= 0:
                break
            self.samples_forward += idx.numel()
            seen += idx.numel()
            t0 = time.perf_counter()
            bsel = pruner.select_batch(CandidateBatch(idx, losses, logits.float(), y, self.bs, self.config.label_smoothing))
            self.selection_time += time.perf_counter() - t0
            keep = bsel.keep
            if bsel.weights is not None:
                weighted = True
                w = bsel.weights.to(self.device).float()
            else:
                w = torch.ones(keep.numel(), device=self.device)
            buf.append((x[keep] if x is not None else None, y[keep], idx[keep], w,
                        params[keep] if params is not None else None))
            buffered += keep.numel()
            if self.candidate_bn is not None:  # one step per candidate batch, with that batch's BN statistics
                with self.candidate_bn.apply():
                    flush(buffered, seen / n_c)
                continue
            while buffered >= self.bs and (self._steps_left() is None or self._steps_left() > 0):
                flush(self.bs, seen / n_c)
        if buffered > 0 and (self._steps_left() is None or self._steps_left() > 0):
            flush(buffered, seen / n_c)
        return counts, loss_sum, trained

    def _candidate_batches(self, candidates: torch.Tensor, chunk: int):
        """Candidate batches with fresh no-grad losses: ``(idx, x, y, logits, losses, aug params)``.

        Single process: ``x`` is kept for the backprop step. Under DDP every rank forwards its shard and
        the global candidate batch is all-gathered (``x`` is None; kept samples are re-gathered from
        their indices and augmentation parameters).
        """
        if not self.dist.enabled:
            for idx, x, y in self._batches(candidates, chunk):
                self.model.train()
                bn = self.candidate_bn.record() if self.candidate_bn is not None else self.frozen_bn
                with torch.no_grad(), bn, self._autocast():
                    logits = self.step_model(x)
                yield idx, x, y, logits, self._losses(logits, y), None
            return
        idx_all = candidates.to(self.device)
        for s in range(0, idx_all.numel(), chunk):
            g_idx = idx_all[s : s + chunk]
            params = draw_params(g_idx.numel(), self.augment, self.crop_padding, self.aug_gen, self.device)
            l_idx, _, real, l_p = self._pad_shard(g_idx, torch.ones(g_idx.numel(), device=self.device), params)
            x, y = self._shard_inputs(l_idx, l_p)
            self.model.train()
            with torch.no_grad(), self.frozen_bn, self._autocast():
                logits = self.step_model(x)
            losses = self._losses(logits, y)
            keep = ddp.all_gather_cat(real)
            yield (g_idx, None, ddp.all_gather_cat(y)[keep], ddp.all_gather_cat(logits.float())[keep],
                   ddp.all_gather_cat(losses)[keep], params)

    # ------------------------------------------------------------------------------------------------
    def _probe_batches(self, indices: torch.Tensor, weights: torch.Tensor):
        """Un-augmented ``(x, y, w)`` batches (tensor data); folder data goes through the loader."""
        if self.is_tensor:
            # balanced chunks of at most the batch size: never a trailing batch of one (BatchNorm)
            parts = max(1, math.ceil(indices.numel() / self.bs))
            for ic, wc in zip(torch.tensor_split(indices, parts), torch.tensor_split(weights, parts)):
                idx = ic.to(self.device)
                yield self._normalize(self.x_train[idx]), self.y_train[idx], wc.to(self.device)
        else:
            w_of = torch.zeros(self.n, device=self.device)
            w_of[indices.to(self.device)] = weights.to(self.device)
            for idx, x, y in self._batches(indices, self.bs):
                yield x, y, w_of[idx]

    def probe(self, counts: torch.Tensor, wsum: torch.Tensor | None) -> dict[str, float]:
        """Gradient-direction probe at the current parameters (see :mod:`prunebench.harness.probe`)."""
        _sync(self.device)
        t0 = time.perf_counter()
        kept = torch.nonzero(counts.cpu() > 0).flatten()
        if kept.numel() > self.config.probe_samples:
            kept = kept[torch.randperm(kept.numel(), generator=self.probe_gen)[: self.config.probe_samples]].sort().values
        w = (wsum if wsum is not None else counts.float()).cpu()[kept]
        visits = float(counts.cpu()[kept].sum())
        full = self.probe_full
        self.model.train()
        with self.frozen_bn, self._autocast():
            out = gradient_probe(self.model, self._losses,
                                 self._probe_batches(kept, w), max(visits, 1.0),
                                 self._probe_batches(full, torch.ones(full.numel())), float(full.numel()))
        _sync(self.device)
        dt = time.perf_counter() - t0
        self.probe_time += dt
        return {**out, "probe_kept": int(kept.numel()), "probe_time_s": dt}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        k5 = self.data.num_classes >= 10
        correct1 = torch.zeros((), dtype=torch.int64, device=self.device)
        correct5 = torch.zeros((), dtype=torch.int64, device=self.device)
        total = 0
        model = self.model if self.dist.enabled else self.step_model  # no DDP collectives in evaluation
        if self.is_tensor:
            x_all, y_all = self.data.x_test, self.data.y_test
            if self.dist.enabled:  # each rank evaluates a strided shard; the counts are all-reduced
                x_all, y_all = x_all[self.dist.rank :: self.dist.world], y_all[self.dist.rank :: self.dist.world]
            batches = ((x_all[s : s + self.config.eval_batch_size].to(self.device),
                        y_all[s : s + self.config.eval_batch_size].to(self.device))
                       for s in range(0, y_all.numel(), self.config.eval_batch_size))
        else:
            test = self.data.test
            if self.dist.enabled:
                test = torch.utils.data.Subset(test, range(self.dist.rank, len(test), self.dist.world))
            loader = torch.utils.data.DataLoader(test, batch_size=self.config.eval_batch_size,
                                                 num_workers=self.config.num_workers,
                                                 pin_memory=self.device.type == "cuda")
            batches = ((x.to(self.device), y.to(self.device)) for _, x, y in loader)
        for x, y in batches:
            with self._autocast():
                logits = model(self._normalize(x))
            top = logits.float().topk(5 if k5 else 1, dim=1).indices
            correct1 += (top[:, 0] == y).sum()
            if k5:
                correct5 += (top == y[:, None]).any(dim=1).sum()
            total += y.numel()
        if self.dist.enabled:
            sums = ddp.all_reduce_sum(torch.stack([correct1, correct5, torch.tensor(total, device=self.device)]))
            correct1, correct5, total = sums[0], sums[1], int(sums[2].item())
        out = {"test_acc": correct1.item() / total}
        if k5:
            out["test_top5"] = correct5.item() / total
        return out

    # ------------------------------------------------------------------------------------------------
    def run(self) -> RunResult:
        """Prepare the pruner, train, evaluate, log; resume from ``checkpoint_dir`` when asked.

        Runs inside ``torch.random.fork_rng``: the global RNG (used only by layers such as dropout) is
        seeded from the run seed and checkpointed, and the caller's global RNG state is restored after.
        """
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(derive_seed(self.config.seed, "global"))
            return self._run()

    def _preflight(self) -> dict[str, Any] | None:
        """Everything that can fail before training does so here, before anything is written."""
        cfg = self.config
        if cfg.tracking and self.dist.is_main:
            from prunebench.harness.tracking import resolve_tracking_uri

            uri = resolve_tracking_uri(cfg.tracking_uri)
            check_tracking_reachable(uri)
            if uri.startswith("sqlite:///"):
                check_writable_dir(Path(uri[len("sqlite:///"):]).parent, 16 << 20, "tracking store folder")
        state = None
        if cfg.checkpoint_dir:
            if cfg.resume:
                state = load_checkpoint(cfg.checkpoint_dir)
                self._check_resumable(state)
            target = Path(cfg.checkpoint_dir) / CHECKPOINT_NAME
            if target.is_symlink() or (target.exists() and not target.is_file()):
                raise ConfigError(f"checkpoint dir {cfg.checkpoint_dir}: {target.name} there is not a regular file; "
                                  f"remove it or use another --checkpoint-dir")
            n_params = sum(p.numel() for p in self.model.parameters())
            need = 2 * (3 * 4 * n_params + 64 * self.n) + (8 << 20)  # model + optimizer + pruner state, twice
            check_writable_dir(cfg.checkpoint_dir, need, "checkpoint dir")
        return state

    def _identity(self) -> dict[str, Any]:
        """The settings and the data (fingerprint and sizes) a checkpoint may be resumed with."""
        return {**{k: v for k, v in self.config.to_dict().items() if k not in EXECUTION_FIELDS},
                "data": data_identity(self.data)}

    def _check_resumable(self, state: dict[str, Any]) -> None:
        saved, now = dict(state["identity"]), self._identity()
        problem = data_mismatch(saved, state, now["data"])
        if problem:
            raise ConfigError(f"--resume: {problem}; resume on the same data or use another --checkpoint-dir")
        saved.pop("data", None)
        now.pop("data")
        diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        if diff:
            k = diff[0]
            raise ConfigError(
                f"--resume: the checkpoint was written with {k}={saved.get(k)!r} but this run has "
                f"{k}={now.get(k)!r}; resume with the same settings or use another --checkpoint-dir"
            )

    def state_dict(self) -> dict[str, Any]:
        """The full training state (model, optimizer, every RNG, pruner, counters, history)."""
        return {
            "identity": self._identity(),
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "pruner": self.pruner.state_dict(),
            "rng_global": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "rng_augment": self.aug_gen.get_state(),
            "rng_probe": self.probe_gen.get_state(),
            "counters": {k: getattr(self, k) for k in self._COUNTERS},
            "usage": self.usage.cpu(),
            "prev_mask": None if self.prev_mask is None else self.prev_mask.cpu(),
            "history": self.history,
            "kept_masks": self.kept_masks,
            "plan_scores": self.plan_scores,
            "mlflow_run_id": self.run_id,
        }

    _COUNTERS = ("samples_forward", "samples_backprop", "optimizer_steps", "train_time", "selection_time",
                 "eval_time", "scoring_time", "scoring_cost", "probe_time")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = state["epoch"]
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.pruner.load_state_dict(state["pruner"])
        torch.set_rng_state(state["rng_global"])
        if state["rng_cuda"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"], self.device)
        self.aug_gen.set_state(state["rng_augment"])
        self.probe_gen.set_state(state["rng_probe"])
        for k, v in state["counters"].items():
            setattr(self, k, v)
        self.usage = state["usage"].to(self.device)
        self.prev_mask = None if state["prev_mask"] is None else state["prev_mask"].to(self.device)
        self.history = list(state["history"])
        self.kept_masks = list(state["kept_masks"])
        self.plan_scores = dict(state["plan_scores"])
        self.run_id = state["mlflow_run_id"]

    def _run(self) -> RunResult:
        cfg = self.config
        resume_state = self._preflight()
        # under DDP only rank 0 logs to MLflow and writes checkpoints
        tracker = create_tracker(cfg.tracking and self.dist.is_main, cfg.tracking_uri, cfg.experiment)
        label = self.pruner.label
        params = {**{k: v for k, v in cfg.to_dict().items()
                     if k not in ("pruner_options", "tags", "resume") and k not in MACHINE_FIELDS},
                  **self.pruner.params(), "label": label, "epochs": self.epochs, "lr": self.lr,
                  "num_samples": self.n, "augment": self.augment, "device": str(self.device)}
        tags = {"prunebench.label": label, "prunebench.pruner": cfg.pruner, "prunebench.granularity": self.pruner.granularity,
                **{f"prunebench.{k}": str(v) for k in MACHINE_FIELDS  # this machine's values
                   if (v := getattr(tracker, "uri", None) if k == "tracking_uri" else getattr(cfg, k)) is not None},
                FINGERPRINT_TAG: data_fingerprint(self.data), **{k: str(v) for k, v in cfg.tags.items()}}
        if resume_state is not None:
            self.load_state_dict(resume_state)
            # the pruner's state already holds its selection: prepare() (and a static proxy run) is not repeated
            self.pruner.context = self._context()
            tracker.start(cfg.run_name or label, params, tags,
                          run_id=resume_state["mlflow_run_id"] if cfg.tracking else None)
        else:
            tracker.start(cfg.run_name or label, params, tags)
        self.run_id = ddp.broadcast_object(tracker.run_id) if self.dist.enabled else tracker.run_id
        status, error = "FINISHED", ""
        try:
            if self.dist.is_main:  # tag the run with this process; runs of dead processes here: KILLED
                liveness.register(tracker)
            if self.on_start is not None:
                self.on_start(self.run_id)
            if resume_state is None:
                self._prepare_pruner()
            self._train_loop(tracker)
        except BaseException as e:
            early = _is_early_stop(e)
            status = "KILLED" if isinstance(e, KeyboardInterrupt) or early else "FAILED"
            error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            _mark_ended(tracker, status, {"prunebench.early_stopped": f"after epoch {len(self.history) - 1}"} if early
                        else {"prunebench.error": error[:5000]})
            raise
        result = self._result(tracker.run_id, label, status, error)
        usage = result.usage
        numbers = {k: v for k, v in result.row.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in params}
        # what the run measured is a metric; the other numbers (num_classes, world_size, ...) are settings
        tracker.log_metrics({k: v for k, v in numbers.items() if k in RESULT_METRICS or k.startswith("scoring_")})
        tracker.log_params({k: v for k, v in numbers.items() if not (k in RESULT_METRICS or k.startswith("scoring_"))})
        arrays = {"usage_counts": usage.astype(np.int32)}
        if self.kept_masks:
            arrays["kept_masks_packed"] = result.kept_masks
            arrays["last_kept_indices"] = np.flatnonzero(result.kept_mask(len(self.kept_masks) - 1))
        if self.plan_scores:
            arrays["plan_scores"] = np.stack([self.plan_scores[e] for e in sorted(self.plan_scores)])
            arrays["plan_score_epochs"] = np.array(sorted(self.plan_scores), dtype=np.int32)
        arrays.update({f"static_{k}": v for k, v in self.pruner.artifacts().items()})  # static: scores, kept
        tracker.log_arrays(arrays)
        tracker.log_dict({"config": cfg.to_dict(), "resolved": params, "row": result.row}, "run.json")
        if cfg.log_model:
            self._log_model(tracker)
        tracker.end(status)
        return result

    def _log_model(self, tracker) -> None:
        """The final weights as ``model/state_dict.pt``: a ``torch.save``'d dict of CPU tensors (no pickled
        classes), so ``torch.load(path, weights_only=True)`` reads it and ``create_model(...)``'s
        ``load_state_dict`` takes it (DDP's ``module.`` prefix is removed)."""
        model = getattr(self.model, "module", self.model)
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "state_dict.pt")
            torch.save(state, path)
            tracker.log_file(path, "model")

    def _prepare_pruner(self) -> None:
        """``prepare()`` (static methods: the proxy run) timed as scoring; under DDP on rank 0 only, and
        the resulting pruner state is broadcast so every rank plans identically."""
        if self.dist.is_main:
            t0 = time.perf_counter()
            self.pruner.prepare(self._context())
            _sync(self.device)
            self.scoring_time = time.perf_counter() - t0
            self._scoring_report()
        if self.dist.enabled:
            state = ddp.broadcast_object((self.pruner.state_dict(), self.scoring_time, self.scoring_cost)
                                         if self.dist.is_main else None)
            if not self.dist.is_main:
                self.pruner.load_state_dict(state[0])
                self.pruner.context = self._context()
                self.scoring_time, self.scoring_cost = state[1], dict(state[2])

    def _scoring_report(self) -> None:
        """Put the proxy run's cost beside the training cost (``scoring_*`` columns of the row)."""
        r = self.proxy_runner.report() if self.proxy_runner is not None else {
            "samples_backprop": 0, "samples_forward": 0, "proxy_time_s": 0.0, "proxy_wall_s": 0.0}
        r["relative_compute"] = (r["samples_forward"] + 3 * r["samples_backprop"]) / (3 * self.epochs * self.n)
        self.scoring_cost.update(r)
        if r.get("cache_hit"):
            log.info("%s: proxy scores reused from the cache in %s", self.pruner.label, self.proxy_runner.cache_dir)

    def _total_cost(self, budget_visits: int) -> dict[str, float]:
        """Training + scoring cost (prunebench.reports.stats' cost model, the proxy charged in full):
        ``total_compute`` relative to full training, ``total_cost_s`` in seconds with the proxy's original
        time in place of this run's time in the proxy runner (a cache hit costs what the miss cost)."""
        sc = self.scoring_cost
        own = max(0.0, self.scoring_time - float(sc.get("proxy_wall_s", 0.0)))
        return {"total_compute": (self.samples_forward + 3 * self.samples_backprop) / (3 * budget_visits)
                + float(sc.get("relative_compute", 0.0)),
                "total_cost_s": self.train_time + own + float(sc.get("proxy_time_s", 0.0))}

    def _train_loop(self, tracker) -> None:
        cfg = self.config
        last_acc: dict[str, float] = {}
        epoch = self.epoch
        while True:
            if self.total_steps is None and epoch >= self.epochs:
                break
            if self.total_steps is not None and self.optimizer_steps >= self.total_steps:
                break
            scores = self.pruner.plan_scores() if cfg.record_kept and epoch in self.plan_score_epochs else None
            if scores is not None:  # outside the clock: a copy for the reports, not part of the method's cost
                self.plan_scores[epoch] = scores.numpy().astype(np.float32)
            _sync(self.device)
            t0 = time.perf_counter()
            sel_before = self.selection_time
            counts, loss_sum, n_e = self._run_epoch(epoch)
            _sync(self.device)
            dt = time.perf_counter() - t0
            self.train_time += dt
            mean_loss = loss_sum.item() / max(1, n_e)
            if not math.isfinite(mean_loss):
                raise TrainingError(
                    f"training loss became {mean_loss} in epoch {epoch} ({self.pruner.label}, lr={self.lr:g}); "
                    f"lower the learning rate or check the data"
                )
            mask = counts > 0
            self.usage += counts
            jac = float("nan")
            if self.prev_mask is not None:
                union = (mask | self.prev_mask).sum().item()
                jac = (mask & self.prev_mask).sum().item() / union if union else 1.0
            self.prev_mask = mask
            if cfg.record_kept:
                self.kept_masks.append(np.packbits(mask.cpu().numpy()))
            last_epoch = (self.total_steps is None and epoch + 1 >= self.epochs) or (
                self.total_steps is not None and self.optimizer_steps >= self.total_steps)
            metrics = {"epoch": epoch, "train_loss": mean_loss, "kept": n_e, "kept_fraction": n_e / self.n,
                       "jaccard": jac, "epoch_time_s": dt, "selection_time_s": self.selection_time - sel_before,
                       "samples_backprop": self.samples_backprop, "samples_forward": self.samples_forward,
                       "optimizer_steps": self.optimizer_steps,
                       "lr": self.lr * lr_multiplier(cfg.schedule, min(1.0, self._progress(epoch, 1.0)), warmup=cfg.warmup)}
            if epoch in self.probe_epochs:
                metrics.update(self.probe(counts, self.probe_wsum))
            if last_epoch or (epoch + 1) % cfg.eval_every == 0:
                t1 = time.perf_counter()
                last_acc = self.evaluate()
                self.eval_time += time.perf_counter() - t1
                metrics.update(last_acc)
            self.history.append(metrics)
            tracker.log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step=epoch)
            if self.progress is not None:
                self.progress({**metrics, "epochs": self.epochs})
            self.pruner.epoch_end(epoch)
            epoch += 1
            self.epoch = epoch
            if cfg.checkpoint_dir and self.dist.is_main and (last_epoch or epoch % cfg.checkpoint_every == 0):
                save_checkpoint(cfg.checkpoint_dir, self.state_dict())

    def _rank_steps_equal(self) -> bool:
        if not self.dist.enabled:
            return True
        steps = ddp.all_gather_cat(torch.tensor([self.local_steps], device=self.device))
        return bool((steps == steps[0]).all())

    def _result(self, run_id: str | None, label: str, status: str, error: str) -> RunResult:
        cfg = self.config
        accs = [h["test_acc"] for h in self.history if "test_acc" in h]
        jacs = [h["jaccard"] for h in self.history if not math.isnan(h["jaccard"])]
        budget_visits = self.epochs * self.n
        final = next((h for h in reversed(self.history) if "test_acc" in h), {})
        row: dict[str, Any] = {
            "run_id": run_id,
            "status": status,
            "error": error,
            "dataset": cfg.dataset,
            "model": cfg.model,
            "pruner": cfg.pruner,
            "label": label,
            "granularity": self.pruner.granularity,
            "seed": cfg.seed,
            "prune_ratio": self.pruner.prune_ratio,
            "epochs": self.epochs,
            "epochs_run": len(self.history),
            "budget": cfg.budget,
            "batch_size": self.bs,
            "optimizer": cfg.optimizer,
            "lr": self.lr,
            "schedule": cfg.schedule,
            "label_smoothing": cfg.label_smoothing,
            "num_samples": self.n,
            "num_classes": self.data.num_classes,
            "data_fingerprint": data_fingerprint(self.data),
            "final_acc": final.get("test_acc", float("nan")),
            "best_acc": max(accs) if accs else float("nan"),
            "final_top5": final.get("test_top5", float("nan")),
            "final_train_loss": self.history[-1]["train_loss"] if self.history else float("nan"),
            "train_time_s": self.train_time,
            "selection_time_s": self.selection_time,
            "scoring_time_s": self.scoring_time,
            "eval_time_s": self.eval_time,
            "probe_time_s": self.probe_time,
            "total_time_s": self.train_time + self.scoring_time,
            "samples_forward": self.samples_forward,
            "samples_backprop": self.samples_backprop,
            "optimizer_steps": self.optimizer_steps,
            "realized_prune_ratio": 1.0 - self.samples_backprop / budget_visits,
            "relative_compute": (self.samples_forward + 3 * self.samples_backprop) / (3 * budget_visits),
            "jaccard_mean": float(np.mean(jacs)) if jacs else 1.0,
            **{f"scoring_{k}": v for k, v in self.scoring_cost.items()},
            **self._total_cost(budget_visits),
            **self.pruner.params(),
            "device": str(self.device),
            "world_size": self.dist.world,
            "rank_steps_equal": self._rank_steps_equal(),
            "torch_version": torch.__version__,
            "prunebench_version": prunebench.__version__,
            "python_version": platform.python_version(),
        }
        kept = np.stack(self.kept_masks) if self.kept_masks else None
        return RunResult(row=row, history=list(self.history), usage=self.usage.cpu().numpy(), kept_masks=kept)


def _mark_ended(tracker, status: str, tags: dict[str, str]) -> None:
    """Mark an interrupted run (KILLED, FAILED) in MLflow. A second Ctrl-C/SIGTERM is held back meanwhile
    and a busy store is retried, so the run is not left RUNNING; a server that does not answer is not."""
    from prunebench.errors import TrackingUnavailable

    with deferred_sigint():
        for attempt in range(3):
            try:
                tracker.end(status)
                break
            except TrackingUnavailable:
                return
            except Exception as e:  # e.g. SQLite busy while a sibling process writes
                if attempt == 2:
                    log.warning("could not mark the MLflow run %s (%s: %s)", status, type(e).__name__, e)
                time.sleep(0.5 * (attempt + 1))
        try:
            tracker.set_tags(tags)
        except Exception:
            pass


def _is_early_stop(e: BaseException) -> bool:
    """``optuna.TrialPruned`` raised by a progress callback: an early-stopped trial, not a failure."""
    optuna = sys.modules.get("optuna")  # if optuna was never imported, nothing can have raised it
    return optuna is not None and isinstance(e, optuna.TrialPruned)


def train(config: TrainConfig | dict[str, Any], *, data: TensorData | FolderData | None = None,
          progress: ProgressFn | None = None) -> RunResult:
    """Train one run and return its :class:`RunResult` (``result.row`` is the flat result row).

    ``config`` is a :class:`TrainConfig` or a dict of its fields. ``data`` may pass an already loaded
    dataset (it must match ``config.dataset``); ``progress`` is called with each epoch's metrics.
    """
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    return Trainer(config, data=data, progress=progress).run()
