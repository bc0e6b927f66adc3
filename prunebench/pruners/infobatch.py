"""InfoBatch (Qin et al., ICLR 2024): unbiased dynamic pruning by soft pruning and rescaling."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from prunebench.errors import ConfigError
from prunebench.pruners.base import LossScores, Pruner, Selection, register_pruner
from prunebench.pruners.rules import ordered_subset, randperm, uniform_subset


@dataclass(frozen=True)
class InfoBatchOptions:
    delta: float = 0.875  # annealing: prune while epoch + 1 <= delta * epochs (0-based), then full data, weight 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.delta <= 1.0:
            raise ConfigError(f"delta must be in [0, 1], got {self.delta:g}")


@register_pruner("infobatch")
class InfoBatch(LossScores, Pruner):
    """InfoBatch (Qin et al., ICLR 2024; github.com/NUS-HPC-AI-Lab/InfoBatch).

    Here ``prune_ratio`` is InfoBatch's ``r``, the probability that a well-learned sample is dropped.
    Each epoch: threshold = mean of the stored scores (each sample's most recent loss, initialised to 1);
    the well-learned samples (score < mean) are pruned at random, keeping ``floor((1-r) * n_well)`` of
    them uniformly without replacement (as the reference code does; each has marginal keep probability
    ~= 1-r), and the kept ones get loss weight ``1/(1-r)``; samples with score >= mean are all kept with
    weight 1. Epoch 0 prunes nothing (all scores equal). Pruning runs while ``epoch + 1 <= delta * epochs``
    (0-based epochs, the release's rule), so from epoch ``floor(delta * epochs)`` on the whole dataset is
    used with weight 1 (annealing). The realized prune ratio is therefore below ``r``
    and is reported by the loop. ``delta = 0.875`` is InfoBatch's own recipe; ``delta = 1.0`` (no
    annealing) is the baseline of the OrderDP paper, whose release runs InfoBatch with ``--is_anealing 0``
    (the studies' ``infobatch-noanneal``).

    Departures from the pip release (``infobatch/infobatch.py``, checked at commit 8bbb012): its sampler
    resets the weights to 1 only when ``iterations == delta * epochs + 1``, never true when
    ``delta * epochs`` is fractional (E = 18 or 12 with delta = 0.875), so there the well-learned samples
    kept in the last pruned epoch keep their ``1/(1-r)`` weight through every annealing epoch. That is a
    release bug (the paper and the release's ``research/`` version anneal with weight 1); prunebench
    uses weight 1. The release clamps ``r`` to at most 0.9 (``keep_ratio >= 0.1``); prunebench takes
    ``r`` as given. It initialises scores to 3, prunebench to 1: no effect, as epoch 0 prunes nothing
    and sees every sample.
    """

    granularity: ClassVar[str] = "epoch"
    description: ClassVar[str] = (
        "drop well-learned (loss < mean) samples w.p. r, rescale by 1/(1-r), anneal (Qin et al. ICLR 2024)"
    )
    family: ClassVar[str] = "loss-based"
    paper: ClassVar[str] = (
        "Qin et al., ICLR 2024: InfoBatch: lossless training speed up by unbiased dynamic data pruning"
    )
    cost_profile: ClassVar[tuple[str, ...]] = ()
    uses_weights: ClassVar[bool] = True
    defaults_source: ClassVar[str] = (
        "delta=0.875 and r=0.5 (prune_ratio): InfoBatch's own recipe (the release's defaults)"
    )
    Options = InfoBatchOptions
    default_prune_ratio: ClassVar[float] = 0.5
    short_names: ClassVar[dict[str, str]] = {}
    state_attrs = ("scores",)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_scores(self.num_samples, 1.0)

    @property
    def label(self) -> str:
        return f"infobatch[delta={self.options.delta:g},r={self.prune_ratio:g}]"

    @property
    def anneal_epoch(self) -> int:
        """First epoch trained on full data: the release prunes while ``epoch + 1 <= delta * epochs``."""
        return math.floor(self.options.delta * self.num_epochs)

    def plan_epoch(self, epoch: int) -> Selection:
        n = self.num_samples
        if epoch >= self.anneal_epoch or self.prune_ratio == 0.0:
            return Selection(randperm(n, self.generator), torch.ones(n))
        scores = self.scores_cpu()
        well = scores < scores.mean()
        well_idx = torch.nonzero(well).flatten()
        keep_ratio = 1.0 - self.prune_ratio
        n_keep = int(keep_ratio * well_idx.numel())
        keep = ~well
        keep[well_idx[uniform_subset(well_idx.numel(), n_keep, self.generator)]] = True
        # the epoch order is a second, independent permutation: ordering by the draw above would put the
        # kept well-learned samples first
        indices = ordered_subset(keep, self.generator)
        weights = torch.where(well[indices], 1.0 / keep_ratio, 1.0)
        return Selection(indices, weights)
