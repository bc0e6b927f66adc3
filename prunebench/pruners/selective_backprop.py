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
    """Percentile of each loss among ``history`` (only where ``mask``) as a fraction in [0, 1).

    ``count(h < l) / len(h)``, the reference code's ``UnboundedHistogram.percentile_of_score`` (lib/hist.py;
    its ``/ 100`` undone): the fraction of the history strictly below ``l``. The batch's own losses are
    in the history, so the largest loss of a history of ``n`` gets ``(n - 1) / n``, never 1.
    """
    h = history.to(losses.device)[None, :]
    m = torch.ones_like(h, dtype=torch.bool) if mask is None else mask[None, :]
    less = ((h < losses[:, None]) & m).sum(1).float()
    return less / m.sum().float()


@dataclass(frozen=True)
class SelectiveBackpropOptions:
    beta: float | None = None  # selectivity exponent; None: solved so that E[backprop fraction] = 1 - p
    beta_min: float = 0.0  # floor on each sample's backprop probability (the reference code's sampling_min)
    history: int = 1024  # R, how many recent losses the percentile is taken over
    prime_epochs: int = 1  # first epochs that backprop every sample (the reference code primes with N images)

    def __post_init__(self) -> None:
        if self.beta is not None and not self.beta > 0:
            raise ConfigError(f"beta must be > 0 (or none to derive it from prune_ratio), got {self.beta:g}")
        if not 0.0 <= self.beta_min < 1.0:
            raise ConfigError(f"beta_min must be in [0, 1), got {self.beta_min:g}")
        if self.history < 1:
            raise ConfigError(f"history must be >= 1, got {self.history}")
        if self.prime_epochs < 0:
            raise ConfigError(f"prime_epochs must be >= 0, got {self.prime_epochs}")


@register_pruner("selective-backprop")
class SelectiveBackprop(BatchPruner):
    """Selective backprop (Jiang et al. 2019, arXiv:1910.00762; reference code's semantics).

    Every sample is forwarded each epoch (a uniformly shuffled pass over all ``N``, in candidate batches
    of the backprop batch size). The first ``prime_epochs`` (default 1) epochs backpropagate every sample
    and leave the history empty, as the reference code's ``PrimedSelector`` (``num_images_to_prime = N``;
    its baseline selector never calls the probability calculator). After them, a candidate batch's losses
    join the history of the last ``R`` (1024) losses, then sample ``i`` is backpropagated with probability
    ``max(beta_min, F(l_i)^beta)``, where ``F(l_i) = count(history < l_i) / len(history)`` (the reference
    code's ``UnboundedHistogram.percentile_of_score``, see :func:`percentile_rank`); selected samples
    accumulate into full backprop batches. No loss reweighting. The ``N`` forward-only passes per epoch
    are counted as cost.

    ``prune_ratio`` mapping: unless ``beta`` is given, ``beta`` is solved so that the expected backprop
    fraction for uniform percentiles, ``E[max(beta_min, U^beta)]`` (``1/(beta+1)`` when ``beta_min = 0``),
    equals ``1 - p`` in the selecting epochs; the default ``p = 0.75`` gives the paper's ``beta = 3``.
    With ``beta`` given, ``p`` is ignored for selection. The priming epochs prune nothing, so over ``E``
    epochs the realized ratio is about ``p (E - prime_epochs) / E`` (.708 for ``p = .75``, ``E = 18``);
    ``prime_epochs = 0`` selects from the first step. Either way the loop reports the realized ratio,
    only approximately ``p`` (percentiles are discrete and the loss distribution drifts).

    Matches the reference code: the whole candidate batch joins the history before its percentiles are
    taken (``BatchedRelativeProbabilityCalculator.get_probability``), the history keeps the last ``R``
    losses, ``beta_min`` is its ``sampling_min`` (0 there). Deviation: the run seed drives the draws
    (the reference code uses numpy's global RNG).
    """

    description: ClassVar[str] = (
        "forward all, backprop w.p. max(beta_min, percentile(loss)^beta) after prime_epochs of full backprop (Jiang et al. 2019)"
    )
    family: ClassVar[str] = "loss-based"
    paper: ClassVar[str] = (
        "Jiang et al. 2019 (arXiv:1910.00762): Accelerating deep learning by focusing on the biggest losers"
    )
    cost_profile: ClassVar[tuple[str, ...]] = ("extra forwards",)
    defaults_source: ClassVar[str] = (
        "p=0.75 gives the paper's beta=3 (beta derived from p); beta_min=0, history=1024, prime_epochs=1: the "
        "reference code's"
    )
    Options = SelectiveBackpropOptions
    default_prune_ratio: ClassVar[float] = 0.75
    state_attrs = ("hist", "hist_count")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        o = self.options
        self.beta = float(o.beta) if o.beta is not None else beta_for_keep_fraction(1.0 - self.prune_ratio, o.beta_min)
        self.hist = torch.zeros(o.history, dtype=torch.float32)  # circular buffer of recent losses
        self.hist_count = torch.zeros((), dtype=torch.int64)  # losses ever appended
        self.priming = self.options.prime_epochs > 0  # set per epoch by plan_epoch

    def params(self) -> dict:
        return {**super().params(), "pruner.beta_resolved": self.beta}

    def plan_epoch(self, epoch: int) -> Selection:
        self.priming = epoch < self.options.prime_epochs
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
        if self.priming:  # backprop everything, history untouched
            return BatchSelection(torch.arange(batch.indices.numel(), device=batch.losses.device))
        p = self.probabilities(batch.losses)
        u = torch.rand(p.numel(), generator=self.generator).to(p.device, non_blocking=True)
        return BatchSelection(torch.nonzero(u < p).flatten())

    def expected_keep_fraction(self) -> float:
        """``E[max(beta_min, U^beta)]`` for this run's resolved ``beta``."""
        return expected_keep_fraction(self.beta, self.options.beta_min)
