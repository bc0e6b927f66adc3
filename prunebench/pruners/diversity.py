"""Static methods from DeepCore built on the divergence between proxy softmax outputs: contextual diversity
(k-center greedy under the symmetric KL divergence) and Cal (KL divergence to nearest neighbours in
embedding space).

Both read the shared proxy run's ``probs`` (softmax outputs [N, C], eval mode, after the proxy's last
epoch) and, for Cal, ``embeddings`` (penultimate features [N, d]); see :mod:`prunebench.pruners.static`
for the proxy options and the class-balance convention. Reference code: DeepCore (Guo et al., DEXA 2022;
github PatrickZH/DeepCore at commit 74ec709), ``deepcore/methods/{contextualdiversity,cal,kcentergreedy}.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from prunebench.errors import ConfigError
from prunebench.pruners.base import register_pruner
from prunebench.pruners.coverage import PROB_FLOOR, kcenter_greedy
from prunebench.pruners.rules import topk_random_ties
from prunebench.pruners.static import KCenterOptions, ProxyOptions, StaticPruner

DEEPCORE = "DeepCore (Guo et al., DEXA 2022) at 74ec709"


@register_pruner("contextual-diversity")
class ContextualDiversity(StaticPruner):
    """Contextual diversity (Agarwal, Arora, Anand & Arora, ECCV 2020, "Contextual diversity for active
    learning"), as DeepCore runs it for image classification: farthest-point k-center greedy (Sener &
    Savarese 2018; :func:`~prunebench.pruners.coverage.kcenter_greedy`) over the proxy's softmax outputs
    with the distance

        D(i, j) = 1/2 KL(p_i || p_j) + 1/2 KL(p_j || p_i) = 1/2 sum_c (p_ic - p_jc)(log p_ic - log p_jc),

    from a uniformly random first center, within each class when ``class_balanced``. ``kept_indices`` are
    in the order picked.

    The paper defines, for segmentation and detection, a class-specific confusion ``P^c_I`` per image (the
    entropy-weighted mean softmax of the regions predicted as ``c``) and sums the symmetric KL over the
    classes both images predict; with one region per image (classification) that reduces to the softmax
    itself, which is what DeepCore (and so prunebench) uses; the entropy weighting and the per-class sum
    are not applied. (The paper's text was not in the stored reference material: this summary of its
    definition is unverified there; the implementation follows DeepCore's code, which was read.)

    Departures from DeepCore: probabilities are floored at float32's smallest normal number (DeepCore's
    ``torch.log(aa / bb)`` gives NaN or inf when a float32 softmax underflows to 0, and the greedy then
    picks from NaN distances: not copied); distances are evaluated in float64 via
    ``D = s_i + s_j - 1/2 (p_i . log p_j + log p_i . p_j)`` with ``s_i = 1/2 p_i . log p_i`` (the same
    values to ~1e-13). DeepCore selects per class by default (``balance=True``) with budgets
    ``round(fraction * n_c)``; here the default is one greedy over all samples (as ``kcenter-greedy``),
    ``class_balanced=true`` for DeepCore's, with largest-remainder budgets summing to ``q``. The proxy
    trains ``proxy_epochs`` (default 10) on the run's recipe, where DeepCore's ``main.py`` trains 40
    (``--selection_epochs``).
    """

    description = (
        "k-center greedy under the symmetric KL between proxy softmax outputs (Agarwal et al., ECCV 2020; DeepCore)"
    )
    Options = KCenterOptions
    family = "coverage"
    paper = "Agarwal, Arora, Anand & Arora, ECCV 2020: Contextual diversity for active learning"
    cost_profile = ("proxy run",)
    defaults_source = (
        "random first center and the symmetric KL with weights 1/2: "
        + DEEPCORE
        + "; global selection (class_balanced=false) and proxy_epochs=10: prunebench's static "
        "conventions (DeepCore: balance=True, 40 selection epochs)"
    )

    def select(self, rec, labels, num_classes):
        probs = torch.as_tensor(rec["probs"][0])

        def rule(cand: torch.Tensor, b: int) -> torch.Tensor:
            return cand[kcenter_greedy(probs[cand], b, self.generator, metric="symmetric-kl")]

        return self._per_class(labels, num_classes, rule), None


# --------------------------------------------------------------------------------------------------
# Cal
# --------------------------------------------------------------------------------------------------


def nearest_neighbours(x: torch.Tensor, k: int, chunk_elems: int = 1 << 24) -> torch.Tensor:
    """The ``k`` nearest other rows of ``x [n, d]`` by Euclidean distance, ``[n, k]`` int64, nearest first.

    A row is never its own neighbour (a duplicate of it may be). Distances are
    ``|a|^2 + |b|^2 - 2 a.b`` in float32, rows taken in chunks of about ``chunk_elems`` distances, so
    memory stays bounded at any ``n``; the order among exactly equal distances (duplicates) is unspecified.
    """
    n = x.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"need 1 <= k < n for {k} neighbours of {n} points")
    x = x.float().contiguous()
    sq = (x * x).sum(dim=1)
    rows = max(1, chunk_elems // n)
    out = torch.empty(n, k, dtype=torch.int64)
    for lo in range(0, n, rows):
        hi = min(n, lo + rows)
        d = (x[lo:hi] @ x.T).mul_(-2.0).add_(sq).add_(sq[lo:hi, None])
        d[torch.arange(hi - lo), torch.arange(lo, hi)] = float("inf")
        out[lo:hi] = torch.topk(d, k, dim=1, largest=False, sorted=True).indices
    return out


def neighbour_divergence(
    probs: torch.Tensor,
    neighbours: torch.Tensor,
    divergence: Literal["symmetric", "neighbour-to-sample"] = "symmetric",
    chunk_elems: int = 1 << 24,
) -> torch.Tensor:
    """Cal's score: the mean over each sample's neighbours ``j`` of ``D(i, j)`` (float64 [n]).

    ``symmetric``: ``1/2 KL(p_i || p_j) + 1/2 KL(p_j || p_i)`` (DeepCore's ``Cal.calc_kl``);
    ``neighbour-to-sample``: ``KL(p_j || p_i)`` (Margatina et al.'s code: ``KLDivLoss(log p_candidate,
    p_neighbour)``). Probabilities are floored at :data:`~prunebench.pruners.coverage.PROB_FLOOR`.
    """
    p = probs.to(torch.float64).clamp_min(PROB_FLOOR)
    logp = p.log()
    n, k = neighbours.shape
    rows = max(1, chunk_elems // max(1, k * p.shape[1]))
    out = torch.empty(n, dtype=torch.float64)
    for lo in range(0, n, rows):
        hi = min(n, lo + rows)
        nb = neighbours[lo:hi]
        pi, li, pj, lj = p[lo:hi, None, :], logp[lo:hi, None, :], p[nb], logp[nb]
        if divergence == "symmetric":
            d = 0.5 * ((pi - pj) * (li - lj)).sum(dim=2)
        else:
            d = (pj * (lj - li)).sum(dim=2)
        out[lo:hi] = d.mean(dim=1)
    return out


@dataclass(frozen=True)
class CalOptions(ProxyOptions):
    class_balanced: bool = False  # neighbours and selection within each class (DeepCore's balance=True)
    neighbors: int = 10  # k nearest neighbours in embedding space (DeepCore's and Margatina et al.'s default)
    divergence: Literal["symmetric", "neighbour-to-sample"] = (
        "symmetric"  # DeepCore's 1/2 KL + 1/2 KL; or the paper's KL(p_nb || p_i)
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.neighbors, bool) or not isinstance(self.neighbors, int) or self.neighbors < 1:
            raise ConfigError(f"neighbors must be an integer >= 1, got {self.neighbors!r}")


@register_pruner("cal")
class Cal(StaticPruner):
    """Cal, contrastive active learning (Margatina, Vernikos, Barrault & Aletras, EMNLP 2021, "Active
    learning by acquiring contrastive examples"), as a coreset score (DeepCore): for each sample ``i``,
    with ``N_k(i)`` its ``k = neighbors`` nearest other samples by Euclidean distance between the proxy's
    penultimate embeddings,

        s_i = 1/k sum_{j in N_k(i)} D(p_i, p_j),   D = 1/2 KL(p_i || p_j) + 1/2 KL(p_j || p_i)

    (``divergence="symmetric"``, DeepCore's; ``"neighbour-to-sample"``: ``D = KL(p_j || p_i)``, the
    direction of Margatina et al.'s code), ``p`` the proxy's softmax outputs. Keep the ``q`` largest
    scores (samples whose model outputs differ most from those of their neighbours in feature space),
    ties at random. With ``class_balanced`` the neighbours are searched within the sample's class and
    the selection is per class (DeepCore's ``balance=True``); otherwise among all samples.

    Departures from DeepCore's ``Cal``: (1) DeepCore keeps the *smallest* scores
    (``np.argsort(scores)[::1][:budget]``), the least contrastive samples, the opposite of the paper's and
    the authors' code's argmax: a bug, not copied. (2) DeepCore finds neighbours with a separate
    ImageNet-pretrained ResNet-18 on inputs resized to 224x224 (``pretrain_model``); here they come from
    the proxy's own penultimate embeddings, as in the paper, where neighbours are found in the trained
    task model's feature space (no pretrained model is downloaded). (3) DeepCore takes columns 1..k of an
    argsort of the distance matrix as the neighbours, assuming the sample itself sorts first; with an
    exact duplicate it can keep itself as a neighbour (divergence 0); here a sample is never its own
    neighbour. (4) Probabilities are floored at float32's smallest normal number (DeepCore's ``log(a/b)``
    gives NaN or inf on an underflowed 0). (5) Default selection is global, DeepCore's is per class.

    Departures from the paper (active learning): the neighbours of a pool candidate are searched in the
    *labelled* set there; in the coreset setting every sample is labelled, so all other samples are
    candidates (as DeepCore).
    """

    description = "keep the largest mean KL divergence to nearest neighbours in proxy embedding space (Margatina et al., EMNLP 2021; DeepCore)"
    Options = CalOptions
    family = "decision boundary"
    paper = "Margatina, Vernikos, Barrault & Aletras, EMNLP 2021: Active learning by acquiring contrastive examples"
    cost_profile = ("proxy run",)
    defaults_source = (
        "neighbors=10 and the symmetric divergence: " + DEEPCORE + " (k=10 also the paper's); "
        "global selection and proxy_epochs=10: prunebench's static conventions"
    )

    def score(self, rec, labels, num_classes):
        probs = torch.as_tensor(rec["probs"][0])
        emb = torch.as_tensor(rec["embeddings"][0])
        o = self.options
        if not o.class_balanced:
            if o.neighbors >= self.num_samples:
                raise ConfigError(
                    f"cal: neighbors={o.neighbors} needs more than {o.neighbors} samples, got {self.num_samples}"
                )
            return neighbour_divergence(probs, nearest_neighbours(emb, o.neighbors), o.divergence).float()
        scores = torch.empty(self.num_samples)
        for c in range(num_classes):
            idx = torch.nonzero(labels == c).flatten()
            if idx.numel() == 0:
                continue
            if o.neighbors >= idx.numel():
                raise ConfigError(
                    f"cal: neighbors={o.neighbors} needs more than {o.neighbors} samples per "
                    f"class; class {c} has {idx.numel()}"
                )
            nb = nearest_neighbours(emb[idx], o.neighbors)
            scores[idx] = neighbour_divergence(probs[idx], nb, o.divergence).float()
        return scores

    def select(self, rec, labels, num_classes):
        s = self.scores
        assert s is not None
        return self._per_class(
            labels, num_classes, lambda cand, b: topk_random_ties(s, b, self.generator, cand, largest=True)
        ), None
