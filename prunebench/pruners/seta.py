"""SeTa (Zhou, Gao & Wang, CVPR 2025): random pruning, loss clustering, a sliding window over the clusters."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from prunebench.errors import ConfigError
from prunebench.pruners.base import LossScores, Pruner, Selection, register_pruner
from prunebench.pruners.rules import shuffle, uniform_subset


@dataclass(frozen=True)
class SeTaOptions:
    num_group: int = 5  # k: k-means clusters of the losses (the release's CIFAR script; its ImageNet main.py: 10)
    window_scale: float = 0.9  # the window spans round(k * window_scale) clusters (CIFAR script; ImageNet: 0.6)
    delta: float = 0.875  # prune while epoch + 1 <= delta * epochs (0-based), then partial annealing (release)

    def __post_init__(self) -> None:
        k = self.num_group
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"num_group must be an integer >= 1, got {k!r}")
        if not 0.0 < self.window_scale <= 1.0:
            raise ConfigError(f"window_scale must be in (0, 1], got {self.window_scale:g}")
        if round(k * self.window_scale) < 1:
            raise ConfigError(
                f"window_scale={self.window_scale:g} gives a window of round({k} * "
                f"{self.window_scale:g}) = 0 clusters; valid: window_scale >= {0.5 / k:g} "
                f"(strictly above at exactly a half)"
            )
        if not 0.0 <= self.delta <= 1.0:
            raise ConfigError(f"delta must be in [0, 1], got {self.delta:g}")


def window(num_groups: int, iteration: int, window_scale: float) -> tuple[int, int]:
    """The clusters ``[start, end)`` (easy to hard) SeTa keeps at pruning ``iteration`` (0-based): all at
    iteration 0; then ``w = round(num_groups * window_scale)`` clusters (Python's round, half to even, as
    the release; at least 1) starting at ``iteration mod (num_groups - w + 1)``, so the window slides one
    cluster harder per epoch and wraps around to the easiest."""
    if iteration == 0:
        return 0, num_groups
    w = max(1, round(num_groups * window_scale))
    start = iteration % (num_groups - w + 1)
    return start, start + w


def loss_clusters(
    values: torch.Tensor, k: int, generator: torch.Generator, max_iter: int = 300, tol: float = 1e-4
) -> list[torch.Tensor]:
    """SeTa's grouping of 1-D ``values`` (losses) into ``k`` clusters by k-means, ordered by center from
    the smallest (easiest) to the largest; each cluster as positions into ``values``.

    As the release's ``kmeans_group``: ``k = 1`` is one group; equal values are split into
    ``torch.chunk(positions, k)`` (which may give fewer than ``k`` chunks). Otherwise k-means as
    scikit-learn's ``KMeans`` (greedy k-means++ seeding with ``2 + floor(log k)`` local trials, one
    initialisation as ``n_init="auto"``, Lloyd iterations until the assignment repeats or the total squared
    center shift is at most ``tol * var(values)``, ``max_iter`` 300, an empty cluster re-seeded at the
    point farthest from its center). In 1-D every cluster is an interval of the sorted values, so each
    Lloyd step is a ``searchsorted`` against the midpoints of consecutive centers and prefix sums; a value
    exactly at a midpoint goes to the easier cluster; a cluster left empty by the final assignment is
    dropped (scikit-learn re-seeds empty clusters, so the release never has one). With ``d <= k`` distinct values each distinct value is
    one cluster (``d`` groups; the release's scikit-learn call would warn and leave clusters empty).
    """
    m = values.numel()
    pos = torch.arange(m)
    if k == 1:
        return [pos]
    if bool(values.max() == values.min()):
        return list(torch.chunk(pos, k))
    v = values.to(torch.float64)
    order = torch.sort(v, stable=True).indices
    sv = v[order]
    distinct = torch.unique_consecutive(sv)
    if distinct.numel() <= k:
        cuts = torch.searchsorted(sv, distinct[1:], right=False)
    else:
        cuts = _lloyd(sv, _kmeans_plusplus(sv, k, generator), max_iter, tol * float(sv.var(unbiased=False)))
    bounds = [0] + cuts.tolist() + [m]
    return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _kmeans_plusplus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; scikit-learn's ``_kmeans_plusplus``) of
    sorted 1-D ``x``: the first center uniform, then of ``2 + floor(log k)`` candidates drawn with
    probability proportional to the squared distance to the nearest center, the one lowering the
    potential most. Returns the ``k`` centers sorted."""
    trials = 2 + int(math.log(k))
    n = x.numel()
    centers = torch.empty(k, dtype=x.dtype)
    centers[0] = x[int(torch.randint(n, (1,), generator=generator))]
    closest = (x - centers[0]) ** 2
    pot = closest.sum()
    for c in range(1, k):
        r = torch.rand(trials, generator=generator, dtype=x.dtype) * pot
        cand = torch.searchsorted(torch.cumsum(closest, 0), r).clamp_max_(n - 1)
        d = torch.minimum(closest, (x[None, :] - x[cand, None]) ** 2)
        best = int(torch.argmin(d.sum(dim=1)))
        centers[c] = x[cand[best]]
        closest = d[best]
        pot = closest.sum()
    return torch.sort(centers).values


def _lloyd(x: torch.Tensor, centers: torch.Tensor, max_iter: int, tol: float) -> torch.Tensor:
    """Lloyd iterations on sorted 1-D ``x`` from sorted ``centers``; returns the ``k - 1`` cut positions
    (cluster ``i`` is ``x[cut[i-1]:cut[i]]``) of the assignment to the final centers."""
    prefix = torch.cat([x.new_zeros(1), torch.cumsum(x, 0)])
    n = x.numel()

    def assign(c: torch.Tensor) -> torch.Tensor:
        return torch.searchsorted(x, (c[1:] + c[:-1]) / 2, right=True)

    cuts = assign(centers)
    for _ in range(max_iter):
        lo = torch.cat([cuts.new_zeros(1), cuts])
        hi = torch.cat([cuts, cuts.new_full((1,), n)])
        count = hi - lo
        new = centers.clone()
        full = count > 0
        new[full] = (prefix[hi] - prefix[lo])[full] / count[full]
        if not bool(full.all()):  # re-seed empty clusters at the points farthest from their centers
            own = torch.repeat_interleave(new, count)
            far = torch.topk((x - own) ** 2, int((~full).sum())).indices
            new[~full] = x[far]
        new = torch.sort(new).values
        shift = float(((new - centers) ** 2).sum())
        centers = new
        new_cuts = assign(centers)
        if torch.equal(new_cuts, cuts) or shift <= tol:
            return new_cuts
        cuts = new_cuts
    return cuts


@register_pruner("seta")
class SeTa(LossScores, Pruner):
    """SeTa, Scale Efficient Training (Zhou, Gao & Wang, CVPR 2025, "Scale efficient training for large
    datasets"; github mrazhou/SeTa, ``seta.py`` at commit 341df62).

    Each epoch ``t`` while ``t + 1 <= delta * E`` (0-based, the release's ``iterations > stop_prune`` rule):

    1. random pruning: a uniform subset of ``m = floor((1 - r) N)`` samples (``r`` = ``prune_ratio``);
    2. loss clustering: their scores (each sample's most recent training loss, 3 before its first visit,
       as the release) are grouped by 1-D k-means into ``k = num_group`` clusters, sorted by center from
       easy (low loss) to hard (:func:`loss_clusters`);
    3. sliding window: epoch 0 keeps every cluster; epoch ``t >= 1`` keeps the ``w = round(k *
       window_scale)`` consecutive clusters from ``t mod (k - w + 1)`` (:func:`window`): the window moves
       one cluster harder per epoch (easy-to-hard curriculum) and wraps to the easiest once it reaches the
       hardest, dropping the easiest and the hardest clusters outside it.

    From epoch ``floor(delta * E)`` on: *partial annealing*, a uniform subset of ``floor((1 - r) N)``
    samples (not the full data as InfoBatch's annealing). Samples train with weight 1 (the release's
    ``update`` multiplies by InfoBatch's weights, which SeTa never changes from 1).

    Not a fixed budget: the kept count of a pruning epoch is the size of the clusters in the window, so the
    realized prune ratio exceeds ``r`` (``prune_ratio`` is the random-pruning ratio; the loop reports the
    realized one). Per epoch: ``m`` (epoch 0 and annealing) or the window's share of ``m``.

    Departures from the release: its randomness comes from the global RNGs, reseeded every epoch
    (``np.random.seed(iterations)``) and scikit-learn's ``random_state=0``; here every draw (subset,
    k-means++ seeding, order) comes from the pruner's generator. Its k-means is scikit-learn's ``KMeans``;
    here an equivalent 1-D k-means (:func:`loss_clusters`; same seeding and stopping rules, but its own
    draws, so clusters can differ where the k-means objective has several local optima). The release
    clamps ``r`` to at most 0.9 (``keep_ratio >= 0.1``, inherited from InfoBatch); prunebench takes ``r`` as
    given. When the subset has at most ``k`` distinct scores (the release fails there) each distinct
    score is one cluster and the window spans ``round(d * window_scale)`` of the ``d`` clusters. The
    release falls back to one random sample when the window is empty; here a window is never empty.

    Not found in the stored material: the paper's own equations (only its abstract and summaries were
    available); the schedule above is the release's code, whose partial annealing the summaries confirm.
    """

    granularity: ClassVar[str] = "epoch"
    description: ClassVar[str] = (
        "random pruning, k-means on losses, a sliding easy-to-hard window over the "
        "clusters, partial annealing (Zhou et al., CVPR 2025)"
    )
    Options = SeTaOptions
    default_prune_ratio: ClassVar[float] = 0.1  # the release's CIFAR script, its "lossless" setting
    short_names: ClassVar[dict[str, str]] = {"num_group": "k", "window_scale": "ws"}
    state_attrs = ("scores",)
    initial_score: ClassVar[float] = 3.0
    family = "curriculum"
    paper = "Zhou, Gao & Wang, CVPR 2025: Scale efficient training for large datasets"
    cost_profile = ()
    defaults_source = (
        "num_group=5, window_scale=0.9, delta=0.875, r=0.1: the release's CIFAR script cifar.sh "
        "(commit 341df62); ImageNet there: num_group=10, window_scale=0.6, r=0"
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_scores(self.num_samples, self.initial_score)

    @property
    def anneal_epoch(self) -> int:
        """First epoch of partial annealing: the release prunes while ``epoch + 1 <= delta * epochs``."""
        return math.floor(self.options.delta * self.num_epochs)

    @property
    def subset_size(self) -> int:
        """``m = floor((1 - r) N)`` (the release's ``int(len * keep_ratio)``), at least 1."""
        return max(1, int((1.0 - self.prune_ratio) * self.num_samples))

    def plan_epoch(self, epoch: int) -> Selection:
        sub = uniform_subset(self.num_samples, self.subset_size, self.generator)
        if epoch >= self.anneal_epoch or epoch == 0:
            return Selection(sub)  # a uniform draw is already in random order
        groups = loss_clusters(self.scores_cpu()[sub], self.options.num_group, self.generator)
        start, end = window(len(groups), epoch, self.options.window_scale)
        kept = sub[torch.cat(groups[start:end])]
        return Selection(shuffle(kept, self.generator))
