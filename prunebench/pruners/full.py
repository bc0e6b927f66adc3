"""``full``: all data, every epoch (the reference every leaderboard compares with)."""

from __future__ import annotations

from typing import ClassVar

from prunebench.errors import ConfigError
from prunebench.pruners.base import Pruner, Selection, register_pruner
from prunebench.pruners.rules import uniform_subset


@register_pruner("full")
class Full(Pruner):
    """Train on every sample each epoch, in a fresh uniformly random order (no pruning)."""

    granularity: ClassVar[str] = "epoch"
    description: ClassVar[str] = "all data every epoch (no pruning; the reference)"
    family: ClassVar[str] = "reference"
    paper: ClassVar[str] = "none: the unpruned baseline"
    cost_profile: ClassVar[tuple[str, ...]] = ()
    defaults_source: ClassVar[str] = "no options"
    default_prune_ratio: ClassVar[float] = 0.0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.prune_ratio != 0.0:
            raise ConfigError(f"pruner 'full' trains on all data: prune_ratio must be 0, got {self.prune_ratio:g}")

    @property
    def label(self) -> str:
        return "full"

    def plan_epoch(self, epoch: int) -> Selection:
        return Selection(uniform_subset(self.num_samples, self.num_samples, self.generator))
