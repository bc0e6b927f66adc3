"""Random baselines: ``random-static`` (one subset) and ``random-dynamic`` (a fresh subset per epoch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from prunebench.pruners.base import Pruner, Selection, register_pruner
from prunebench.pruners.rules import class_balanced, shuffle, uniform_subset


@dataclass(frozen=True)
class RandomStaticOptions:
    class_balanced: bool = False  # keep each class's share of the budget (largest-remainder rounding)


@register_pruner("random-static")
class RandomStatic(Pruner):
    """One uniform subset of ``q = round((1-p)N)`` samples, drawn before training and kept throughout.

    The classic coreset baseline (e.g. Guo et al., DeepCore, 2022). With ``class_balanced`` the budget is
    split across classes in proportion to their sizes and drawn uniformly within each class. The subset
    is fixed; only the order is reshuffled every epoch.
    """

    granularity: ClassVar[str] = "static"
    description: ClassVar[str] = (
        "one uniform random subset before training (coreset baseline; DeepCore, Guo et al. 2022)"
    )
    family: ClassVar[str] = "random"
    paper: ClassVar[str] = "Guo, Zhao & Bai, DEXA 2022: DeepCore (the uniform coreset baseline)"
    cost_profile: ClassVar[tuple[str, ...]] = ()
    defaults_source: ClassVar[str] = "class_balanced=false: prunebench's (DeepCore: per class)"
    Options = RandomStaticOptions
    state_attrs = ("subset",)

    subset: torch.Tensor | None = None

    def prepare(self, context) -> None:
        super().prepare(context)
        self.subset = self._draw(context.labels if self.options.class_balanced else None, context.num_classes)

    def _draw(self, labels: torch.Tensor | None, num_classes: int | None) -> torch.Tensor:
        q = self.keep_count
        if labels is None:
            return uniform_subset(self.num_samples, q, self.generator)
        return class_balanced(
            labels.cpu(), q, lambda idx, b: idx[uniform_subset(idx.numel(), b, self.generator)], num_classes
        )

    def plan_epoch(self, epoch: int) -> Selection:
        if self.subset is None:
            if self.options.class_balanced:
                raise RuntimeError("random-static with class_balanced needs prepare(context) with labels first")
            self.subset = self._draw(None, None)
        return Selection(shuffle(self.subset, self.generator))


@register_pruner("random-dynamic")
class RandomDynamic(Pruner):
    """A fresh uniform subset of ``q = round((1-p)N)`` samples every epoch (Raju et al., 2021).

    Equals OrderDP with ``s = q`` (every candidate kept).
    """

    granularity: ClassVar[str] = "epoch"
    description: ClassVar[str] = "fresh uniform subset each epoch (Raju et al. 2021, dynamic data pruning)"
    family: ClassVar[str] = "random"
    paper: ClassVar[str] = (
        "Raju, Daruwalla & Lipasti 2021 (arXiv:2111.12621): Accelerating deep learning with dynamic data pruning"
    )
    cost_profile: ClassVar[tuple[str, ...]] = ()
    defaults_source: ClassVar[str] = "no options"

    def plan_epoch(self, epoch: int) -> Selection:
        return Selection(uniform_subset(self.num_samples, self.keep_count, self.generator))
