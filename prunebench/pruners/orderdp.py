"""OrderDP (Jin, Xu, Wang, Jia, Chen, Zeng; ICLR 2026): a uniform candidate set, then the top-q by loss.

Two variants (see ``docs/orderdp.md``):

* ``orderdp`` — per epoch, stored (stale) scores, as the released code: draw ``s`` candidates uniformly
  without replacement, keep the ``q`` with the largest scores (ties uniformly at random), shuffle them.
* ``orderdp-fresh`` — per iteration, fresh losses: each step forwards a uniform candidate batch without
  gradients and backpropagates its top-k, i.e. Ordered SGD's per-step selection (Kawaguchi & Lu, AISTATS
  2020) at a fixed ratio.

and :func:`gamma`, the weights of the surrogate loss whose gradient the kept-set mean estimates without
bias.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from scipy.special import gammaln

from prunebench.errors import ConfigError
from prunebench.options import option
from prunebench.pruners.base import (
    BatchPruner,
    BatchSelection,
    CandidateBatch,
    LossScores,
    Pruner,
    Selection,
    keep_count,
    register_pruner,
)
from prunebench.pruners.rules import topk_mask, uniform_subset


def gamma(n: int, s: int, q: int) -> np.ndarray:
    """Keep probability of the sample of loss rank ``j = 1..n`` under OrderDP(n, s, q).

    ``gamma_j = (s/n) * P(X <= q-1)`` with ``X ~ Hypergeometric(population n-1, successes j-1,
    draws s-1)``: the sample must be a candidate (probability ``s/n``) and fewer than ``q`` of the other
    ``s-1`` candidates may outrank it.

    The CDF is computed for all ``j`` at once without binomials: with ``K = j-1`` successes,
    ``F_{K+1}(m) = F_K(m) - pmf_K(m) * (d-m)/(M-K)`` (the extra success item is drawn given ``X_K = m``),
    ``F_0(m) = 1``, so ``F`` is one minus a cumulative sum of log-space pmf terms. Cost O(n); about 0.1 s
    for ``n = 1,281,167``.

    Returns
    -------
    float64 array of length ``n``: non-increasing, ``gamma[:q] == s/n``, zero beyond ``n - s + q``,
    summing to ``q``.
    """
    n, s, q = int(n), int(s), int(q)
    if not (1 <= q <= s <= n):
        raise ConfigError(f"gamma needs 1 <= q <= s <= n, got n={n}, s={s}, q={q}")
    big_m, d, m = n - 1, s - 1, q - 1  # population, draws, threshold
    if d == m:  # s == q: every candidate is kept
        return np.full(n, s / n)
    k = np.arange(n - 1, dtype=np.float64)  # K = 0 .. n-2 (terms feeding F_1 .. F_{n-1})
    valid = (k >= m) & (big_m - k >= d - m)
    kv = k[valid]
    logpmf = (
        gammaln(kv + 1)
        - gammaln(m + 1)
        - gammaln(kv - m + 1)
        + gammaln(big_m - kv + 1)
        - gammaln(d - m + 1)
        - gammaln(big_m - kv - d + m + 1)
        - (gammaln(big_m + 1) - gammaln(d + 1) - gammaln(big_m - d + 1))
    )
    terms = np.zeros(n - 1)
    terms[valid] = np.exp(logpmf) * (d - m) / (big_m - kv)
    cdf = np.empty(n)
    cdf[0] = 1.0
    # F_K = 1 - (terms before K) = (terms from K on): use the tail sum where F is small, so the
    # small keep probabilities of low-loss ranks carry no cancellation error
    head = 1.0 - np.cumsum(terms)
    tail = np.cumsum(terms[::-1])[::-1]
    cdf[1:] = head
    small = head < 0.5
    cdf[1:][small] = np.concatenate([tail[1:], [0.0]])[small]
    np.clip(cdf, 0.0, 1.0, out=cdf)
    cdf[:q] = 1.0  # exact: fewer than q items outrank the top q
    cdf[n - s + q :] = 0.0  # exact: at least q of the other candidates always outrank
    return (s / n) * cdf


@dataclass(frozen=True)
class OrderDPOptions:
    candidate_ratio: float = 0.8  # c = s/N, the uniform candidate fraction; must satisfy 1-p <= c <= 1
    # score of never-trained samples: 3.0 as the CIFAR release (cifar/orderDP/orderDP.py); the ImageNet
    # release (imagenet/orderdp_dataloader.py) uses 1.0, below every loss under label smoothing 0.1 over
    # 1000 classes (>= 1.0148), so there an untrained sample can never be selected
    initial_score: float = 3.0

    def __post_init__(self) -> None:
        if not 0.0 < self.candidate_ratio <= 1.0:
            raise ConfigError(f"candidate_ratio must be in (0, 1], got {self.candidate_ratio:g}")


def _candidate_count(pruner: Pruner) -> int:
    q = pruner.keep_count
    c = pruner.options.candidate_ratio
    if c < (1.0 - pruner.prune_ratio) - 1e-12:
        raise ConfigError(
            f"{pruner.name}: candidate_ratio={c:g} is below the keep fraction 1-p={1 - pruner.prune_ratio:g}; "
            f"valid: {1 - pruner.prune_ratio:g} <= candidate_ratio <= 1"
        )
    return min(pruner.num_samples, max(q, int(round(c * pruner.num_samples))))


@register_pruner("orderdp")
class OrderDP(LossScores, Pruner):
    """OrderDP, per-epoch variant with stored scores (Jin et al., ICLR 2026; reference code's semantics).

    Each epoch draws ``s = round(cN)`` candidates uniformly without replacement (from this run's own
    generator), keeps the ``q = round((1-p)N)`` with the largest stored scores (ties uniformly at random)
    and shuffles them. Scores start at ``initial_score`` and become each sample's detached loss when it
    is trained; untrained samples keep their stale score. Plain mean loss, no reweighting, no annealing;
    no extra forward pass, so exactly ``p`` of the sample-visits are skipped.

    Deviations from the released code: the run seed drives the candidate draws (the release reseeds
    numpy's global RNG with the epoch number), ties are broken at random, and nothing is monkeypatched.
    """

    granularity: ClassVar[str] = "epoch"
    description: ClassVar[str] = "uniform candidate set, keep top-q by stored loss (Jin et al. ICLR 2026)"
    family: ClassVar[str] = "loss-based"
    paper: ClassVar[str] = "Jin, Xu, Wang, Jia, Chen & Zeng, ICLR 2026: OrderDP (github shengze-xu/OrderDP)"
    cost_profile: ClassVar[tuple[str, ...]] = ()
    defaults_source: ClassVar[str] = (
        "candidate_ratio=0.8: the paper's CIFAR and ResNet-18 setting; initial_score=3.0: the CIFAR release "
        "(ImageNet release: 1.0)"
    )
    Options = OrderDPOptions
    short_names: ClassVar[dict[str, str]] = {"candidate_ratio": "c", "initial_score": "init"}
    #: the named ends of candidate_ratio's range [1-p, 1] (figures label them)
    range_labels: ClassVar[dict[str, tuple[str, str]]] = {
        "candidate_ratio": ("uniform = random-dynamic", "greedy = loss-topk")
    }
    state_attrs = ("scores",)

    @classmethod
    def option_range(cls, option: str, prune_ratio: float) -> tuple[float, float] | None:
        """``candidate_ratio`` lies in ``[1 - p, 1]``: uniform random at the low end, greedy top-q at the high end."""
        return (1.0 - prune_ratio, 1.0) if option == "candidate_ratio" else None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.candidate_count = _candidate_count(self)
        self._init_scores(self.num_samples, self.options.initial_score)

    def plan_epoch(self, epoch: int) -> Selection:
        # the candidates are a prefix of a fresh permutation, so already in uniformly random order; the
        # top-q mask breaks ties with its own draw, so the kept ones stay in uniform order (no reshuffle)
        cand = uniform_subset(self.num_samples, self.candidate_count, self.generator, compact=True)
        return Selection(cand[topk_mask(self.scores_cpu()[cand], self.keep_count, self.generator)].long())

    def gamma(self) -> np.ndarray:
        """Surrogate weights for this run's ``(N, s, q)``."""
        return gamma(self.num_samples, self.candidate_count, self.keep_count)

    @classmethod
    def rank_keep_probability(cls, num_samples: int, prune_ratio: float, options: dict[str, Any]) -> np.ndarray | None:
        """gamma(N, s, q) of a run with these options (the report's keep-by-rank section)."""
        c = float(options.get("candidate_ratio", np.nan))
        if not np.isfinite(c):
            return None
        q = keep_count(num_samples, prune_ratio)
        return gamma(num_samples, min(num_samples, max(q, int(round(c * num_samples)))), q)


@dataclass(frozen=True)
class OrderDPFreshOptions:
    candidate_ratio: float = 0.8  # c = s/N, the fraction of samples forwarded as candidates per epoch
    # BatchNorm statistics of the backprop step: the kept (top-loss) samples' own, or the candidate batch's.
    # Added after the cifar10-cpu cells ran: its default (the behaviour before it existed) stays out of run keys.
    bn_stats: Literal["kept", "candidates"] = option("kept", omit_default_in_key=True)

    def __post_init__(self) -> None:
        if not 0.0 < self.candidate_ratio <= 1.0:
            raise ConfigError(f"candidate_ratio must be in (0, 1], got {self.candidate_ratio:g}")


@register_pruner("orderdp-fresh")
class OrderDPFresh(BatchPruner):
    """OrderDP, per-iteration variant with fresh losses: Ordered SGD's per-step selection at a fixed ratio.

    Each epoch forwards ``s = round(cN)`` uniformly drawn candidates in candidate batches of
    ``b = round(B s / q)`` (``B`` the backprop batch size); each candidate batch is scored by a no-grad
    forward pass at the current parameters and its top ``k = round(b q / s)`` losses (ties at random)
    are backpropagated, so ``q`` samples are trained per epoch. Cost per epoch: ``s`` forward-only plus
    ``q`` forward-backward passes; the forward-only passes are reported, so the realized compute saving
    is smaller than ``p``.

    Not the Ordered SGD release (github kenjikawaguchi/qSGD, cifar10_WideResNet/cifar.py): that forwards
    every sample (batches of ``s = 128``) and takes the mean of the top ``q`` losses, with ``q = s`` until
    the previous epoch's training accuracy reaches 80%, then ``s/2``; ``s/4`` from 90%, ``s/8`` from 95%,
    ``s/16`` (with a learning-rate decay) from 99.5%. Here ``k/b`` is fixed from the first step. One stage
    of the release (a fixed ``q = s/m``) is ``candidate_ratio = 1``, ``prune_ratio = 1 - 1/m``, backprop
    batch size ``q`` (e.g. ``--batch-size 64 --prune-ratio 0.5 --set candidate_ratio=1`` for ``s = 128``,
    ``q = 64``) and ``bn_stats = "candidates"``.

    BatchNorm (``bn_stats``): the release's kept losses come from one train-mode forward of the whole
    batch, so BatchNorm normalises them with the candidate batch's statistics. Here the kept samples are
    forwarded again, and by default (``"kept"``) they are normalised with their own batch statistics,
    those of the top-loss batch, which also feed the running statistics. ``"candidates"`` normalises the
    kept forward with the candidate batch's mean and variance (the gradient flows through the kept
    samples' own statistics, Batch Renormalization style; the release's also flows through the other
    candidates' share of the statistics), the running statistics follow the candidate batches, and the loop takes one step per candidate batch (``k`` samples; the
    same steps as ``"kept"`` whenever ``k = B``). Implemented by the loop (``harness/batchnorm.py``);
    single process, no ``compile``. Measured on CIFAR-10 (cifar10-cpu recipe, ``c = 0.8``, ``p = 0.5``,
    seeds 0-2, ``studies/cifar10-cpu-bnstats.toml``): ``candidates`` - ``kept`` = -0.12 / -0.19 / +0.37 pp,
    mean +0.02 [-0.74, +0.78] (not distinguishable); table in the README (orderdp-fresh, BatchNorm).
    """

    description: ClassVar[str] = (
        "per-step top-k of a fresh uniform candidate batch: Ordered SGD's selection at a fixed ratio (Kawaguchi & Lu 2020)"
    )
    family: ClassVar[str] = "loss-based"
    paper: ClassVar[str] = (
        "Kawaguchi & Lu, AISTATS 2020: Ordered SGD: a new stochastic optimization framework for empirical risk "
        "minimization; Jin et al., ICLR 2026 (OrderDP)"
    )
    cost_profile: ClassVar[tuple[str, ...]] = ("extra forwards",)
    defaults_source: ClassVar[str] = (
        "candidate_ratio=0.8: as orderdp; bn_stats=kept: prunebench's (the release normalises with the candidate "
        "batch's statistics)"
    )
    Options = OrderDPFreshOptions
    short_names: ClassVar[dict[str, str]] = {"candidate_ratio": "c", "bn_stats": "bn"}

    @classmethod
    def option_range(cls, option: str, prune_ratio: float) -> tuple[float, float] | None:
        """``candidate_ratio`` lies in ``[1 - p, 1]``: uniform random at the low end, greedy top-q at the high end."""
        return (1.0 - prune_ratio, 1.0) if option == "candidate_ratio" else None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.candidate_count = _candidate_count(self)

    @property
    def bn_stats(self) -> str:
        return self.options.bn_stats

    def candidate_batch_size(self, batch_size: int) -> int:
        return max(1, int(round(batch_size * self.candidate_count / self.keep_count)))

    def plan_epoch(self, epoch: int) -> Selection:
        return Selection(uniform_subset(self.num_samples, self.candidate_count, self.generator))

    def select_batch(self, batch: CandidateBatch) -> BatchSelection:
        b = batch.indices.numel()
        k = max(1, min(b, int(round(b * self.keep_count / self.candidate_count))))
        # permute-then-topk on the losses' device: random tie-breaking without a host sync
        perm = torch.randperm(b, generator=self.generator).to(batch.losses.device, non_blocking=True)
        pos = torch.topk(batch.losses.detach().float()[perm], k, sorted=False).indices
        return BatchSelection(perm[pos])
