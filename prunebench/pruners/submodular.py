"""DeepCore's gradient-based static selectors: CRAIG, GradMatch, GraphCut and LogDeterminant.

All four work on the last-layer gradient of each sample's training loss after the shared proxy run,
``f_i = [dl/dz, dl/dz (x) e] = g_i (x) [1, e_i]`` (``z`` the logits, ``e`` the penultimate embedding, ``g``
the softmax output minus the (label-smoothed) one-hot target; without the ``[1, .]`` when the head has no
bias), as DeepCore computes it (Guo et al., DEXA 2022; github PatrickZH/DeepCore at commit 74ec709,
``deepcore/methods/{craig,gradmatch,submodular}.py`` and ``methods_utils/submodular_{function,optimizer}.py``).

The ``C (d+1)``-dimensional features are never formed here: ``<g (x) a, h (x) b> = <g, h> <a, b>``, so every
inner product, kernel column and residual projection is computed from the factors ``g [n, C]`` and
``a = [1, e] [n, d+1]`` (one ``[n, C] @ [C]`` and one ``[n, d+1] @ [d+1]`` product per kernel column). Each
greedy step is a handful of batched tensor operations over all candidates; the only Python loop runs over
the ``k`` picks. Inputs are permuted by the generator first, so ties go uniformly at random.

Against DeepCore, for all four: its per-sample gradients are those of the batch's *mean* loss (each divided by
the selection batch size, the last, partial batch's less), a bug not copied here (per-sample gradients); the
cosine similarities of GraphCut and LogDeterminant do not see that scale, GradMatch's ridge does (see its
docstring). As static.py says, DeepCore's ``main.py`` selects per class (``--balance True``) with budgets
``round(fraction n_c)``; here ``class_balanced=true`` (the default of all four) uses largest-remainder budgets
summing exactly to ``q``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import scipy.optimize
import torch

from prunebench.errors import ConfigError
from prunebench.pruners.base import register_pruner
from prunebench.pruners.static import SHORT, FacilityLocation, ProxyOptions, StaticPruner

# --------------------------------------------------------------------------------------------------
# pure functions
# --------------------------------------------------------------------------------------------------


def grad_factors(
    probs: torch.Tensor,
    targets: torch.Tensor,
    embeddings: torch.Tensor,
    label_smoothing: float = 0.0,
    bias: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The factors ``(g [N, C], a [N, d(+1)])`` of the last-layer gradient features ``f_i = g_i (x) a_i``:
    ``g = softmax - onehot`` (label-smoothed as the training loss), ``a = [1, e]`` (``e`` without the head bias).
    ``vec(g (x) a)`` reorders :func:`prunebench.pruners.scores.last_layer_grad_features` (with ``bias``)."""
    y = torch.nn.functional.one_hot(targets.long(), probs.shape[-1]).to(probs.dtype)
    g = probs - (y * (1.0 - label_smoothing) + label_smoothing / probs.shape[-1])
    a = torch.cat([torch.ones_like(embeddings[:, :1]), embeddings], dim=1) if bias else embeddings
    return g, a


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to norm 1; zero rows stay zero (their cosine with anything is taken as 0)."""
    n = x.norm(dim=1, keepdim=True)
    return torch.where(n > 0, x / n.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(x))


def gradient_cosine_similarity(g: torch.Tensor, a: torch.Tensor, cols: torch.Tensor | None = None) -> torch.Tensor:
    """DeepCore's similarity ``s_ij = 0.5 + 0.5 cos(f_i, f_j)`` (``cossim_np``; in ``[0, 1]``) between the gradient
    features ``f = g (x) a``, as ``[N, len(cols)]`` (all columns by default). ``cos(f_i, f_j) = cos(g_i, g_j)
    cos(a_i, a_j)``. A zero gradient has cosine 0 with everything, itself included (``s = 0.5``); DeepCore
    divides by its zero norm (NaN)."""
    gu, au = _unit_rows(g), _unit_rows(a)
    if cols is None:
        return 0.5 + 0.5 * (gu @ gu.T) * (au @ au.T)
    return 0.5 + 0.5 * (gu @ gu[cols].T) * (au @ au[cols].T)


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def graph_cut_greedy(
    g: torch.Tensor, a: torch.Tensor, k: int, lam: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy maximisation of the graph-cut function ``F(S) = lam sum_{i in V, j in S} s_ij - sum_{i, j in S} s_ij``
    on :func:`gradient_cosine_similarity` (DeepCore's ``GraphCut``; Iyer et al., ALT 2021). Returns ``(indices in
    the order picked, the gain of each pick)``.

    The marginal gain of ``x`` is ``lam colsum(x) - 2 sum_{j in S} s_jx - s_xx``; each step adds one kernel
    column to the running ``sum_{j in S} s_jx`` of every candidate, so every gain is exact at every step (exact
    greedy: the picks of DeepCore's ``LazyGreedy`` up to ties). ``colsum`` needs no ``N x N`` matrix:
    ``sum_i cos(i, x) = gu_x^T (gu^T au) au_x``.
    """
    n = g.shape[0]
    perm = torch.randperm(n, generator=generator)
    dt = _work_dtype(g)
    gu, au = _unit_rows(g[perm].to(dt)), _unit_rows(a[perm].to(dt))
    colsum = 0.5 * n + 0.5 * ((gu @ (gu.T @ au)) * au).sum(dim=1)
    diag = 0.5 + 0.5 * (gu * gu).sum(dim=1) * (au * au).sum(dim=1)  # 1, or 0.5 for a zero gradient
    base = lam * colsum - diag
    acc = torch.zeros(n, dtype=dt)  # sum_{j in S} s_jx
    taken = torch.zeros(n, dtype=torch.bool)
    picked = torch.empty(k, dtype=torch.int64)
    gains = torch.empty(k, dtype=dt)
    for t in range(k):
        gain = (base - 2.0 * acc).masked_fill_(taken, float("-inf"))
        j = int(torch.argmax(gain))
        picked[t], gains[t] = j, gain[j]
        taken[j] = True
        acc += 0.5 + 0.5 * (gu @ gu[j]) * (au @ au[j])
    return perm[picked], gains


