"""Bandit-style dynamic pruning (Raju, Daruwalla, Lipasti 2021, "Accelerating deep learning with dynamic
data pruning", arXiv:2111.12621): ``ucb`` and ``epsilon-greedy`` over EMA statistics of each sample's loss.

Each sample is an arm whose reward is its training loss. The statistics are exponential moving averages
updated in :meth:`observe` whenever the sample is trained (untrained samples keep stale statistics); the
selection is made once per epoch from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from prunebench.errors import ConfigError
from prunebench.pruners.base import Pruner, Selection, register_pruner
from prunebench.pruners.rules import ordered_subset, topk_mask, uniform_subset


def _check_ema(ema: float) -> None:
    if not 0.0 <= ema < 1.0:
        raise ConfigError(f"ema must be in [0, 1) (the weight of the old average), got {ema:g}")


class EMALossStats:
    """Mixin: per-sample EMA mean ``mu`` and variance ``var`` of the observed losses.

    With ``a = 1 - ema`` and ``d = l - mu`` (the incremental EMA recurrences, e.g. Finch 2009,
    "Incremental calculation of weighted mean and variance"):

        mu  <- mu + a d                       (= ema * mu + (1 - ema) * l)
        var <- (1 - a) (var + a d^2)

    A sample's first observation sets ``mu = l`` and ``var = 0`` (no blending with an arbitrary initial
    value). Never-trained samples (``seen`` false) rank above every trained one, ties at random, so every
    sample is tried before any is trained twice by exploitation ("optimistic initialisation").
    Tensors live on the losses' device after the first :meth:`observe`.
    """

    mu: torch.Tensor
    var: torch.Tensor
    seen: torch.Tensor

    def _init_stats(self, n: int) -> None:
        self.mu = torch.zeros(n, dtype=torch.float32)
        self.var = torch.zeros(n, dtype=torch.float32)
        self.seen = torch.zeros(n, dtype=torch.bool)

    def observe(self, indices: torch.Tensor, losses: torch.Tensor) -> None:
        dev = losses.device
        if self.mu.device != dev:
            self.mu, self.var, self.seen = self.mu.to(dev), self.var.to(dev), self.seen.to(dev)
        idx = indices.to(dev)
        a = 1.0 - self.options.ema  # type: ignore[attr-defined]
        l = losses.detach().float()
        first = ~self.seen[idx]
        d = l - self.mu[idx]
        self.var[idx] = torch.where(first, torch.zeros_like(l), (1.0 - a) * (self.var[idx] + a * d * d))
        self.mu[idx] = torch.where(first, l, self.mu[idx] + a * d)
        self.seen[idx] = True

    def _stats_cpu(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.mu.detach().cpu(), self.var.detach().cpu(), self.seen.detach().cpu()


@dataclass(frozen=True)
class UCBOptions:
    c: float = 1.0  # exploration weight: score = mu + c * sigma
    ema: float = 0.9  # weight of the old average in the EMA of loss mean and variance

    def __post_init__(self) -> None:
        if self.c < 0:
            raise ConfigError(f"c must be >= 0, got {self.c:g}")
        _check_ema(self.ema)


@register_pruner("ucb")
class UCB(EMALossStats, Pruner):
    """UCB dynamic pruning (Raju, Daruwalla, Lipasti 2021, arXiv:2111.12621).

    Each epoch keeps the ``q = round((1-p)N)`` samples with the largest upper confidence bound
    ``mu_i + c * sigma_i`` (ties uniformly at random via :func:`topk_mask`), where ``mu_i`` and
    ``sigma_i^2`` are EMAs of sample ``i``'s training loss and its variance (see :class:`EMALossStats`),
    and shuffles them. ``prune_ratio`` maps directly: exactly ``q`` sample-visits per epoch, no extra
    forward pass.

    prunebench's choices (the paper sweeps these): defaults ``c = 1``, ``ema = 0.9``; statistics come from
    the losses of the training steps themselves (no separate scoring pass); never-trained samples rank
    first (optimistic initialisation), so epoch 0 is a uniform draw and the first ``ceil(1/(1-p))``
    epochs cover every sample.
    """

    granularity: ClassVar[str] = "epoch"
    description: ClassVar[str] = "keep top-(1-p)N by EMA loss mean + c * EMA std (UCB; Raju et al. 2021)"
    family: ClassVar[str] = "bandit"
    paper: ClassVar[str] = (
        "Raju, Daruwalla & Lipasti 2021 (arXiv:2111.12621): Accelerating deep learning with dynamic data pruning"
    )
    cost_profile: ClassVar[tuple[str, ...]] = ()
    defaults_source: ClassVar[str] = "c=1, ema=0.9: prunebench's (the paper sweeps them)"
    Options = UCBOptions
    state_attrs = ("mu", "var", "seen")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_stats(self.num_samples)

    def scores(self) -> torch.Tensor:
        """The UCB score of every sample (``+inf`` for never-trained ones), on the CPU."""
        mu, var, seen = self._stats_cpu()
        ucb = torch.add(mu, var.clamp_min(0).sqrt_(), alpha=self.options.c)
        return ucb.masked_fill_(~seen, float("inf"))

    def plan_epoch(self, epoch: int) -> Selection:
        return Selection(ordered_subset(topk_mask(self.scores(), self.keep_count, self.generator), self.generator))


@dataclass(frozen=True)
class EpsilonGreedyOptions:
    eps: float = 0.1  # fraction of the budget drawn uniformly from the samples not taken greedily
    ema: float = 0.9  # weight of the old average in the EMA of each sample's loss

    def __post_init__(self) -> None:
        if not 0.0 <= self.eps <= 1.0:
            raise ConfigError(f"eps must be in [0, 1], got {self.eps:g}")
        _check_ema(self.ema)


@register_pruner("epsilon-greedy")
class EpsilonGreedy(EMALossStats, Pruner):
    """Epsilon-greedy dynamic pruning (Raju, Daruwalla, Lipasti 2021, arXiv:2111.12621).

    Each epoch splits the budget ``q = round((1-p)N)``: ``q - round(eps * q)`` samples with the largest EMA
    loss (exploitation; ties uniformly at random) and ``round(eps * q)`` drawn uniformly without
    replacement from all the others (exploration); the union is shuffled. Exactly ``q`` sample-visits per
    epoch, no extra forward pass. Scores are EMAs of each sample's training loss (see
    :class:`EMALossStats`); never-trained samples rank first (optimistic initialisation).

    prunebench's choices (the paper sweeps these): defaults ``eps = 0.1``, ``ema = 0.9``; scores come from
    the training steps' own losses.
    """

    granularity: ClassVar[str] = "epoch"
    description: ClassVar[str] = "(1-eps) of the budget top EMA loss, eps uniform from the rest (Raju et al. 2021)"
    family: ClassVar[str] = "bandit"
    paper: ClassVar[str] = (
        "Raju, Daruwalla & Lipasti 2021 (arXiv:2111.12621): Accelerating deep learning with dynamic data pruning"
    )
    cost_profile: ClassVar[tuple[str, ...]] = ()
    defaults_source: ClassVar[str] = "eps=0.1, ema=0.9: prunebench's (the paper sweeps them)"
    Options = EpsilonGreedyOptions
    state_attrs = ("mu", "var", "seen")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_stats(self.num_samples)

    def split(self) -> tuple[int, int]:
        """``(greedy, uniform)`` parts of the budget."""
        q = self.keep_count
        explore = int(round(self.options.eps * q))
        return q - explore, explore

    def scores(self) -> torch.Tensor:
        """The EMA loss of every sample (``+inf`` for never-trained ones), on the CPU."""
        mu, _, seen = self._stats_cpu()
        return mu.masked_fill(~seen, float("inf"))

    def plan_epoch(self, epoch: int) -> Selection:
        n_top, n_explore = self.split()
        keep = topk_mask(self.scores(), n_top, self.generator)
        rest = torch.nonzero(~keep).flatten()
        keep[rest[uniform_subset(rest.numel(), n_explore, self.generator)]] = True
        return Selection(ordered_subset(keep, self.generator))  # a new permutation: apart from the choice
