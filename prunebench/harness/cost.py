"""Cost metering: what a run spent, always counted, and the budget that decides when it ends.

* :class:`CostMeter` holds the counters (forward-only sample passes, backpropagated sample-visits,
  optimizer steps, train / selection / evaluation / scoring / probe seconds, the proxy's cost) and
  turns them into the cost columns of the result row.
* :class:`Budget` is the run's length (epochs, or optimizer steps in the ``steps`` budget): the
  learning-rate schedule's progress, the steps left, and whether an epoch is the last one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

#: the counters a checkpoint stores (the names are part of the checkpoint format)
COUNTERS = (
    "samples_forward",
    "samples_backprop",
    "optimizer_steps",
    "train_time",
    "selection_time",
    "eval_time",
    "scoring_time",
    "scoring_cost",
    "probe_time",
)


def sync(device: torch.device) -> None:
    """Wait for the device: wall-clock around CUDA work is only meaningful after it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class CostMeter:
    samples_forward: int = 0  # forward-only sample passes (candidate scoring)
    samples_backprop: int = 0  # sample-visits with a forward-backward pass
    optimizer_steps: int = 0
    local_steps: int = 0  # backward passes taken by this process (equal on every DDP rank)
    train_time: float = 0.0
    selection_time: float = 0.0
    eval_time: float = 0.0
    scoring_time: float = 0.0
    probe_time: float = 0.0
    scoring_cost: dict[str, Any] = field(default_factory=dict)  # the proxy run's cost (``scoring_*`` columns)

    @contextlib.contextmanager
    def timing(self, counter: str) -> Iterator[None]:
        """Add the wall-clock of the block to ``counter`` (the caller synchronises the device if needed)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            setattr(self, counter, getattr(self, counter) + time.perf_counter() - t0)

    def state(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in COUNTERS}

    def load(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)

    def add_scoring_report(self, report: dict[str, Any], budget_visits: int) -> None:
        """Put the proxy run's cost (a ``ProxyRunner.report()``) beside the training cost."""
        report["relative_compute"] = (report["samples_forward"] + 3 * report["samples_backprop"]) / (3 * budget_visits)
        self.scoring_cost.update(report)

    def total_cost(self, budget_visits: int) -> dict[str, float]:
        """Training + scoring cost (prunebench.reports.stats' cost model, the proxy charged in full):
        ``total_compute`` relative to full training, ``total_cost_s`` in seconds with the proxy's original
        time in place of this run's time in the proxy runner (a cache hit costs what the miss cost)."""
        sc = self.scoring_cost
        own = max(0.0, self.scoring_time - float(sc.get("proxy_wall_s", 0.0)))
        return {
            "total_compute": (self.samples_forward + 3 * self.samples_backprop) / (3 * budget_visits)
            + float(sc.get("relative_compute", 0.0)),
            "total_cost_s": self.train_time + own + float(sc.get("proxy_time_s", 0.0)),
        }

    def row(self, budget_visits: int) -> dict[str, Any]:
        """The cost columns of the result row; ``budget_visits`` is epochs x N (full training)."""
        return {
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
        }


@dataclass
class Budget:
    """The planned run: ``epochs``, or ``total_steps`` optimizer steps (``steps`` budget, else None)."""

    epochs: int
    total_steps: int | None
    meter: CostMeter

    def progress(self, epoch: int, frac: float) -> float:
        """Fraction of the planned run done (the learning-rate schedule's clock)."""
        if self.total_steps is not None:
            return self.meter.optimizer_steps / self.total_steps
        return (epoch + frac) / self.epochs

    def steps_left(self) -> int | None:
        return None if self.total_steps is None else self.total_steps - self.meter.optimizer_steps

    def can_step(self) -> bool:
        return self.total_steps is None or self.total_steps - self.meter.optimizer_steps > 0

    def finished(self, epoch: int) -> bool:
        """Whether the run is over once ``epoch`` epochs were trained."""
        if self.total_steps is None:
            return epoch >= self.epochs
        return self.meter.optimizer_steps >= self.total_steps
