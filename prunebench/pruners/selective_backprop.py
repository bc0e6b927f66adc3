"""Selective backprop (Jiang et al. 2019, "Accelerating deep learning by focusing on the biggest losers",
arXiv:1910.00762; reference code github.com/angelajiang/SelectiveBackprop)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from prunebench.errors import ConfigError
from prunebench.pruners.base import BatchPruner, BatchSelection, CandidateBatch, Selection, register_pruner
from prunebench.pruners.rules import uniform_subset


def expected_keep_fraction(beta: float, floor: float) -> float:
    """``E[max(floor, F^beta)]`` for a percentile ``F ~ U(0, 1)``.

    With ``u0 = floor^(1/beta)``: ``floor * u0 + (1 - u0^(beta+1)) / (beta+1)``; ``1/(beta+1)`` for
    ``floor = 0``.
    """
    if beta <= 0:
        return 1.0
    if floor <= 0:
        return 1.0 / (beta + 1.0)
    u0 = floor ** (1.0 / beta)
    return floor * u0 + (1.0 - u0 ** (beta + 1.0)) / (beta + 1.0)


def beta_for_keep_fraction(keep: float, floor: float = 0.0) -> float:
    """The ``beta`` with ``expected_keep_fraction(beta, floor) == keep`` (bisection; decreasing in beta)."""
    if not floor < keep <= 1.0:
        raise ConfigError(
            f"selective-backprop: the keep fraction 1-p={keep:g} must exceed beta_min={floor:g}; "
            f"valid: prune_ratio < {1 - floor:g} or a smaller beta_min"
        )
    if keep == 1.0:
        return 0.0
    lo, hi = 0.0, 1.0
    while expected_keep_fraction(hi, floor) > keep:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if expected_keep_fraction(mid, floor) > keep:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def percentile_rank(losses: torch.Tensor, history: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Percentile of each loss among ``history`` (only where ``mask``) as a fraction in (0, 1].

    ``scipy.stats.percentileofscore(history, l, kind="rank") / 100``, which the reference code calls:
    ``(count(h < l) + count(h <= l) + [l in h]) / (2 len(h))``, i.e. tied values get their mean rank.
    """
    h = history.to(losses.device)[None, :]
    m = torch.ones_like(h, dtype=torch.bool) if mask is None else mask[None, :]
    less = ((h < losses[:, None]) & m).sum(1).float()
    equal = ((h == losses[:, None]) & m).sum(1).float()
    return (2.0 * less + equal + (equal > 0).float()) / (2.0 * m.sum().float())


@dataclass(frozen=True)
class SelectiveBackpropOptions:
    beta: float | None = None  # selectivity exponent; None: solved so that E[backprop fraction] = 1 - p
    beta_min: float = 0.0  # floor on each sample's backprop probability (the reference code's sampling_min)
    history: int = 1024  # R, how many recent losses the percentile is taken over

    def __post_init__(self) -> None:
        if self.beta is not None and not self.beta > 0:
            raise ConfigError(f"beta must be > 0 (or none to derive it from prune_ratio), got {self.beta:g}")
        if not 0.0 <= self.beta_min < 1.0:
            raise ConfigError(f"beta_min must be in [0, 1), got {self.beta_min:g}")
        if self.history < 1:
            raise ConfigError(f"history must be >= 1, got {self.history}")


@register_pruner("selective-backprop")
class SelectiveBackprop(BatchPruner):
    """Selective backprop (Jiang et al. 2019, arXiv:1910.00762).

    Every sample is forwarded each epoch (a uniformly shuffled pass over all ``N``, in candidate batches
    of the backprop batch size). Sample ``i`` is backpropagated with probability
    ``max(beta_min, F(l_i)^beta)``, where ``F(l_i)`` is the percentile rank of its fresh loss among the
    last ``R`` (1024) losses seen (the reference code's ``percentileofscore(kind="rank")``); selected
    samples accumulate into full backprop batches. No loss reweighting. The ``N`` forward-only passes per
    epoch are counted as cost.

    ``prune_ratio`` mapping: unless ``beta`` is given, ``beta`` is solved so that the expected backprop
    fraction for uniform percentiles, ``E[max(beta_min, U^beta)]`` (``1/(beta+1)`` when ``beta_min = 0``),
    equals ``1 - p``; the default ``p = 0.75`` gives the paper's ``beta = 3``. With ``beta`` given, ``p``
    is ignored for selection and the loop reports the realized ratio. Either way the realized ratio is
    only approximately ``p`` (percentiles are discrete and the loss distribution drifts).

    Deviation: the reference code appends losses to the history one sample at a time; here a candidate
    batch's losses join the history together before their percentiles are taken (identical for batches
    of one sample).
    """

    description: ClassVar[str] = "forward all, backprop w.p. max(beta_min, percentile(loss)^beta) (Jiang et al. 2019)"
    Options = SelectiveBackpropOptions
    default_prune_ratio: ClassVar[float] = 0.75
    state_attrs = ("hist", "hist_count")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        o = self.options
        self.beta = float(o.beta) if o.beta is not None else beta_for_keep_fraction(1.0 - self.prune_ratio, o.beta_min)
        self.hist = torch.zeros(o.history, dtype=torch.float32)  # circular buffer of recent losses
        self.hist_count = torch.zeros((), dtype=torch.int64)  # losses ever appended

    def params(self) -> dict:
        return {**super().params(), "pruner.beta_resolved": self.beta}

    def plan_epoch(self, epoch: int) -> Selection:
        return Selection(uniform_subset(self.num_samples, self.num_samples, self.generator))

    def _append(self, losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Append ``losses`` to the circular history; return it with a mask of its filled slots."""
        r = self.hist.numel()
        if self.hist.device != losses.device:
            self.hist, self.hist_count = self.hist.to(losses.device), self.hist_count.to(losses.device)
        tail = losses[-r:]  # a batch longer than R leaves only its last R losses
        pos = (self.hist_count + (losses.numel() - tail.numel()) + torch.arange(tail.numel(), device=losses.device)) % r
        self.hist[pos] = tail
        self.hist_count += losses.numel()
        if losses.device.type != "cpu":  # no host sync: mask the unfilled slots on the device
            return self.hist, torch.arange(r, device=losses.device) < self.hist_count
        return self.hist[: min(int(self.hist_count), r)], None

    def probabilities(self, losses: torch.Tensor) -> torch.Tensor:
        """Backprop probability of each loss after adding the batch to the history (updates the history)."""
        losses = losses.detach().float()
        hist, mask = self._append(losses)
        f = percentile_rank(losses, hist, mask)
        return torch.clamp(f.pow(self.beta), min=self.options.beta_min)

    def select_batch(self, batch: CandidateBatch) -> BatchSelection:
        p = self.probabilities(batch.losses)
        u = torch.rand(p.numel(), generator=self.generator).to(p.device, non_blocking=True)
        return BatchSelection(torch.nonzero(u < p).flatten())

    def expected_keep_fraction(self) -> float:
        """``E[max(beta_min, U^beta)]`` for this run's resolved ``beta``."""
        return expected_keep_fraction(self.beta, self.options.beta_min)
