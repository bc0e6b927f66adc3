"""Importance sampling with a gradient-norm upper bound (Katharopoulos & Fleuret, ICML 2018, "Not all samples
are created equal: deep learning with importance sampling", arXiv:1803.00942)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from prunebench.errors import ConfigError
from prunebench.pruners.base import BatchPruner, BatchSelection, CandidateBatch, Selection, register_pruner


def gradient_norm_bound(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Per-sample ``||d loss / d logits||_2`` of the (label-smoothed) cross-entropy.

    The gradient of cross-entropy w.r.t. the logits is ``softmax(z) - t`` with target distribution
    ``t = (1 - ls) onehot(y) + ls / C``; without label smoothing this is the paper's
    ``||softmax(z) - onehot(y)||``. Up to the (sample-independent) Lipschitz constant of the network
    below the logits it bounds the per-sample parameter-gradient norm (paper Sec. 3.2, eq. 20).
    """
    z = logits.detach().float()
    p = F.softmax(z, dim=1)
    t = F.one_hot(targets, z.shape[1]).float() * (1.0 - label_smoothing) + label_smoothing / z.shape[1]
    return (p - t).norm(dim=1)


def variance_reduction(probs: torch.Tensor) -> torch.Tensor:
    """``tau``, the release's variance-reduction measure of importance sampling with ``probs`` (Sec. 3.3).

    ``tau = 1 / sqrt(1 - ||g - u||^2 / sum_i g_i^2)`` with ``u`` uniform, as the reference code's
    ``VarianceReductionCondition.update``; equal to ``sqrt(n * sum_i g_i^2)``, in ``[1, sqrt(n)]`` (1 for
    uniform ``g``, ``sqrt(n)`` for a one-hot ``g``). Its square ``n sum g_i^2`` is the ratio of the
    uniform to the importance-sampled second moment of a one-sample gradient estimate.
    """
    n = probs.numel()
    g2 = (probs * probs).sum()
    inv = 1.0 - ((probs - 1.0 / n) ** 2).sum() / g2
    return inv.clamp_min(1.0 / n).rsqrt()


@dataclass(frozen=True)
class ImportanceSamplingOptions:
    presample: int = 3  # B / b: candidates forwarded per trained sample when importance sampling is on
    tau_th: float | None = None  # switch-on threshold on tau; None: (B + 3b) / (3b), the break-even cost
    tau_ema: float = 0.9  # a_tau, weight of the old value in the moving average of tau

    def __post_init__(self) -> None:
        if self.presample < 1:
            raise ConfigError(f"presample must be >= 1, got {self.presample}")
        if self.tau_th is not None and self.tau_th < 1.0:
            raise ConfigError(f"tau_th must be >= 1 (tau is never below 1), got {self.tau_th:g}")
        if not 0.0 <= self.tau_ema < 1.0:
            raise ConfigError(f"tau_ema must be in [0, 1), got {self.tau_ema:g}")


