"""KAKURENBO (Nguyen, Gerofi, Martinez-Noriega, Trahay, Wahib; NeurIPS 2023): adaptively hiding samples.

Each epoch ``e`` hides, among the ``floor(F_e N)`` samples of lowest loss, those predicted correctly with a
confidence of at least ``tau``; the others are "moved back" and trained. ``F_e`` is the maximum hidden
fraction, decayed in steps over the run, and the learning rate of the epoch is scaled by ``1/(1 - F_e)``
(through the loop's ``lr_scale`` hook) to make up for the skipped updates. The hidden samples are forwarded
without gradients after the epoch (the loop's ``refresh_indices`` hook) so their loss and prediction are
fresh for the next epoch's decision; trained samples keep the loss and prediction of their own training
step ("lagging" statistics, no extra pass).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from prunebench.errors import ConfigError
from prunebench.pruners.base import Pruner, Selection, register_pruner
from prunebench.pruners.rules import ordered_subset, randperm, shuffle, topk_mask

#: the release's step decay of the maximum hidden fraction: ``F_e = DECAY[j] * F`` in the ``j``-th stage, whose
#: boundaries sit at these tenths of the run (its CIFAR-100 recipe: epochs 60, 120, 160 of 200, the
#: learning-rate milestones)
MILESTONE_TENTHS = (3, 6, 8)
DECAY = (1.0, 0.8, 0.6, 0.4)


@dataclass(frozen=True)
class KakurenboOptions:
    threshold: float = 0.7  # prediction confidence tau: hide only correct predictions with confidence >= tau (release: THRESHOLD = 0.7)

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold must be in [0, 1] (a softmax confidence), got {self.threshold:g}")


def max_fraction(epoch: int, num_epochs: int, fraction: float) -> float:
    """``F_e``: the maximum hidden fraction of ``epoch`` (0-based) in a run of ``num_epochs``: ``fraction``
    times 1, 0.8, 0.6, 0.4 before 30 %, 60 %, 80 % of the run and after (exact integer comparison)."""
    stage = sum(10 * epoch >= t * num_epochs for t in MILESTONE_TENTHS)
    return DECAY[stage] * fraction


@register_pruner("kakurenbo")
class Kakurenbo(Pruner):
    """KAKURENBO (Nguyen et al., NeurIPS 2023; github.com/TruongThaoNguyen/kakurenbo, checked at commit
    6cb9f88, ``ImageNet/pytorch_cifar100_WRN-28-10_hs_lag_v3.1.py``).

    ``prune_ratio`` is the paper's maximum hidden fraction ``F``. At epoch ``e`` (0-based, ``E`` planned):

    * ``F_e = F * d_e`` with ``d_e = 1, 0.8, 0.6, 0.4`` for ``e < 0.3E``, ``< 0.6E``, ``< 0.8E``, after;
    * the candidates are the ``k_e = floor(F_e N)`` samples with the lowest stored loss (ties at random);
    * a candidate is hidden iff its stored prediction was correct and its stored confidence (largest softmax
      probability) is ``>= tau``; every other sample is trained once, in uniformly random order, weight 1;
    * the learning rate of every step of the epoch is the schedule's times ``1/(1 - F_e)`` (``lr_scale``),
      except at epoch 0;
    * after the epoch the samples not trained in it (the hidden ones) are forwarded without gradients and
      their loss, confidence and correctness stored (``refresh_indices``; counted in ``samples_forward``).

    Epoch 0 hides nothing (no prediction is stored yet: the release starts with every sample "incorrect").
    The realized prune ratio is at most ``F`` and usually well below it.

    Departures from the release (each a choice of prunebench, stated here):

    * Its confidence is ``softmax(output, dim=0)``, normalised over the *batch* for each class instead of over
      the classes, so it depends on the batch's other samples; that is a bug not copied: prunebench uses the
      softmax over classes (the paper's prediction confidence).
    * Its fraction decay and learning-rate factor follow its step schedule's milestones (epochs 60/120/160 of
      200 on CIFAR-100, 30/60/80 of 90 on ImageNet); prunebench's schedules are continuous, so the stages sit
      at the CIFAR recipe's fractions 0.3/0.6/0.8 of the planned epochs. The factor ``1/(1 - F_e)`` uses the
      maximum fraction ``F_e``, as the release does, not the realized hidden fraction. The release skips the
      factor during its one warm-up epoch; prunebench skips it at epoch 0 (where nothing is hidden) and
      applies it on top of the whole schedule, warm-up phase included, from epoch 1 on.
    * Its forward pass over hidden samples runs in train mode and so updates BatchNorm running statistics;
      prunebench's refresh uses the batch statistics without updating the running ones (no training effect).
    * The release refreshes the hidden samples after every epoch, the last one included; prunebench skips the
      last planned epoch (nothing is planned from it). With a ``steps`` budget the refresh also covers planned
      samples the budget cut off (not trained: their statistics would be stale).
    * Trained samples keep the statistics of their own training forward (as the release), which uses the
      training loss, label smoothing included.
    """

    granularity: ClassVar[str] = "epoch"
    description: ClassVar[str] = (
        "hide low-loss, confidently-correct samples (max fraction F, decayed), lr x 1/(1-F) "
        "(Nguyen et al. NeurIPS 2023)"
    )
    Options = KakurenboOptions
    default_prune_ratio: ClassVar[float] = 0.3
    short_names: ClassVar[dict[str, str]] = {"threshold": "tau"}
    family: ClassVar[str] = "loss-based"
    paper: ClassVar[str] = (
        "Nguyen, Gerofi, Martinez-Noriega, Trahay, Wahib, NeurIPS 2023: KAKURENBO: Adaptively Hiding Samples "
        "in Deep Neural Network Training"
    )
    cost_profile: ClassVar[tuple[str, ...]] = ("extra forwards",)
    uses_weights: ClassVar[bool] = False
    defaults_source: ClassVar[str] = (
        "authors' release (F = 0.3 in its CIFAR-100 script, THRESHOLD = 0.7, fraction decay 1/0.8/0.6/0.4 at "
        "its LR milestones 60/120/160 of 200 epochs)"
    )
    observes_predictions: ClassVar[bool] = True
    state_attrs = ("loss", "confidence", "correct", "trained")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        n = self.num_samples
        self.loss = torch.ones(n, dtype=torch.float32)  # the release's initial importance (never used: epoch 0)
        self.confidence = torch.zeros(n, dtype=torch.float32)
        self.correct = torch.zeros(n, dtype=torch.bool)
        self.trained = torch.zeros(n, dtype=torch.bool)  # observed since the last epoch_end

    # -- the adaptive fraction and its learning-rate compensation -------------------------------------------
    def max_fraction(self, epoch: int) -> float:
        """``F_e`` (see :func:`max_fraction`)."""
        return max_fraction(epoch, self.num_epochs, self.prune_ratio)

    def lr_scale(self, epoch: int) -> float:
        return 1.0 if epoch == 0 else 1.0 / (1.0 - self.max_fraction(epoch))

    # -- planning ---------------------------------------------------------------------------------------------
    def hidden_mask(self, epoch: int) -> torch.Tensor:
        """Boolean [N] (CPU): the samples hidden at ``epoch`` (draws ties among equal losses from the generator)."""
        n = self.num_samples
        k = int(self.max_fraction(epoch) * n)
        if epoch == 0 or k == 0:
            return torch.zeros(n, dtype=torch.bool)
        loss, conf, correct = self.loss.cpu(), self.confidence.cpu(), self.correct.cpu()
        lowest = topk_mask(loss, k, self.generator, largest=False)
        return lowest & correct & (conf >= self.options.threshold)

    def plan_epoch(self, epoch: int) -> Selection:
        hidden = self.hidden_mask(epoch)
        if not bool(hidden.any()):
            return Selection(randperm(self.num_samples, self.generator))
        return Selection(ordered_subset(~hidden, self.generator))

    def plan_scores(self) -> torch.Tensor | None:
        return self.loss.detach().cpu()

    # -- observing --------------------------------------------------------------------------------------------
    def _to(self, device: torch.device) -> None:
        if self.loss.device != device:
            self.loss, self.confidence = self.loss.to(device), self.confidence.to(device)
            self.correct, self.trained = self.correct.to(device), self.trained.to(device)

    def observe(self, indices: torch.Tensor, losses: torch.Tensor) -> None:
        self._to(losses.device)
        idx = indices.to(losses.device)
        self.loss[idx] = losses.detach().float()
        self.trained[idx] = True

    def observe_predictions(self, indices: torch.Tensor, confidence: torch.Tensor, correct: torch.Tensor) -> None:
        self._to(confidence.device)
        idx = indices.to(confidence.device)
        self.confidence[idx] = confidence.detach().float()
        self.correct[idx] = correct.to(torch.bool)

    def refresh_indices(self, epoch: int) -> torch.Tensor | None:
        if epoch >= self.num_epochs - 1:
            return None
        return shuffle(torch.nonzero(~self.trained.cpu()).flatten(), self.generator)  # the release's shuffled loader

    def epoch_end(self, epoch: int) -> None:
        self.trained.zero_()
