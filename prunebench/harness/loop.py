"""The training loop: ``train(config) -> RunResult`` with one flat result row.

A :class:`Trainer` assembles a run from collaborators that it calls in one direction:

* ``batches`` (:mod:`~prunebench.harness.batches`): tensor data on the device or folder data through a
  DataLoader, decided once; every batch arrives normalised (and under DDP sharded).
* ``step`` (:mod:`~prunebench.harness.step`): plan -> gather -> augment -> forward -> (weights) ->
  backward -> step -> observe, the hot path; ``epoch`` (:mod:`~prunebench.harness.epoch`): one epoch of
  either pruning granularity.
* ``meter`` and ``budget`` (:mod:`~prunebench.harness.cost`): forward-only sample passes,
  backpropagated sample-visits, optimizer steps, train wall-clock without evaluation (CUDA synchronised),
  selection time; the learning rate is a function of progress over the planned run (epochs, or optimizer
  steps in the ``steps`` budget), so pruned or variable-length epochs never distort the schedule.
* ``records`` (:mod:`~prunebench.harness.result`): per-epoch metrics, usage counts, kept-set Jaccard.
* the lifecycle (:mod:`~prunebench.harness.lifecycle`): preflight, tracking, resume and how a run ends
  (:mod:`~prunebench.harness.ending`); DDP lives behind :class:`~prunebench.harness.distributed.DistInfo`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from prunebench.datasets import FolderData, TensorData, load_dataset
from prunebench.errors import ConfigError, TrainingError
from prunebench.harness import distributed as ddp
from prunebench.harness import lifecycle
from prunebench.harness.batches import Normalize, make_batches
from prunebench.harness.batchnorm import CandidateBNStats
from prunebench.harness.checkpoint import load_trainer_state, save_checkpoint, trainer_state
from prunebench.harness.config import TrainConfig
from prunebench.harness.cost import Budget, CostMeter, sync
from prunebench.harness.distributed import resolve_device
from prunebench.harness.epoch import Epoch, EpochStats
from prunebench.harness.evaluate import evaluate
from prunebench.harness.identity import run_identity
from prunebench.harness.models import create_model
from prunebench.harness.optim import create_optimizer, default_lr
from prunebench.harness.probe import Probe
from prunebench.harness.proxy import ProxyRunner, proxy_context
from prunebench.harness.result import RESULT_METRICS, Records, RunResult, run_result
from prunebench.harness.step import Precision, Step
from prunebench.pruners import BatchPruner, PruneContext, Pruner, create_pruner
from prunebench.pruners.base import get_pruner_class
from prunebench.seeding import derive_seed, make_generator

__all__ = ["RESULT_METRICS", "RunResult", "Trainer", "prune_context", "resolve_device", "train"]

ProgressFn = Callable[[dict[str, Any]], None]
log = logging.getLogger("prunebench.harness")


class Trainer:
    """One run. Built by :func:`train`; exposed for checkpointing, proxies, benchmarks and tests.

    Public hooks: ``progress`` is called with each epoch's metrics (it may raise
    :class:`~prunebench.harness.ending.StopRun`); ``on_start`` with the MLflow run id once the run has
    started (a leaderboard's claim on its grid cell; what it raises ends the run like a training error);
    ``step_observers`` after every optimizer step as ``f(indices, logits, targets, losses)``.
    """

    def __init__(
        self,
        config: TrainConfig,
        data: TensorData | FolderData | None = None,
        progress: ProgressFn | None = None,
        distributed: bool = True,
    ) -> None:
        self.config, self.progress = config, progress
        self.device = resolve_device(config.device)
        # under torchrun (WORLD_SIZE > 1) join the process group; proxies pass distributed=False
        self.dist = ddp.init_distributed(self.device.type) if distributed else ddp.DistInfo()
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        ddp.check_batch_size(config.batch_size, self.dist)
        get_pruner_class(config.pruner)  # fail fast on an unknown name, before loading data
        self.data = (
            data
            if data is not None
            else load_dataset(config.dataset, config.data_dir, download=config.download, image_size=config.image_size)
        )
        self.n, self.bs = self.data.num_train, config.batch_size
        self.epochs = int(config.epochs or self.data.default_epochs)
        self.lr = config.lr if config.lr is not None else default_lr(config.optimizer, self.bs)
        self.meter = CostMeter()
        total_steps = self.epochs * math.ceil(self.n / self.bs) if config.budget == "steps" else None
        self.budget = Budget(self.epochs, total_steps, self.meter)
        self.probe_epochs = frozenset(config.probe_epochs)
        if self.probe_epochs and config.budget == "epochs" and max(self.probe_epochs) >= self.epochs:
            raise ConfigError(
                f"config: probe_epochs {sorted(self.probe_epochs)} beyond the run; valid: 0 <= epoch < {self.epochs}"
            )
        self.pruner = self._make_pruner()
        self._build_model()
        self._build_loop()
        self.records = Records(self.n, self.epochs, self.device, config.record_kept)
        self.epoch = 0
        self.run_id: str | None = None
        self.status, self.error = "FINISHED", ""  # how the run ended (the lifecycle sets them)
        self.proxy_runner: ProxyRunner | None = None  # set by context(): the static methods' proxy
        self.on_start: Callable[[str | None], None] | None = None

    def _make_pruner(self) -> Pruner:
        cfg = self.config
        num_epochs = self.epochs
        cls = get_pruner_class(cfg.pruner)
        p = cfg.prune_ratio if cfg.prune_ratio is not None else cls.default_prune_ratio
        if cfg.budget == "steps" and p > 0:
            # same optimizer steps as full data: the pruner plans over the stretched number of epochs
            keep = max(1, round((1 - p) * self.n))
            num_epochs = math.ceil(self.budget.total_steps / math.ceil(keep / self.bs))
        return create_pruner(
            cfg.pruner, num_samples=self.n, num_epochs=num_epochs, prune_ratio=p, seed=cfg.seed, **cfg.pruner_options
        )

    def _build_model(self) -> None:
        cfg = self.config
        self.candidate_bn_wanted = isinstance(self.pruner, BatchPruner) and self.pruner.bn_stats == "candidates"
        if self.candidate_bn_wanted and (self.dist.enabled or cfg.compile):
            raise ConfigError(
                f"{self.pruner.label}: bn_stats='candidates' runs in one process without compile; "
                f"valid there: bn_stats='kept'"
            )
        if self.dist.enabled and isinstance(self.pruner, BatchPruner) and not isinstance(self.data, TensorData):
            raise ConfigError(
                f"{cfg.pruner} under DDP needs an in-memory dataset (digits, CIFAR, synthetic); "
                f"{cfg.dataset} streams from files"
            )
        self.channels_last = cfg.channels_last if cfg.channels_last is not None else self.device.type == "cuda"
        # model init from its own seed without touching the caller's global RNG state
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(cfg.seed, "model"))
            model = create_model(cfg.model, self.data.num_classes, self.data.input_shape)
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        step_model = self.dist.wrap(model, self.device)
        self.step_model = torch.compile(step_model) if cfg.compile else step_model
        self.optimizer = create_optimizer(cfg.optimizer, model, self.lr, cfg.momentum, cfg.nesterov, cfg.weight_decay)

    def _build_loop(self) -> None:
        cfg = self.config
        bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and self.device.type == "cuda")
        self.precision = Precision(self.device, bf16, cfg.label_smoothing)
        self.aug_gen = make_generator(cfg.seed, "augment", self.device)
        normalize = Normalize(self.data.mean, self.data.std, self.device, self.channels_last)
        self.batches = make_batches(
            self.data, self.device, normalize, self.dist, cfg.num_workers, cfg.augment, self.aug_gen
        )
        self.step = Step(
            self.model,
            self.step_model,
            self.optimizer,
            self.pruner,
            self.precision,
            self.meter,
            self.dist,
            self.lr,
            cfg.schedule,
            cfg.warmup,
        )
        # a batch method asking for the candidate batch's BatchNorm statistics in its backprop step
        candidate_bn = CandidateBNStats(self.model) if self.candidate_bn_wanted else None
        self.epoch_runner = Epoch(
            self.pruner,
            self.batches,
            self.step,
            self.precision,
            self.meter,
            self.budget,
            self.bs,
            self.n,
            self.probe_epochs,
            candidate_bn,
        )
        # gradient-direction probe (harness/probe.py): fixed full-data sample, per-epoch loss-weight sums
        self.grad_probe = Probe(self.model, self.precision.losses, self.n, cfg.probe_samples, cfg.seed, self.bs)

    # -- public pieces of a run ----------------------------------------------------------------------
    @property
    def history(self) -> list[dict[str, Any]]:
        return self.records.history

    @property
    def step_observers(self) -> list:
        return self.step.observers

    def context(self) -> PruneContext:
        """The pruner's context (labels, classes, the proxy runner and its cache)."""
        ctx, self.proxy_runner = prune_context(self.config, self.data, self.device)
        return ctx

    def run(self) -> RunResult:
        """Prepare the pruner, train, evaluate, log; resume from ``checkpoint_dir`` when asked.

        Runs inside ``torch.random.fork_rng``: the global RNG (used only by layers such as dropout) is
        seeded from the run seed and checkpointed, and the caller's global RNG state is restored after.
        """
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(derive_seed(self.config.seed, "global"))
            return lifecycle.execute(self)

    def run_epoch(self, epoch: int) -> EpochStats:
        """Train one epoch (no evaluation, no records): the pruner plans it, its batches are stepped."""
        return self.epoch_runner(epoch)

    def prepare_pruner(self) -> None:
        """``prepare()`` (static methods: the proxy run) timed as scoring; under DDP on rank 0 only, and
        the resulting pruner state is broadcast so every rank plans identically."""
        if self.dist.is_main:
            t0 = time.perf_counter()
            self.pruner.prepare(self.context())
            sync(self.device)
            self.meter.scoring_time = time.perf_counter() - t0
            r = (
                self.proxy_runner.report()
                if self.proxy_runner is not None
                else {"samples_backprop": 0, "samples_forward": 0, "proxy_time_s": 0.0, "proxy_wall_s": 0.0}
            )
            self.meter.add_scoring_report(r, self.epochs * self.n)
            if r.get("cache_hit"):
                log.info("%s: proxy scores reused from the cache in %s", self.pruner.label, self.proxy_runner.cache_dir)
        if self.dist.enabled:
            m = self.meter
            state = self.dist.share(
                (self.pruner.state_dict(), m.scoring_time, m.scoring_cost) if self.dist.is_main else None
            )
            if not self.dist.is_main:
                self.pruner.load_state_dict(state[0])
                self.pruner.context = self.context()
                m.scoring_time, m.scoring_cost = state[1], dict(state[2])

    def train_epochs(self, tracker) -> None:
        """Train until the budget is spent: each epoch timed, recorded, evaluated when due, checkpointed."""
        cfg = self.config
        while not self.budget.finished(self.epoch):
            epoch = self.epoch
            # outside the clock: a copy for the reports, not part of the method's cost
            scores = self.pruner.plan_scores() if cfg.record_kept and epoch in self.records.plan_score_epochs else None
            if scores is not None:
                self.records.plan_scores[epoch] = scores.numpy().astype(np.float32)
            sync(self.device)
            t0, sel_before = time.perf_counter(), self.meter.selection_time
            stats = self.run_epoch(epoch)
            sync(self.device)
            dt = time.perf_counter() - t0
            self.meter.train_time += dt
            metrics = self._end_epoch(epoch, stats, dt, self.meter.selection_time - sel_before)
            tracker.log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step=epoch)
            if self.progress is not None:
                self.progress({**metrics, "epochs": self.epochs})
            self.pruner.epoch_end(epoch)
            self.epoch = epoch + 1
            due = self.budget.finished(self.epoch) or self.epoch % cfg.checkpoint_every == 0
            if cfg.checkpoint_dir and self.dist.is_main and due:
                save_checkpoint(cfg.checkpoint_dir, self.state_dict())

    def _end_epoch(self, epoch: int, stats: EpochStats, dt: float, selection_s: float) -> dict[str, Any]:
        mean_loss = stats.loss_sum.item() / max(1, stats.samples)
        if not math.isfinite(mean_loss):
            raise TrainingError(
                f"training loss became {mean_loss} in epoch {epoch} ({self.pruner.label}, "
                f"lr={self.lr:g}); lower the learning rate or check the data"
            )
        jac = self.records.add_epoch(stats.counts)
        m = self.meter
        metrics = {
            "epoch": epoch,
            "train_loss": mean_loss,
            "kept": stats.samples,
            "kept_fraction": stats.samples / self.n,
            "jaccard": jac,
            "epoch_time_s": dt,
            "selection_time_s": selection_s,
            "samples_backprop": m.samples_backprop,
            "samples_forward": m.samples_forward,
            "optimizer_steps": m.optimizer_steps,
            "lr": self.step.lr_at(min(1.0, self.budget.progress(epoch, 1.0))),
            "lr_scale": self.step.lr_scale,
        }
        if epoch in self.probe_epochs:
            metrics.update(self.probe(stats.counts, stats.weight_sums))
        if self.budget.finished(epoch + 1) or (epoch + 1) % self.config.eval_every == 0:
            with m.timing("eval_time"):
                metrics.update(self.evaluate())
        self.records.history.append(metrics)
        return metrics

    def evaluate(self) -> dict[str, float]:
        model = self.model if self.dist.enabled else self.step_model  # no DDP collectives in evaluation
        return evaluate(model, self.batches, self.precision, self.data.num_classes, self.config.eval_batch_size)

    def probe(self, counts: torch.Tensor, wsum: torch.Tensor | None) -> dict[str, float]:
        """Gradient-direction probe at the current parameters (see :mod:`prunebench.harness.probe`)."""
        sync(self.device)
        t0 = time.perf_counter()
        out = self.grad_probe(self.batches, self.precision.autocast, counts, wsum)
        sync(self.device)
        dt = time.perf_counter() - t0
        self.meter.probe_time += dt
        return {**out, "probe_time_s": dt}

    def result(self, status: str | None = None, error: str | None = None) -> RunResult:
        """The run's result with its complete row, at any point (the row of how it ended by default)."""
        return run_result(self, status, error)

    # -- checkpoints ---------------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """The settings and the data a checkpoint of this run may be resumed with."""
        return run_identity(self.config, self.data)

    def state_dict(self) -> dict[str, Any]:
        """The full training state (model, optimizer, every RNG, pruner, counters, records)."""
        return trainer_state(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_trainer_state(self, state)


def prune_context(config: TrainConfig, data, device: torch.device) -> tuple[PruneContext, ProxyRunner]:
    """A run's :class:`PruneContext` and its proxy runner, whose proxies train with :class:`Trainer`."""
    return proxy_context(config, data, device, lambda cfg, d: Trainer(cfg, data=d, distributed=False))


def train(
    config: TrainConfig | dict[str, Any],
    *,
    data: TensorData | FolderData | None = None,
    progress: ProgressFn | None = None,
) -> RunResult:
    """Train one run and return its :class:`RunResult` (``result.row`` is the flat result row).

    ``config`` is a :class:`TrainConfig` or a dict of its fields. ``data`` may pass an already loaded
    dataset (it must match ``config.dataset``); ``progress`` is called with each epoch's metrics.
    """
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    return Trainer(config, data=data, progress=progress).run()