@register_pruner("importance-sampling")
class ImportanceSampling(BatchPruner):
    """Importance sampling by the gradient-norm upper bound (Katharopoulos & Fleuret, ICML 2018, Alg. 1).

    When on, each step presamples ``B = presample * b`` (default ``3b``) candidates uniformly, forwards them
    without gradients, scores each by :func:`gradient_norm_bound` (``||softmax(z) - t||``, the loss
    gradient w.r.t. the logits; label smoothing changes the target ``t``), draws ``b`` of them **with
    replacement** with ``p_i = score_i / sum score`` and trains on them with loss weights ``1/(B p_i)``,
    so the weighted mean gradient is an unbiased estimate of the mean gradient over the ``B``.

    Switch-on rule (Sec. 3.3, as the reference code's ``VarianceReductionCondition``): for the normalised
    scores ``g`` of each scored batch, ``tau = 1 / sqrt(1 - ||g - u||^2 / sum g_i^2) = sqrt(n sum g_i^2)``
    (:func:`variance_reduction`) is tracked as a moving average ``tau <- a tau + (1 - a) tau_batch``
    (starting at 0); importance sampling is used only while ``tau > tau_th``, with
    ``tau_th = (B + 3b) / (3b)`` by default (the release's default: the cost of ``B`` forwards plus ``b``
    training passes over ``b`` training passes, a training pass counting 3 forwards, as in prunebench's
    ``relative_compute``). Since ``n sum g_i^2 = 1 + CV^2`` (``CV`` the scores' coefficient of
    variation), ``tau_th = 2`` switches on once ``CV`` exceeds about ``sqrt(3)``. Until then training
    samples ``b`` uniformly with weight 1, and their scores update ``tau``.

    ``prune_ratio`` mapping: every epoch trains ``q = round((1-p)N)`` sample-visits (``q / b`` steps).
    With importance sampling on, that takes ``presample * q`` candidates (uniform passes over the data,
    without replacement within a pass, concatenated): the realized prune ratio is about ``p``, but the
    relative compute is about ``(presample + 3)(1-p)/3`` (``2(1-p)`` for ``B = 3b``), above ``1 - p``,
    and the loop reports it. In the uniform phase the candidate stream is ``q`` samples forwarded in
    batches of ``b`` and all kept.

    A bug of the reference code not copied: it scores by the gradient of Keras's categorical
    cross-entropy, which clips the predicted probabilities to ``[1e-7, 1 - 1e-7]``; the clip has zero
    gradient, so a sample with ``p_y < 1e-7`` (loss above ``-ln 1e-7 = 16.1``) scores 0 and is never
    drawn, though it has the largest gradient. Here its score is ``||softmax(z) - t||`` (about
    ``sqrt(2)``).

    Deviation: the switch is decided at epoch boundaries (the loop fixes the candidate batch size per
    epoch), not per step; ``tau`` is still updated every step. The uniform phase costs an extra no-grad
    forward of the ``b`` samples (the loop scores candidates separately from the training pass), which is
    counted.
    """

    description: ClassVar[str] = (
        "presample B=3b, draw b w.p. ~ ||softmax-onehot||, weight 1/(B p) (Katharopoulos & Fleuret 2018)"
    )
    family: ClassVar[str] = "importance sampling"
    paper: ClassVar[str] = (
        "Katharopoulos & Fleuret, ICML 2018: Not all samples are created equal: deep learning with importance sampling"
    )
    cost_profile: ClassVar[tuple[str, ...]] = ("extra forwards",)
    uses_weights: ClassVar[bool] = True
    defaults_source: ClassVar[str] = (
        "presample=3 (B=3b) and tau_th=(B+3b)/(3b): the release's defaults; tau_ema=0.9: the moving-average "
        "weight of tau"
    )
    Options = ImportanceSamplingOptions
    short_names: ClassVar[dict[str, str]] = {"presample": "B/b"}
    state_attrs = ("tau",)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        k = self.options.presample
        self.tau_th = self.options.tau_th if self.options.tau_th is not None else (k + 3.0) / 3.0
        self.tau = torch.zeros((), dtype=torch.float32)
        self.active = False  # importance sampling on for the current epoch (decided by plan_epoch)

    def params(self) -> dict:
        return {**super().params(), "pruner.tau_th_resolved": self.tau_th}

    def plan_epoch(self, epoch: int) -> Selection:
        self.active = bool(float(self.tau) > self.tau_th)
        m = self.keep_count * (self.options.presample if self.active else 1)
        n = self.num_samples
        passes = [torch.randperm(n, generator=self.generator) for _ in range(-(-m // n))]
        return Selection(torch.cat(passes)[:m])

    def candidate_batch_size(self, batch_size: int) -> int:
        return batch_size * (self.options.presample if self.active else 1)

    def select_batch(self, batch: CandidateBatch) -> BatchSelection:
        scores = gradient_norm_bound(batch.logits, batch.targets, batch.label_smoothing)
        n = scores.numel()
        total = scores.sum()
        probs = torch.where(total > 0, scores / total.clamp_min(1e-30), torch.full_like(scores, 1.0 / n))
        if self.tau.device != probs.device:
            self.tau = self.tau.to(probs.device)
        a = self.options.tau_ema
        self.tau = a * self.tau + (1.0 - a) * variance_reduction(probs)
        if not self.active:
            return BatchSelection(torch.arange(n, device=probs.device))
        k = max(1, int(round(n / self.options.presample)))
        cdf = torch.cumsum(probs, 0)
        u = torch.rand(k, generator=self.generator).to(probs.device, non_blocking=True) * cdf[-1]
        pos = torch.searchsorted(cdf, u, right=True).clamp_max(n - 1)
        return BatchSelection(pos, 1.0 / (n * probs[pos]))
