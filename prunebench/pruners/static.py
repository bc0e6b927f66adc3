"""Static coreset methods (the DeepCore / CCS family): score once from a proxy run, keep ``(1-p)N``.

Every method here asks the harness's shared proxy run (handed in as ``context.proxy``) for its records,
turns them into per-sample scores with a pure function of :mod:`prunebench.pruners.scores`, and keeps
``q = round((1-p)N)`` samples with a selection rule of :mod:`prunebench.pruners.rules` (top, bottom,
central band, strata) or :mod:`prunebench.pruners.coverage` (greedy covers). The subset is fixed; each
epoch trains on it in a fresh order. Ties are broken at random by the pruner's generator.

Common options: ``proxy_epochs`` (length of the proxy run on full data, same recipe as the run),
``proxy_model`` (default: the run's model), ``class_balanced`` (every method: select within each class
with budgets proportional to class sizes) and, for EL2N and GraNd, ``proxy_seeds`` (independent proxy
runs, each trained from scratch, scores averaged; each run's cost is counted).

Against DeepCore (Guo et al., DEXA 2022; github PatrickZH/DeepCore, checked at commit 74ec709), the
reference most published coreset numbers come from: its ``main.py`` selects within each class for every
method (``--balance True``) with per-class budgets ``round(fraction * n_c)`` (whose sum can miss the
total); prunebench selects globally by default except for herding and facility location, and its class
budgets are largest-remainder shares summing exactly to ``q``. Set ``class_balanced=true`` to compare.
Bugs of the reference code that prunebench does not copy are listed in each method's docstring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from prunebench.errors import ConfigError
from prunebench.pruners import scores as S
from prunebench.pruners.base import ProxyRequest, PruneContext, Pruner, Selection, register_pruner
from prunebench.pruners.coverage import facility_location, facility_location_by_class, herding, kcenter_greedy
from prunebench.pruners.rules import (
    central_band,
    class_balanced,
    stratified_sample,
    topk_random_ties,
)

# --------------------------------------------------------------------------------------------------
# options
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProxyOptions:
    proxy_epochs: int = 10  # epochs of the proxy run on full data (same recipe as the run)
    proxy_model: str | None = None  # proxy architecture (None: the run's model)

    def __post_init__(self) -> None:
        if self.proxy_epochs < 1:
            raise ConfigError(f"proxy_epochs must be >= 1, got {self.proxy_epochs}")


@dataclass(frozen=True)
class RankOptions(ProxyOptions):
    class_balanced: bool = False  # select within each class, budgets proportional to class sizes


@dataclass(frozen=True)
class SeededRankOptions(RankOptions):
    proxy_seeds: int = 1  # independent proxy runs whose scores are averaged (Paul et al. use 10)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.proxy_seeds < 1:
            raise ConfigError(f"proxy_seeds must be >= 1, got {self.proxy_seeds}")


@dataclass(frozen=True)
class TDDSOptions(RankOptions):
    window: int = 5  # W: epochs per sliding window (W-1 transitions); 2 <= W <= proxy_epochs
    decay: float = 0.9  # beta: window k of T-W+1 gets weight beta (1-beta)^(T-W-k)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 2 <= self.window <= self.proxy_epochs:
            raise ConfigError(f"window must be in [2, proxy_epochs={self.proxy_epochs}], got {self.window}")
        if not 0.0 < self.decay < 1.0:
            raise ConfigError(f"decay must be in (0, 1), got {self.decay}")


@dataclass(frozen=True)
class CCSOptions(RankOptions):
    difficulty: Literal["aum", "forgetting", "el2n"] = "aum"  # difficulty score stratified by CCS
    hard_cutoff: float = 0.1  # beta: fraction of the hardest samples dropped before stratifying
    strata: int = 50  # equal-width strata of the difficulty range

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.hard_cutoff < 1.0:
            raise ConfigError(f"hard_cutoff must be in [0, 1), got {self.hard_cutoff}")
        if self.strata < 1:
            raise ConfigError(f"strata must be >= 1, got {self.strata}")


@dataclass(frozen=True)
class KCenterOptions(ProxyOptions):
    class_balanced: bool = False  # run the greedy within each class (budgets proportional to class sizes)


@dataclass(frozen=True)
class HerdingOptions(ProxyOptions):
    class_balanced: bool = True  # herd within each class (docs/methods.md, DeepCore's balance=True); false: globally


@dataclass(frozen=True)
class FacilityOptions(ProxyOptions):
    class_balanced: bool = True  # per class (CRAIG, DeepCore's balance=True); false: one greedy, class-block similarity
    features: Literal["embeddings", "gradients"] = "embeddings"  # similarity space: embeddings or last-layer gradients
    weighted: bool = True  # train with CRAIG's cluster-size weights (normalised to mean 1); false: plain mean


SHORT = {
    "proxy_epochs": "pe",
    "proxy_model": "pm",
    "proxy_seeds": "ps",
    "class_balanced": "cb",
    "hard_cutoff": "beta",
    "difficulty": "diff",
}


# --------------------------------------------------------------------------------------------------
# the base classes
# --------------------------------------------------------------------------------------------------


class StaticPruner(Pruner):
    """Score with the proxy run in :meth:`prepare`, select once, train on the same subset every epoch."""

    granularity: ClassVar[str] = "static"
    cost_profile: ClassVar[tuple[str, ...]] = ("proxy run",)  # scores from the harness's shared proxy run
    short_names: ClassVar[dict[str, str]] = SHORT
    state_attrs = ("subset", "subset_weights", "scores")
    #: proxy records beyond the standard ones (``train_probs`` for TDDS)
    records: ClassVar[tuple[str, ...]] = ()

    subset: torch.Tensor | None = None
    subset_weights: torch.Tensor | None = None
    scores: torch.Tensor | None = None

    def prepare(self, context: PruneContext) -> None:
        super().prepare(context)
        if context.proxy is None:
            raise ConfigError(
                f"pruner {self.name!r} scores samples with a proxy run; run it through the harness "
                f"(prunebench run, harness.train) or give PruneContext(proxy=...)"
            )
        rec = context.proxy(self.proxy_request())
        labels = context.labels.cpu().long()
        self.scores = self.score(rec, labels, context.num_classes)
        kept, weights = self.select(rec, labels, context.num_classes)
        if kept.numel() != self.keep_count:  # every rule is exact; a mismatch is a bug, never a result
            raise RuntimeError(f"{self.name}: selected {kept.numel()} samples, expected {self.keep_count}")
        self.subset, self.subset_weights = kept, weights

    def proxy_request(self) -> ProxyRequest:
        """What :meth:`prepare` asks the proxy run for (a method needing more fields overrides it)."""
        o = self.options
        return ProxyRequest(
            epochs=o.proxy_epochs,
            seeds=tuple(range(getattr(o, "proxy_seeds", 1))),
            model=o.proxy_model,
            record=self.records,
        )

    def score(self, rec: dict[str, Any], labels: torch.Tensor, num_classes: int) -> torch.Tensor | None:
        """Per-sample scores [N] (None for the greedy covers)."""
        return None

    def select(
        self, rec: dict[str, Any], labels: torch.Tensor, num_classes: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _per_class(self, labels: torch.Tensor, num_classes: int, rule) -> torch.Tensor:
        """``rule(candidates, budget)`` on all samples, or within each class when ``class_balanced``."""
        if self.options.class_balanced:
            return class_balanced(labels, self.keep_count, rule, num_classes)
        return rule(torch.arange(self.num_samples), self.keep_count)

    def plan_epoch(self, epoch: int) -> Selection:
        if self.subset is None:
            raise RuntimeError(f"{self.name}: call prepare(context) before plan_epoch")
        perm = torch.randperm(self.subset.numel(), generator=self.generator)
        w = self.subset_weights[perm] if self.subset_weights is not None else None
        return Selection(self.subset[perm], w)

    def artifacts(self) -> dict[str, np.ndarray]:
        """Arrays logged with the run (MLflow) and exported by ``prunebench export-scores``."""
        out: dict[str, np.ndarray] = {}
        if self.scores is not None:
            out["scores"] = self.scores.numpy().astype(np.float32)
        if self.subset is not None:
            out["kept_indices"] = self.subset.numpy().astype(np.int64)
        if self.subset_weights is not None:
            out["kept_weights"] = self.subset_weights.numpy().astype(np.float32)
        return out


class RankPruner(StaticPruner):
    """Keep the ``q`` samples with the largest, smallest or most central scores."""

    keep: ClassVar[Literal["largest", "smallest", "central"]] = "largest"

    def select(self, rec, labels, num_classes):
        s = self.scores
        assert s is not None
        if self.keep == "central":
            rule = lambda cand, b: central_band(s, b, self.generator, cand)  # noqa: E731
        else:
            largest = self.keep == "largest"
            rule = lambda cand, b: topk_random_ties(s, b, self.generator, cand, largest=largest)  # noqa: E731
        return self._per_class(labels, num_classes, rule), None


# --------------------------------------------------------------------------------------------------
# score-ranked methods
# --------------------------------------------------------------------------------------------------


@register_pruner("el2n")
class EL2N(RankPruner):
    """EL2N (Paul, Ganguli & Dziugaite, NeurIPS 2021, "Deep learning on a data diet"): keep the samples
    with the largest ``||softmax(f(x)) - onehot(y)||_2``, averaged over ``proxy_seeds`` proxy runs.

    The paper scores at epoch 20 of 200 averaged over 10 seeds; here the score is taken after the
    proxy's last epoch (``proxy_epochs``, eval mode, no augmentation).
    """

    description = "keep the largest error L2 norm after a short proxy run (Paul et al., NeurIPS 2021)"
    family = "score ranking"
    paper = "Paul, Ganguli & Dziugaite, NeurIPS 2021: Deep learning on a data diet"
    defaults_source = (
        "proxy_epochs=10, proxy_model=the run's: prunebench's short proxy run on full data (the paper: epoch 20 "
        "of 200); proxy_seeds=1: prunebench's (the paper averages 10)"
    )
    Options = SeededRankOptions
    keep = "largest"

    def score(self, rec, labels, num_classes):
        return S.el2n(rec["probs"], labels).mean(dim=0)


@register_pruner("grand")
class GraNd(RankPruner):
    """GraNd (Paul et al., NeurIPS 2021): keep the largest expected per-sample gradient norm, averaged
    over ``proxy_seeds`` proxy runs. As DeepCore, the gradient is the last layer's, ``[dl/dz, dl/dz (x) e]``
    (``z`` logits, ``e`` penultimate embedding, the training loss with its label smoothing), computed
    after the proxy's last epoch; the paper uses the full network's gradient (at initialisation).

    DeepCore averages ``repeat = 10`` proxy runs (``proxy_seeds=10`` here; the default is 1, and every
    proxy run is counted in the scoring cost). DeepCore differentiates the batch's *mean* loss, so each
    norm is divided by its batch's size, and the last, partial batch's samples get inflated norms (CIFAR's
    N = 50,000 at DeepCore's default batch 256: the last 80 samples' norms x3.2, pushing them to the top): a
    bug, not copied; here the norm is per sample.
    """

    description = "keep the largest expected last-layer gradient norm (Paul et al., NeurIPS 2021; DeepCore)"
    family = "score ranking"
    paper = "Paul, Ganguli & Dziugaite, NeurIPS 2021: Deep learning on a data diet"
    defaults_source = (
        "proxy_epochs=10, proxy_model=the run's: prunebench's short proxy run on full data (the paper scores at "
        "initialisation); proxy_seeds=1: prunebench's (DeepCore: repeat=10)"
    )
    Options = SeededRankOptions
    keep = "largest"

    def score(self, rec, labels, num_classes):
        g = S.grand(rec["probs"], labels, rec["embeddings"], rec["label_smoothing"], bias=rec["head_bias"])
        return g.mean(dim=0)


@register_pruner("forgetting")
class Forgetting(RankPruner):
    """Forgetting events (Toneva et al., ICLR 2019): count correct -> incorrect transitions of each
    sample's training-time prediction over its presentations in the proxy run; never-learned samples
    count as the most forgotten (``proxy_epochs`` events, as Toneva et al.'s code). Keep the most
    forgotten. Needs ``proxy_epochs >= 2`` to see events. Toneva et al.'s code can sum the counts of
    several training runs; here they come from one proxy run.

    DeepCore's ``Forgetting`` and the CCS code count never-learned samples as 0 events, i.e. among the
    first pruned: a departure from Toneva et al. that prunebench does not copy.
    """

    description = "keep the most forgotten samples during a proxy run (Toneva et al., ICLR 2019)"
    family = "score ranking"
    paper = "Toneva et al., ICLR 2019: An empirical study of example forgetting during deep neural network learning"
    defaults_source = (
        "proxy_epochs=10, proxy_model=the run's: prunebench's short proxy run on full data (Toneva et al. count "
        "over whole training runs); class_balanced=false: prunebench's"
    )
    Options = RankOptions
    keep = "largest"

    def score(self, rec, labels, num_classes):
        return S.forgetting(rec["correct"][0])


@register_pruner("aum")
class AUM(RankPruner):
    """Area under the margin (Pleiss et al., NeurIPS 2020): the sum over the proxy's epochs of
    ``p_y - max_{c != y} p_c`` at each training presentation; keep the lowest (hardest). The margin is
    on softmax outputs, as docs/methods.md and the CCS code, not on logits as in the paper.
    """

    description = "keep the lowest area under the margin (hardest; Pleiss et al., NeurIPS 2020)"
    family = "score ranking"
    paper = (
        "Pleiss, Zhang, Elenberg & Weinberger, NeurIPS 2020: Identifying mislabeled data using the area under the"
        " margin ranking"
    )
    defaults_source = (
        "proxy_epochs=10, proxy_model=the run's: prunebench's short proxy run on full data (the paper ranks over "
        "a whole training run); class_balanced=false: prunebench's (DeepCore: per class); margin on softmax as "
        "the CCS code"
    )
    Options = RankOptions
    keep = "smallest"

    def score(self, rec, labels, num_classes):
        return S.aum(rec["margin"][0])


@register_pruner("least-confidence")
class LeastConfidence(RankPruner):
    """Uncertainty sampling by least confidence ``1 - max_c p_c`` of the proxy model (Coleman et al.,
    ICLR 2020, "Selection via proxy"; DeepCore); keep the most uncertain.

    Not copied from DeepCore's ``Uncertainty``: it ranks by the largest *logit* instead of the largest
    probability (the two orders differ), and its global path (``balance=False``) sorts in the wrong
    direction and keeps the most confident samples (for entropy and margin too); its per-class path
    keeps the least confident, as here."""

    description = "keep the least confident proxy predictions (Coleman et al., ICLR 2020; DeepCore)"
    family = "uncertainty"
    paper = "Coleman et al., ICLR 2020: Selection via proxy: efficient data selection for deep learning"
    defaults_source = (
        "proxy_epochs=10, proxy_model=the run's: prunebench's short proxy run on full data; class_balanced=false:"
        " prunebench's (DeepCore: per class)"
    )
    Options = RankOptions
    keep = "largest"

    def score(self, rec, labels, num_classes):
        return S.least_confidence(rec["probs"][0])


@register_pruner("entropy")
class Entropy(RankPruner):
    """Uncertainty sampling by predictive entropy of the proxy model (Coleman et al., ICLR 2020;
    DeepCore); keep the most uncertain (highest entropy). DeepCore's global path (``balance=False``)
    keeps the lowest entropy instead: a bug, not copied (its per-class path is right)."""

    description = "keep the highest predictive entropy of the proxy (Coleman et al., ICLR 2020; DeepCore)"
    family = "uncertainty"
    paper = "Coleman et al., ICLR 2020: Selection via proxy: efficient data selection for deep learning"
    defaults_source = (
        "proxy_epochs=10, proxy_model=the run's: prunebench's short proxy run on full data; class_balanced=false:"
        " prunebench's (DeepCore: per class)"
    )
    Options = RankOptions
    keep = "largest"

    def score(self, rec, labels, num_classes):
        return S.entropy(rec["probs"][0])


@register_pruner("margin")
class Margin(RankPruner):
    """Uncertainty sampling by the margin ``p_top1 - p_top2`` of the proxy model (Coleman et al.,
    ICLR 2020; DeepCore); keep the most uncertain (smallest margin). DeepCore's global path
    (``balance=False``) keeps the largest margins instead: a bug, not copied (its per-class path is
    right)."""

    description = "keep the smallest top-1/top-2 probability margin (Coleman et al., ICLR 2020; DeepCore)"
    family = "uncertainty"
    paper = "Coleman et al., ICLR 2020: Selection via proxy: efficient data selection for deep learning"
    defaults_source = (
        "proxy_epochs=10, proxy_model=the run's: prunebench's short proxy run on full data; class_balanced=false:"
        " prunebench's (DeepCore: per class)"
    )
    Options = RankOptions
    keep = "smallest"

    def score(self, rec, labels, num_classes):
        return S.margin(rec["probs"][0])


@register_pruner("tdds")
class TDDS(RankPruner):
    """TDDS (Zhang et al., CVPR 2024, "Spanning training progress: temporal dual-depth scoring"): from the
    per-epoch softmax outputs of the proxy's training presentations, per-epoch contributions
    ``sum_c |p_{t+1} log(p_{t+1}/p_t)|``, deviation norms within sliding windows of ``W`` epochs, windows
    combined with exponential weights; keep the highest. The released code defaults to ``W = 10`` over a
    10-epoch trajectory (one window); the default here is ``W = 5`` so a 10-epoch proxy gives 6 windows.
    """

    description = "keep the highest temporal dual-depth scores of a proxy run (Zhang et al., CVPR 2024)"
    family = "score ranking"
    paper = (
        "Zhang et al., CVPR 2024: Spanning training progress: temporal dual-depth scoring (TDDS) for enhanced "
        "dataset pruning"
    )
    defaults_source = (
        "window=5: prunebench's, so a 10-epoch proxy gives 6 windows (the release: W=10 over 10 epochs, one "
        "window); decay=0.9: the paper's beta; proxy_epochs=10, proxy_model=the run's: prunebench's short proxy "
        "run on full data"
    )
    Options = TDDSOptions
    records = ("train_probs",)
    keep = "largest"

    def score(self, rec, labels, num_classes):
        return S.tdds(rec["train_probs"][0], self.options.window, self.options.decay)


@register_pruner("moderate-ds")
class ModerateDS(RankPruner):
    """Moderate coreset (Xia et al., ICLR 2023): the distance of each proxy embedding to its class's
    (coordinate-wise) median embedding; keep the samples whose distance rank lies in the central band,
    pruning the easiest (closest) and hardest (farthest) alike. Ranks are global, as the paper's code;
    ``class_balanced`` takes the band within each class.
    """

    description = "keep the central band of distances to the class median embedding (Xia et al., ICLR 2023)"
    family = "geometry"
    paper = (
        "Xia et al., ICLR 2023: Moderate coreset: a universal method of data selection for real-world "
        "data-efficient deep learning"
    )
    defaults_source = (
        "global ranks (class_balanced=false) as the paper's code; proxy_epochs=10, proxy_model=the run's: "
        "prunebench's short proxy run on full data"
    )
    Options = RankOptions
    keep = "central"

    def score(self, rec, labels, num_classes):
        return S.class_median_distance(rec["embeddings"][0], labels, num_classes)


@register_pruner("ccs")
class CCS(StaticPruner):
    """Coverage-centric coreset selection (Zheng et al., ICLR 2023): drop the hardest ``beta N`` samples by
    a difficulty score (AUM by default: the lowest AUM is the hardest), split the remaining score range
    into ``strata`` equal-width strata, allocate the budget by water-filling from the smallest stratum
    up, and sample uniformly within each stratum.

    Deviations: the paper tunes ``beta`` per dataset and prune ratio (default 0.1 here); when fewer than
    ``q`` samples would remain, only ``N - q`` are dropped; units that the paper's integer division
    leaves unallocated go to the strata with most room left, so exactly ``q`` are kept. The ``scores``
    artifact is the difficulty (higher is harder: ``-AUM``, forgetting count or EL2N). Against the CCS
    code (github haizhongzheng/Coverage-centric-coreset-selection, ``generate_importance_score.py``):
    never-learned samples count ``proxy_epochs`` forgetting events (Toneva et al.), not 0, so they are
    the hardest; EL2N is taken after the proxy's last epoch, not summed over the first 10 epochs'
    training-time outputs.
    """

    description = "stratified coverage sampling over difficulty after a hard cutoff (Zheng et al., ICLR 2023)"
    family = "coverage"
    paper = "Zheng, Liu, Li & Prakash, ICLR 2023: Coverage-centric coreset selection for high pruning rates"
    defaults_source = (
        "difficulty=aum, strata=50: the CCS code's; hard_cutoff=0.1: prunebench's (the paper tunes beta per "
        "dataset and ratio); proxy_epochs=10, proxy_model=the run's: prunebench's short proxy run on full data"
    )
    Options = CCSOptions

    def score(self, rec, labels, num_classes):
        d = self.options.difficulty
        if d == "aum":
            return -S.aum(rec["margin"][0])
        if d == "forgetting":
            return S.forgetting(rec["correct"][0])
        return S.el2n(rec["probs"][0], labels)

    def select(self, rec, labels, num_classes):
        s = self.scores
        assert s is not None

        def rule(cand: torch.Tensor, b: int) -> torch.Tensor:
            drop = min(int(round(self.options.hard_cutoff * cand.numel())), cand.numel() - b)
            if drop > 0:
                hard = topk_random_ties(s, drop, self.generator, cand, largest=True)
                keep = torch.ones(self.num_samples, dtype=torch.bool)
                keep[hard] = False
                cand = cand[keep[cand]]
            return stratified_sample(s, b, self.generator, self.options.strata, cand)

        return self._per_class(labels, num_classes, rule), None


# --------------------------------------------------------------------------------------------------
# greedy covers over embeddings
# --------------------------------------------------------------------------------------------------


@register_pruner("kcenter-greedy")
class KCenterGreedy(StaticPruner):
    """k-center greedy (Sener & Savarese, ICLR 2018, "Active learning for CNNs: a core-set approach"):
    farthest-point greedy on the proxy's penultimate embeddings from a random first center (as
    DeepCore). ``kept_indices`` are in the order picked."""

    description = "farthest-point greedy k-center on proxy embeddings (Sener & Savarese, ICLR 2018)"
    family = "geometry"
    paper = "Sener & Savarese, ICLR 2018: Active learning for convolutional neural networks: a core-set approach"
    defaults_source = (
        "random first center as DeepCore; class_balanced=false: prunebench's (DeepCore: per class); "
        "proxy_epochs=10, proxy_model=the run's: prunebench's short proxy run on full data"
    )
    Options = KCenterOptions

    def select(self, rec, labels, num_classes):
        emb = rec["embeddings"][0]
        return self._per_class(
            labels, num_classes, lambda cand, b: cand[kcenter_greedy(emb[cand], b, self.generator)]
        ), None


@register_pruner("herding")
class Herding(StaticPruner):
    """Herding (Welling, ICML 2009; Chen, Welling & Smola, UAI 2010): greedily add the sample that brings
    the mean of the selected proxy embeddings closest to the mean of all, within each class
    (``class_balanced``, the default) or globally. ``kept_indices`` are in the order picked.

    DeepCore's ``Herding`` takes the argmax of that distance, adding the sample that moves the mean
    *farthest* from the target: a bug, not copied, so its published herding numbers are not this method.
    """

    description = "greedy moment matching of proxy embeddings per class (Welling 2009; Chen et al. 2010)"
    family = "geometry"
    paper = (
        "Welling, ICML 2009: Herding dynamical weights to learn; Chen, Welling & Smola, UAI 2010: Super-samples "
        "from kernel herding"
    )
    defaults_source = (
        "class_balanced=true as DeepCore's balance=True; proxy_epochs=10, proxy_model=the run's: prunebench's "
        "short proxy run on full data"
    )
    Options = HerdingOptions

    def select(self, rec, labels, num_classes):
        emb = rec["embeddings"][0]
        return self._per_class(labels, num_classes, lambda cand, b: cand[herding(emb[cand], b, self.generator)]), None


@register_pruner("facility-location")
class FacilityLocation(StaticPruner):
    """Facility location (submodular; CRAIG, Mirzasoleiman et al., ICML 2020; DeepCore): lazy greedy
    maximisation of ``sum_i max_{j in S} sim(i, j)`` with ``sim = max(D) - D`` over proxy embeddings
    (``features="embeddings"``, the default) or, as CRAIG and DeepCore, last-layer gradients
    ``[dl/dz, dl/dz (x) e]`` (``features="gradients"``); per class (``class_balanced``, the default), or
    one greedy over all samples with similarity 0 across classes (DeepCore's ``balance=False``). Each
    kept sample is weighted by its cluster size (the class members most similar to it), normalised so
    the mean weight over the kept set is 1.

    Not copied from DeepCore's ``Craig``: its weights are cluster size + 1 (``calc_weights`` counts from
    1), and its gradients are those of the batch's mean loss, divided by the batch size (the last,
    partial batch inflated); here the weights are CRAIG's cluster sizes and the gradients per sample.
    """

    description = "per-class lazy-greedy facility location with cluster-size weights (CRAIG, ICML 2020; DeepCore)"
    family = "submodular"
    paper = (
        "Mirzasoleiman, Bilmes & Leskovec, ICML 2020: Coresets for data-efficient training of machine learning "
        "models (CRAIG)"
    )
    uses_weights = True
    defaults_source = (
        "class_balanced=true as CRAIG and DeepCore; weighted=true: CRAIG's cluster-size weights; "
        "features=embeddings: prunebench's (CRAIG, DeepCore: last-layer gradients); proxy_epochs=10, "
        "proxy_model=the run's: prunebench's short proxy run on full data"
    )
    Options = FacilityOptions

    def select(self, rec, labels, num_classes):
        if self.options.features == "embeddings":
            feats = rec["embeddings"][0]
        else:
            feats = S.last_layer_grad_features(rec["probs"][0], labels, rec["embeddings"][0], rec["label_smoothing"])
        if self.options.class_balanced:
            weights = torch.zeros(self.num_samples)

            def rule(cand: torch.Tensor, b: int) -> torch.Tensor:
                idx, w = facility_location(feats[cand], b, self.generator)
                weights[cand[idx]] = w
                return cand[idx]

            kept = class_balanced(labels, self.keep_count, rule, num_classes)
            w = weights[kept]
        else:
            kept, w = facility_location_by_class(feats, labels, self.keep_count, self.generator)
        return kept, (w * (kept.numel() / w.sum()) if self.options.weighted else None)


__all__ = [name for name, obj in list(globals().items()) if isinstance(obj, type) and issubclass(obj, StaticPruner)] + [
    "ProxyOptions",
    "RankOptions",
]
