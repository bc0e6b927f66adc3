"""DeepFool coreset (DeepCore's ``DeepFool``): keep the samples closest to the proxy's decision boundary."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from prunebench.errors import ConfigError
from prunebench.pruners.base import ProxyRequest, register_pruner
from prunebench.pruners.rules import topk_random_ties
from prunebench.pruners.static import RankOptions, StaticPruner


@dataclass(frozen=True)
class DeepFoolOptions(RankOptions):
    max_iter: int = 50  # DeepFool iterations per sample at most (DeepCore's DeepFool(max_iter=50))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_iter < 1:
            raise ConfigError(f"max_iter must be >= 1, got {self.max_iter}")


@register_pruner("deepfool")
class DeepFool(StaticPruner):
    """DeepFool margin (Ducoffe & Precioso 2018, "Adversarial active learning for deep networks: a margin
    based approach"; DeepCore, Guo et al., DEXA 2022): score each training sample by the L2 norm of the
    smallest adversarial perturbation DeepFool (Moosavi-Dezfooli et al., CVPR 2016) finds against the trained
    proxy, and keep the ``q`` samples with the *smallest* norms (the closest to the decision boundary).

    DeepFool, per sample from its predicted class ``k0``, linearises the classifier at the current point and
    steps to the nearest linearised boundary: with ``f'_k = f_k - f_k0`` and ``w'_k = grad_x f_k - grad_x f_k0``,
    ``l = argmin_{k != k0} |f'_k| / ||w'_k||`` and ``r = |f'_l| / ||w'_l||^2 w'_l``, until the prediction
    changes or ``max_iter`` steps; the score is ``||sum r||_2`` (DeepCore ranks its square: the same order).
    For an affine classifier one step reaches the nearest boundary, ``min_k |f_k0 - f_k| / ||w_k0 - w_k||``.

    The perturbations are computed by the harness's proxy run after training (record ``deepfool_norm``, see
    :func:`prunebench.harness.proxy.deepfool`), in eval mode, on the un-augmented, normalised inputs (the
    perturbation is measured in the normalised input space, as DeepCore's), in float32, batched at the eval
    batch size. The proxy's DeepFool passes are in the scoring cost: per sample and iteration one forward
    and ``C`` backward passes (a backward counted as two forwards), so a DeepFool proxy costs more than the
    plain one other static methods share; it is cached under its own key (it includes ``max_iter``).

    As DeepCore: no overshoot, no ``1e-4`` added to each step (both in the DeepFool paper's code), the
    prediction ``k0`` is the model's, not the label; samples that never flip within ``max_iter`` keep their
    accumulated perturbation. Departures: DeepCore runs DeepFool on a proxy trained ``selection_epochs``
    (40) epochs and selects per class (``--balance True`` in its ``main.py``; the class's own default is
    global); here ``proxy_epochs`` (10) and global selection by default (``class_balanced=true`` selects
    within each class). Not copied from DeepCore: it moves the input tensor that requires gradients in
    place, and recomputes a forward pass per iteration only to test the stop (here the next iteration's
    forward serves both); ties are broken at random by the pruner's generator.
    """

    description: ClassVar[str] = (
        "keep the smallest DeepFool perturbation norms against the proxy (DeepCore; Ducoffe & Precioso 2018)"
    )
    Options = DeepFoolOptions
    records: ClassVar[tuple[str, ...]] = ("deepfool_norm",)
    family: ClassVar[str] = "decision boundary"
    paper: ClassVar[str] = (
        "Ducoffe & Precioso, arXiv 2018: Adversarial active learning for deep networks: a margin "
        "based approach (DeepFool: Moosavi-Dezfooli et al., CVPR 2016; DeepCore, Guo et al., DEXA 2022)"
    )
    cost_profile: ClassVar[tuple[str, ...]] = ("proxy run", "extra backwards")
    uses_weights: ClassVar[bool] = False
    defaults_source: ClassVar[str] = "DeepCore DeepFool (max_iter=50); proxy_epochs=10 as the other static methods"

    def proxy_request(self) -> ProxyRequest:
        return dataclasses.replace(super().proxy_request(), deepfool_max_iter=self.options.max_iter)

    def score(self, rec, labels, num_classes):
        return rec["deepfool_norm"][0].float()

    def select(self, rec, labels, num_classes):
        s = self.scores
        assert s is not None
        rule = lambda cand, b: topk_random_ties(s, b, self.generator, cand, largest=False)  # noqa: E731
        return self._per_class(labels, num_classes, rule), None
