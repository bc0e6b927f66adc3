"""``loss-topk``: greedy, biased dynamic pruning: keep the largest stored losses every epoch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from prunebench.pruners.base import LossScores, Pruner, Selection, register_pruner
from prunebench.pruners.rules import ordered_subset, topk_mask


@dataclass(frozen=True)
class LossTopKOptions:
    initial_score: float = 3.0  # score of never-trained samples (as OrderDP's release)


@register_pruner("loss-topk")
class LossTopK(LossScores, Pruner):
    """Each epoch keep the ``q = round((1-p)N)`` samples with the largest stored loss (ties at random).

    The greedy, biased baseline: OrderDP with ``s = N`` (Jin et al., ICLR 2026, Sec. on the surrogate
    loss; also the "hard example" heuristic of e.g. Loshchilov & Hutter 2015). Scores are each sample's
    most recent training loss; untrained samples keep their stale score, so a sample that once scored low
    may never return.
    """

    granularity: ClassVar[str] = "epoch"
    description: ClassVar[str] = "keep the top-(1-p)N stored losses each epoch (greedy, biased; OrderDP with s=N)"
    family: ClassVar[str] = "loss-based"
    paper: ClassVar[str] = (
        "Jin et al., ICLR 2026: OrderDP with s = N (the greedy baseline; cf. Loshchilov & Hutter 2015, Online "
        "batch selection)"
    )
    cost_profile: ClassVar[tuple[str, ...]] = ()
    defaults_source: ClassVar[str] = "initial_score=3.0: OrderDP's CIFAR release"
    Options = LossTopKOptions
    short_names = {"initial_score": "init"}
    state_attrs = ("scores",)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_scores(self.num_samples, self.options.initial_score)

    def plan_epoch(self, epoch: int) -> Selection:
        return Selection(ordered_subset(topk_mask(self.scores_cpu(), self.keep_count, self.generator), self.generator))
