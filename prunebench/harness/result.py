"""What a run produced: :class:`RunResult` and the columns of its one flat result row."""

from __future__ import annotations

import math
import platform
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import prunebench
from prunebench.harness.identity import data_fingerprint

#: numbers of the result row that the run measured: its final MLflow metrics (with every ``scoring_*``
#: number); the row's other numbers (num_classes, world_size, ...) are settings, logged as params
RESULT_METRICS = (
    "final_acc",
    "best_acc",
    "final_top5",
    "final_train_loss",
    "train_time_s",
    "selection_time_s",
    "scoring_time_s",
    "eval_time_s",
    "probe_time_s",
    "total_time_s",
    "samples_forward",
    "samples_backprop",
    "optimizer_steps",
    "realized_prune_ratio",
    "relative_compute",
    "jaccard_mean",
    "epochs_run",
)


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

    def kept_mask(self, epoch: int) -> np.ndarray:
        """Boolean mask [N] of the samples trained in ``epoch``."""
        assert self.kept_masks is not None
        return np.unpackbits(self.kept_masks[epoch], count=self.usage.shape[0]).astype(bool)


def is_metric(key: str) -> bool:
    """Whether a number of the row is something the run measured (else a setting)."""
    return key in RESULT_METRICS or key.startswith("scoring_")


def accuracy_columns(history: list[dict[str, Any]]) -> dict[str, float]:
    """Final and best accuracy, final top-5 and final training loss (NaN before any evaluation)."""
    accs = [h["test_acc"] for h in history if "test_acc" in h]
    final: dict[str, Any] = next((h for h in reversed(history) if "test_acc" in h), {})
    return {
        "final_acc": final.get("test_acc", float("nan")),
        "best_acc": max(accs) if accs else float("nan"),
        "final_top5": final.get("test_top5", float("nan")),
        "final_train_loss": history[-1]["train_loss"] if history else float("nan"),
    }


def jaccard_mean(history: list[dict[str, Any]]) -> float:
    """Mean Jaccard overlap of consecutive epochs' kept sets (1.0 with fewer than two epochs)."""
    jacs = [h["jaccard"] for h in history if not math.isnan(h["jaccard"])]
    return float(np.mean(jacs)) if jacs else 1.0


def system_columns(device: torch.device, world_size: int, rank_steps_equal: bool) -> dict[str, Any]:
    return {
        "device": str(device),
        "world_size": world_size,
        "rank_steps_equal": rank_steps_equal,
        "torch_version": torch.__version__,
        "prunebench_version": prunebench.__version__,
        "python_version": platform.python_version(),
    }


PLAN_SCORE_SNAPSHOTS = 10  # epochs (1..E-1, evenly spaced) whose plan-time pruner scores are logged


class Records:
    """Per-epoch records of a run: metrics ``history``, per-sample ``usage`` counts, the previous kept set
    (Jaccard), packed kept masks (``record_kept``) and a few epochs' plan-time pruner scores."""

    def __init__(self, num_samples: int, epochs: int, device: torch.device, record_kept: bool) -> None:
        self.usage = torch.zeros(num_samples, dtype=torch.int64, device=device)
        self.prev_mask: torch.Tensor | None = None
        self.history: list[dict[str, Any]] = []
        self.kept_masks: list[np.ndarray] = []
        # loss-score pruners (orderdp, loss-topk, ...): the stored scores at plan time of a few epochs,
        # so reports can rank samples as the pruner did and compare keep frequencies per rank with gamma
        self.plan_scores: dict[int, np.ndarray] = {}
        self.plan_score_epochs = (
            set(np.linspace(1, epochs - 1, PLAN_SCORE_SNAPSHOTS).round().astype(int).tolist()) if epochs > 1 else set()
        )
        self.record_kept = record_kept
        self.device = device

    def add_epoch(self, counts: torch.Tensor) -> float:
        """Count an epoch's backprops; returns the Jaccard overlap of its kept set with the previous one."""
        mask = counts > 0
        self.usage += counts
        jac = float("nan")
        if self.prev_mask is not None:
            union = (mask | self.prev_mask).sum().item()
            jac = (mask & self.prev_mask).sum().item() / union if union else 1.0
        self.prev_mask = mask
        if self.record_kept:
            self.kept_masks.append(np.packbits(mask.cpu().numpy()))
        return jac

    def state(self) -> dict[str, Any]:
        return {
            "usage": self.usage.cpu(),
            "prev_mask": None if self.prev_mask is None else self.prev_mask.cpu(),
            "history": self.history,
            "kept_masks": self.kept_masks,
            "plan_scores": self.plan_scores,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.usage = state["usage"].to(self.device)
        self.prev_mask = None if state["prev_mask"] is None else state["prev_mask"].to(self.device)
        self.history = list(state["history"])
        self.kept_masks = list(state["kept_masks"])
        self.plan_scores = dict(state["plan_scores"])


def run_result(tr: Any, status: str | None = None, error: str | None = None) -> RunResult:
    """The result of the run of trainer ``tr`` (:class:`~prunebench.harness.loop.Trainer`) with its complete row, at
    any point (the row of how it ended by default)."""
    cfg, h, bv = tr.config, tr.records.history, tr.epochs * tr.n
    row: dict[str, Any] = {
        "run_id": tr.run_id if tr.dist.is_main else None,
        "status": tr.status if status is None else status,
        "error": tr.error if error is None else error,
        "dataset": cfg.dataset,
        "model": cfg.model,
        "pruner": cfg.pruner,
        "label": tr.pruner.label,
        "granularity": tr.pruner.granularity,
        "seed": cfg.seed,
        "prune_ratio": tr.pruner.prune_ratio,
        "epochs": tr.epochs,
        "epochs_run": len(h),
        "budget": cfg.budget,
        "batch_size": tr.bs,
        "optimizer": cfg.optimizer,
        "lr": tr.lr,
        "schedule": cfg.schedule,
        "label_smoothing": cfg.label_smoothing,
        "num_samples": tr.n,
        "num_classes": tr.data.num_classes,
        "data_fingerprint": data_fingerprint(tr.data),
        **accuracy_columns(h),
        **tr.meter.row(bv),
        "jaccard_mean": jaccard_mean(h),
        **{f"scoring_{k}": v for k, v in tr.meter.scoring_cost.items()},
        **tr.meter.total_cost(bv),
        **tr.pruner.params(),
        **system_columns(tr.device, tr.dist.world, tr.dist.steps_equal(tr.meter.local_steps, tr.device)),
    }
    kept = np.stack(tr.records.kept_masks) if tr.records.kept_masks else None
    return RunResult(row=row, history=list(h), usage=tr.records.usage.cpu().numpy(), kept_masks=kept)