def logdet_greedy(
    g: torch.Tensor, a: torch.Tensor, k: int, ridge: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy maximisation of ``F(S) = log det(K_S + ridge I)`` with ``K`` the
    :func:`gradient_cosine_similarity` (the log-determinant function of DeepCore's ``LogDeterminant``; Iyer et al.,
    ALT 2021). Returns ``(indices in the order picked, the gain of each pick)``.

    The gain of ``x`` is ``log d_x^2``, ``d_x^2`` the Schur complement ``K'_xx - K'_xS K'_S^-1 K'_Sx`` of
    ``K' = K + ridge I``; all of them are kept exact with an incremental Cholesky factorisation (the fast greedy
    MAP inference of Chen, Zhang & Zhou, NeurIPS 2018): per pick one kernel column and one ``[n, t]``
    matrix-vector product, ``O(n k^2)`` in all and ``O(n k)`` memory, never the ``N x N`` kernel. Exact greedy
    (DeepCore's ``LazyGreedy`` picks the same up to ties). ``d^2 >= ridge`` in exact arithmetic; rounding below
    is clamped there.
    """
    n = g.shape[0]
    perm = torch.randperm(n, generator=generator)
    dt = _work_dtype(g)
    gu, au = _unit_rows(g[perm].to(dt)), _unit_rows(a[perm].to(dt))
    d2 = 0.5 + 0.5 * (gu * gu).sum(dim=1) * (au * au).sum(dim=1) + ridge
    chol = torch.zeros(n, k, dtype=dt)  # row i: the Cholesky coefficients of candidate i against the picks
    taken = torch.zeros(n, dtype=torch.bool)
    picked = torch.empty(k, dtype=torch.int64)
    gains = torch.empty(k, dtype=dt)
    for t in range(k):
        score = d2.masked_fill(taken, float("-inf"))
        j = int(torch.argmax(score))
        picked[t], gains[t] = j, math.log(float(d2[j]))
        taken[j] = True
        if t + 1 == k:
            break
        col = 0.5 + 0.5 * (gu @ gu[j]) * (au @ au[j])  # K[:, j] (K'[:, j] off the diagonal)
        e = (col - chol[:, :t] @ chol[j, :t]) / math.sqrt(float(d2[j]))
        chol[:, t] = e
        d2 = (d2 - e * e).clamp_min_(ridge)
    return perm[picked], gains


def omp_nonneg(
    g: torch.Tensor, a: torch.Tensor, k: int, lam: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """GradMatch's orthogonal matching pursuit (Killamsetty et al., ICML 2021, Algorithm 1; DeepCore's
    ``orthogonal_matching_pursuit``): approximately ``min_{|S| = k, w >= 0} ||sum_{i in S} w_i f_i - b||^2 +
    lam ||w||^2`` with ``f_i = g_i (x) a_i`` and the target ``b = sum_i f_i``, the summed gradient (the paper's
    ``grad L`` and GradMatch's code; DeepCore matches the mean, which scales the weights by ``1/n`` and turns
    ``lam`` into ``lam n^2``).

    Each step adds the unpicked ``i`` with the largest projection ``<f_i, r>`` on the residual (signed, as
    DeepCore and GradMatch's ``positive=True``), then refits ``w_S`` by ridge regression ``(K_SS + lam I) w =
    F_S b`` (``K`` the Gram matrix) and sets ``r = b - sum w_i f_i``. After ``k`` steps the weights are the
    non-negative ridge fit ``argmin_{w >= 0} ||F_S^T w - b||^2 + lam ||w||^2`` (scipy's NNLS on the Cholesky
    factor). Returns ``(indices in the order picked, weights)``; weights may be 0.

    Per step: one kernel column, one ``[C, t] @ [t, d+1]`` product for the residual and one ``[n, C] @ [C, d+1]``
    for the projections (the features are never formed), and two triangular solves of size ``t``.
    """
    n = g.shape[0]
    perm = torch.randperm(n, generator=generator)
    g, a = g[perm].double(), a[perm].double()
    target = g.T @ a  # b as a [C, d+1] matrix
    p0 = ((g @ target) * a).sum(dim=1)  # <f_i, b>
    proj = p0.clone()
    chol = torch.zeros(k, k, dtype=torch.float64)  # lower Cholesky factor of K_SS + lam I
    taken = torch.zeros(n, dtype=torch.bool)
    picked = torch.empty(k, dtype=torch.int64)
    w = torch.zeros(0, dtype=torch.float64)
    for t in range(k):
        j = int(torch.argmax(proj.masked_fill(taken, float("-inf"))))
        picked[t] = j
        taken[j] = True
        kcol = (g[picked[:t]] @ g[j]) * (a[picked[:t]] @ a[j])  # K_Sj
        kjj = float((g[j] @ g[j]) * (a[j] @ a[j]))
        if t:
            row = torch.linalg.solve_triangular(chol[:t, :t], kcol[:, None], upper=False).flatten()
            chol[t, :t] = row
            chol[t, t] = math.sqrt(max(kjj + lam - float(row @ row), lam))
        else:
            chol[0, 0] = math.sqrt(kjj + lam)
        w = torch.cholesky_solve(p0[picked[: t + 1], None], chol[: t + 1, : t + 1]).flatten()
        resid = target - g[picked[: t + 1]].T @ (w[:, None] * a[picked[: t + 1]])
        proj = ((g @ resid) * a).sum(dim=1)
    # ||F_S^T w - b||^2 + lam ||w||^2 = ||L^T w - L^-1 F_S b||^2 + const, with L L^T = K_SS + lam I
    low = chol.numpy()
    rhs = torch.linalg.solve_triangular(chol, p0[picked][:, None], upper=False).flatten().numpy()
    w_nn, _ = scipy.optimize.nnls(low.T, rhs, maxiter=max(50 * k, 1000))
    return perm[picked], torch.from_numpy(w_nn)


def gradmatch_select(
    g: torch.Tensor, a: torch.Tensor, k: int, lam: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """GradMatch's subset of ``k`` of the ``n`` rows with weights: :func:`omp_nonneg`'s picks and weights, and, as
    GradMatch's code (github decile-team/cords, ``GradMatchStrategy.select``), every pick the fit weights 0 replaced by a
    uniformly random unpicked row with weight 1 (the pick itself, with weight 1, when none is left).
    Returns ``(indices, weights)`` of length ``k``."""
    n = g.shape[0]
    picked, w = omp_nonneg(g, a, k, lam, generator)
    w = w.to(torch.float32)
    zero = w <= 0
    if bool(zero.any()):
        free = torch.ones(n, dtype=torch.bool)
        free[picked] = False
        pool = torch.nonzero(free).flatten()
        pool = pool[torch.randperm(pool.numel(), generator=generator)]
        slots = torch.nonzero(zero).flatten()[: pool.numel()]
        picked = picked.clone()
        picked[slots] = pool[: slots.numel()]
        w[zero] = 1.0
    return picked, w


# --------------------------------------------------------------------------------------------------
# options
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CraigOptions(ProxyOptions):
    class_balanced: bool = True  # per class (DeepCore main.py --balance True); false: one greedy, class-block sim.
    weighted: bool = True  # train with CRAIG's cluster-size weights (Mirzasoleiman et al. 2020; normalised to mean 1)
    #: CRAIG's similarity space (fixed; ``facility-location`` offers embeddings too)
    features: ClassVar[Literal["gradients"]] = "gradients"


@dataclass(frozen=True)
class GradMatchOptions(ProxyOptions):
    class_balanced: bool = True  # per class (DeepCore's main.py --balance True); false: one OMP over all samples
    lam: float = 0.5  # ridge on the weights, summed-gradient target (GradMatch's code: cords config_gradmatch_cifar10)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.lam) and self.lam > 0):
            raise ConfigError(f"lam must be a finite number > 0, got {self.lam}")


@dataclass(frozen=True)
class GraphCutOptions(ProxyOptions):
    class_balanced: bool = True  # per class (DeepCore's main.py --balance True); false: one greedy, full similarity
    lam: float = 1.0  # weight of the coverage term (DeepCore's GraphCut default lam=1.)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.lam) and self.lam >= 0):
            raise ConfigError(f"lam must be a finite number >= 0, got {self.lam}")


@dataclass(frozen=True)
class LogDetOptions(ProxyOptions):
    class_balanced: bool = True  # per class (DeepCore's main.py --balance True); false: one greedy, full similarity
    ridge: float = 1e-3  # added to the kernel's diagonal (prunebench's: keeps log det finite past the kernel's rank)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.ridge) and self.ridge > 0):
            raise ConfigError(f"ridge must be a finite number > 0, got {self.ridge}")


# --------------------------------------------------------------------------------------------------
# the pruners
# --------------------------------------------------------------------------------------------------

_DEEPCORE = "Guo, Zhao & Bai, DEXA 2022: DeepCore, a comprehensive library for coreset selection in deep learning"


class _GradientPruner(StaticPruner):
    """Shared: the gradient factors of the proxy's last epoch, and per-class or global selection."""

    short_names: ClassVar[dict[str, str]] = SHORT
    family: ClassVar[str] = "submodular"
    cost_profile: ClassVar[tuple[str, ...]] = ("proxy run",)

    def _factors(self, rec: dict[str, Any], labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return grad_factors(
            torch.as_tensor(rec["probs"][0]),
            labels,
            torch.as_tensor(rec["embeddings"][0]),
            rec["label_smoothing"],
            bias=bool(rec["head_bias"]),
        )


@register_pruner("craig")
class Craig(FacilityLocation):
    """CRAIG (Mirzasoleiman, Bilmes & Leskovec, ICML 2020, "Coresets for data-efficient training of machine
    learning models") as DeepCore runs it: lazy-greedy facility location on the last-layer gradients
    ``[dl/dz, dl/dz (x) e]`` within each class (``class_balanced``, DeepCore's ``main.py --balance True``), each
    kept sample weighted in training by its cluster size (CRAIG's ``gamma_j``: the class members whose most
    similar pick it is), normalised to mean 1 over the kept set (``weighted``).

    This is ``facility-location`` with CRAIG's settings fixed (``features="gradients"``, not an option here) and
    the same code path (:func:`prunebench.pruners.coverage.facility_location`, similarity ``max(D) - D`` of the
    Euclidean distances ``D``). DeepCore's ``Craig`` adds ``1e-3`` to that similarity: a constant that changes no
    gain after the first pick and not the first pick's order, so the picks are the same. Not copied from DeepCore
    (see ``facility-location``): weights of cluster size + 1, and gradients of the batch's mean loss.
    """

    description = (
        "facility location on last-layer gradients per class, cluster-size weights (CRAIG, ICML 2020; DeepCore)"
    )
    Options = CraigOptions  # type: ignore[assignment]  # facility location's fields, features fixed (a ClassVar)
    family = "submodular"
    paper = (
        "Mirzasoleiman, Bilmes & Leskovec, ICML 2020: Coresets for data-efficient training of machine learning models"
    )
    cost_profile = ("proxy run",)
    uses_weights = True
    defaults_source = "DeepCore main.py (--balance True, LazyGreedy); CRAIG's cluster-size weights"


@register_pruner("gradmatch")
class GradMatch(_GradientPruner):
    """GradMatch (Killamsetty et al., ICML 2021, "GRAD-MATCH: gradient matching based data subset selection for
    efficient deep model training") as DeepCore's ``GradMatch``: within each class (``class_balanced``), orthogonal
    matching pursuit picks ``q_c`` samples whose non-negatively weighted last-layer gradients match the class's
    summed gradient, with a ridge ``lam ||w||^2`` (:func:`omp_nonneg`); the kept samples train with their weights.

    Weights: the non-negative fit's (they sum to about ``n_c``), picks the fit weights 0 replaced by random unpicked class members with weight 1 (as GradMatch's code,
    :func:`gradmatch_select`), then all normalised to mean 1 over the kept set (the loop averages ``w_i l_i``; so
    does DeepCore's ``sum(w l) / sum(w)`` per batch, in expectation).

    Departures from DeepCore (``deepcore/methods/gradmatch.py``): (1) DeepCore drops the picks its final NNLS weights
    0 and trains on fewer than the budget; here they are replaced as GradMatch's code does, so exactly ``q`` are
    kept. (2) DeepCore's final NNLS is ``min_{w>=0} ||(K_SS + lam I) w - F_S b||`` (on the normal equations), not
    the regularised objective the paper and its own OMP steps minimise; here it is the regularised objective
    ``min_{w>=0} ||F_S^T w - b||^2 + lam ||w||^2``. (3) DeepCore's first OMP step fits without the ridge; here every
    step uses it. (4) DeepCore's gradients are those of the batch's mean loss (divided by the selection batch size,
    256 by default) and its target is the class's mean gradient; here the gradients are per sample, the target is
    the summed gradient and ``lam`` applies to them as the paper's objective reads, with GradMatch's own default
    ``lam = 0.5`` (DeepCore's ``lam = 1`` on its mean target and batch-mean gradients is ``lam = 256^2 n_c^2``
    here: so strong a ridge that its weights are nearly proportional to the projections). DeepCore without a
    validation set (its ``main.py``) matches the training gradient, as here. Cost: ``O(q_c^3 + q_c n_c (C + d))`` per class.
    """

    description = (
        "orthogonal matching pursuit on last-layer gradients per class, with weights (GradMatch, ICML 2021; DeepCore)"
    )
    Options = GradMatchOptions
    family = "gradient matching"
    paper = (
        "Killamsetty, Sivasubramanian, Ramakrishnan, De & Iyer, ICML 2021: GRAD-MATCH, gradient matching based "
        "data subset selection for efficient deep model training"
    )
    uses_weights = True
    defaults_source = "GradMatch's code (cords, lam=0.5); DeepCore main.py --balance True"

    def select(self, rec, labels, num_classes):
        g, a = self._factors(rec, labels)
        weights = torch.zeros(self.num_samples)

        def rule(cand: torch.Tensor, b: int) -> torch.Tensor:
            idx, w = gradmatch_select(g[cand], a[cand], b, self.options.lam, self.generator)
            weights[cand[idx]] = w
            return cand[idx]

        kept = self._per_class(labels, num_classes, rule)
        w = weights[kept]
        return kept, w * (kept.numel() / w.sum())


@register_pruner("graphcut")
class GraphCut(_GradientPruner):
    """GraphCut (the graph-cut submodular function; Iyer, Khargonkar, Bilmes & Asnani, ALT 2021, "Submodular
    combinatorial information measures"; DeepCore's ``Submodular(function="GraphCut")``, the default of its
    ``main.py``): greedy maximisation of ``lam sum_{i in V, j in S} s_ij - sum_{i, j in S} s_ij`` with
    ``s_ij = 0.5 + 0.5 cos(f_i, f_j)`` on last-layer gradients ``f``, within each class (``class_balanced``) or over
    all samples with the full similarity (DeepCore's ``balance=False``). Unweighted. ``lam`` is DeepCore's (on the
    coverage term; Iyer et al. put ``1/lam`` on the diversity term, the same maximiser).

    Exact greedy (:func:`graph_cut_greedy`): the picks of DeepCore's ``LazyGreedy`` (its ``main.py`` default) up
    to ties (the function is submodular for ``s >= 0``). DeepCore's gain omits the constant ``-s_xx`` (1 for
    every nonzero gradient), which changes no pick; here the gain is the exact marginal gain. A zero gradient
    has cosine 0 here (DeepCore: NaN).
    """

    description = (
        "greedy graph-cut submodular selection on last-layer-gradient cosine similarity (Iyer et al. 2021; DeepCore)"
    )
    Options = GraphCutOptions
    paper = "Iyer, Khargonkar, Bilmes & Asnani, ALT 2021: Submodular combinatorial information measures; " + _DEEPCORE
    defaults_source = (
        "DeepCore (GraphCut lam=1.; main.py --submodular GraphCut --submodular_greedy LazyGreedy --balance True)"
    )

    def select(self, rec, labels, num_classes):
        g, a = self._factors(rec, labels)
        rule = lambda cand, b: cand[graph_cut_greedy(g[cand], a[cand], b, self.options.lam, self.generator)[0]]  # noqa: E731
        return self._per_class(labels, num_classes, rule), None


@register_pruner("logdet")
class LogDeterminant(_GradientPruner):
    """LogDeterminant (the log-determinant submodular function; Iyer et al., ALT 2021; DeepCore's
    ``Submodular(function="LogDeterminant")``): greedy maximisation of ``log det(K_S + ridge I)`` with
    ``K_ij = 0.5 + 0.5 cos(f_i, f_j)`` on last-layer gradients ``f``, within each class (``class_balanced``) or
    over all samples with the full kernel (DeepCore's ``balance=False``; then ``O(N q)`` memory). Unweighted.

    Exact greedy (:func:`logdet_greedy`, the fast greedy MAP of Chen et al., NeurIPS 2018): the picks of a lazy
    greedy up to ties. Departures and DeepCore bugs not copied: DeepCore's ``LogDeterminant.calc_gain`` returns
    ``K_xS K_S^+ K_Sx`` instead of ``log(K_xx - K_xS K_S^+ K_Sx)``, so the greedy *maximises* the similarity to the
    selected set (the most redundant point) instead of the log-determinant gain; with the empty set every gain
    is 0 and every later evaluated gain is >= 0, so its ``LazyGreedy`` and ``ApproximateLazyGreedy`` accept the
    first stale candidate each step and select the first ``q_c`` samples in dataset order. Here the gain is the
    paper's. ``ridge`` (prunebench's; default 1e-3 against the kernel's unit diagonal) keeps the gain finite once
    the picks span the kernel's numerical rank (at most ``1 + (C - 1)(d + 1)``), where ``log det(K_S)`` alone is
    ``-inf``. A zero gradient has cosine 0 here (DeepCore: NaN).
    """

    description = "greedy log-determinant submodular selection on last-layer-gradient cosine similarity (Iyer et al. 2021; DeepCore)"
    Options = LogDetOptions
    paper = "Iyer, Khargonkar, Bilmes & Asnani, ALT 2021: Submodular combinatorial information measures; " + _DEEPCORE
    defaults_source = "DeepCore (main.py --balance True, LazyGreedy); ridge=1e-3 prunebench's"

    def select(self, rec, labels, num_classes):
        g, a = self._factors(rec, labels)
        rule = lambda cand, b: cand[logdet_greedy(g[cand], a[cand], b, self.options.ridge, self.generator)[0]]  # noqa: E731
        return self._per_class(labels, num_classes, rule), None


__all__ = [
    "Craig",
    "GradMatch",
    "GraphCut",
    "LogDeterminant",
    "grad_factors",
    "gradient_cosine_similarity",
    "graph_cut_greedy",
    "logdet_greedy",
    "omp_nonneg",
    "gradmatch_select",
]
