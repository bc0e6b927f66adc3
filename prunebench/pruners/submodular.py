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
the ``k`` picks (benchmarks/selectors_bench.py times them at CIFAR-10 scale). Inputs are permuted by the
generator first, so ties go uniformly at random.

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


#: the greedy selectors keep an ``n x n`` kernel (or Schur complement) when ``n`` is at most this (``n^2`` floats:
#: 200 MB in float64 at CIFAR-10's 5,000 per class); graph cut falls back to a kernel column per pick beyond
_DENSE_MAX_N = 12_000
_BLOCK = 128  # picks per blocked Schur-complement update (one GEMM of ``n x n x _BLOCK``)


def _cos_kernel(gu: torch.Tensor, au: torch.Tensor) -> torch.Tensor:
    """``[n, n]`` :func:`gradient_cosine_similarity` of unit-row factors, as two GEMMs."""
    kern = gu @ gu.T
    kern.mul_(au @ au.T).mul_(0.5).add_(0.5)
    return kern


class _Schur:
    """The Schur complement ``R = K - U U^T`` of a kernel matrix against the picks so far, for greedy selectors
    that need, per pick ``j``, the column ``R[:, j]`` over all candidates (incremental Cholesky: ``U``'s column
    ``t`` is ``R_t[:, j_t] / sqrt(R_t[j_t, j_t])``). Right-looking and blocked: ``R`` is updated once every
    ``block`` picks by one GEMM, and each column in between is corrected by the at most ``block`` new columns
    (a small matrix-vector product). Rows of picked candidates are dropped whenever they are a fifth of the rows.

    The per-pick cost is then ``O(n block)`` instead of the ``O(n t)`` of the left-looking form (a
    matrix-vector product over all previous columns, memory-bound), and the ``O(n^2 k)`` bulk runs as GEMM."""

    def __init__(self, kern: torch.Tensor, taken: torch.Tensor) -> None:
        n, block = kern.shape[0], _BLOCK
        self.r, self.taken = kern, taken  # r: owned, updated in place
        self.act = torch.arange(n)  # original index of each row of r
        self.row = torch.arange(n)  # original index -> row of r (while it has one)
        self.u = torch.empty(block, n, dtype=kern.dtype)
        self.nb = 0

    def column(self, j: int) -> torch.Tensor:
        """The current Schur column of original index ``j`` over the rows of ``act`` (a new tensor)."""
        i = int(self.row[j])
        col = self.r[i].clone()  # symmetric: the row is the column, contiguous
        if self.nb:
            col.addmv_(self.u[: self.nb].T, self.u[: self.nb, i], alpha=-1.0)
        return col

    def push(self, col: torch.Tensor) -> None:
        """Add a column of ``U`` (over the rows of ``act``)."""
        self.u[self.nb] = col
        self.nb += 1
        if self.nb == self.u.shape[0]:
            self._flush()

    def _flush(self) -> None:
        u = self.u[: self.nb]
        self.r.addmm_(u.T, u, alpha=-1.0)
        self.nb = 0
        alive = ~self.taken[self.act]
        m = int(alive.sum())
        if m <= 0.8 * self.act.numel():
            keep = torch.nonzero(alive).flatten()
            self.r = self.r[keep[:, None], keep]
            self.act = self.act[keep]
            self.row[self.act] = torch.arange(m)
            self.u = torch.empty(self.u.shape[0], m, dtype=self.r.dtype)


def graph_cut_greedy(
    g: torch.Tensor, a: torch.Tensor, k: int, lam: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy maximisation of the graph-cut function ``F(S) = lam sum_{i in V, j in S} s_ij - sum_{i, j in S} s_ij``
    on :func:`gradient_cosine_similarity` (DeepCore's ``GraphCut``; Iyer et al., ALT 2021). Returns ``(indices in
    the order picked, the gain of each pick)``.

    The marginal gain of ``x`` is ``lam colsum(x) - 2 sum_{j in S} s_jx - s_xx``; each step adds one kernel
    column to the running ``sum_{j in S} s_jx`` of every candidate, so every gain is exact at every step (exact
    greedy: the picks of DeepCore's ``LazyGreedy`` up to ties). The kernel is formed once (two GEMMs) when
    ``n <= 12,000``, else each pick's column is computed from the factors. ``colsum`` needs no ``N x N`` matrix:
    ``sum_i cos(i, x) = gu_x^T (gu^T au) au_x``.
    """
    n = g.shape[0]
    perm = torch.randperm(n, generator=generator)
    dt = _work_dtype(g)
    gu, au = _unit_rows(g[perm].to(dt)), _unit_rows(a[perm].to(dt))
    colsum = 0.5 * n + 0.5 * ((gu @ (gu.T @ au)) * au).sum(dim=1)
    diag = 0.5 + 0.5 * (gu * gu).sum(dim=1) * (au * au).sum(dim=1)  # 1, or 0.5 for a zero gradient
    base = lam * colsum - diag
    kern = _cos_kernel(gu, au) if n <= _DENSE_MAX_N else None
    acc = torch.zeros(n, dtype=dt)  # sum_{j in S} s_jx
    gain = torch.empty(n, dtype=dt)
    taken = torch.zeros(n, dtype=torch.bool)
    picked = torch.empty(k, dtype=torch.int64)
    gains = torch.empty(k, dtype=dt)
    for t in range(k):
        torch.add(base, acc, alpha=-2.0, out=gain).masked_fill_(taken, float("-inf"))
        j = int(torch.argmax(gain))
        picked[t], gains[t] = j, gain[j]
        taken[j] = True
        if kern is not None:
            acc += kern[j]
        else:
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
    MAP inference of Chen, Zhang & Zhou, NeurIPS 2018), here right-looking and blocked (:class:`_Schur`): ``O(n^2
    k)`` as GEMM and ``O(n^2)`` memory. Exact greedy (DeepCore's ``LazyGreedy`` picks the same up to ties).
    ``d^2 >= ridge`` in exact arithmetic; rounding below is clamped there.
    """
    n = g.shape[0]
    perm = torch.randperm(n, generator=generator)
    dt = _work_dtype(g)
    gu, au = _unit_rows(g[perm].to(dt)), _unit_rows(a[perm].to(dt))
    kern = _cos_kernel(gu, au)
    kern.diagonal().add_(ridge)
    d2 = kern.diagonal().clone()
    taken = torch.zeros(n, dtype=torch.bool)
    schur = _Schur(kern, taken)
    picked = torch.empty(k, dtype=torch.int64)
    gains = torch.empty(k, dtype=dt)
    score = torch.empty(n, dtype=dt)
    for t in range(k):
        score.copy_(d2).masked_fill_(taken, float("-inf"))
        j = int(torch.argmax(score))
        dj = float(d2[j])
        picked[t], gains[t] = j, math.log(dj)
        taken[j] = True
        if t + 1 == k:
            break
        e = schur.column(j).div_(math.sqrt(dj))
        d2.index_add_(0, schur.act, e * e, alpha=-1.0)
        d2.clamp_min_(ridge)
        schur.push(e)
    return perm[picked], gains


def nnls_gram(h: torch.Tensor, c: torch.Tensor, max_iter: int = 200) -> torch.Tensor:
    """``argmin_{w >= 0} w^T H w / 2 - c^T w`` for a symmetric positive definite ``H`` (the non-negative least
    squares ``min_{w >= 0} ||F^T w - b||^2`` in its Gram form, ``H = F F^T``, ``c = F b``), by block principal
    pivoting (Kim & Park, SIAM J. Sci. Comput. 2011, Algorithm 2; Judice & Pires 1994): exchange every variable
    that violates the KKT conditions between the free and the zero set, one Cholesky solve per exchange, with the
    backup rule that guarantees termination. The minimiser is unique (``H`` positive definite), the one scipy's
    Lawson-Hanson ``nnls`` finds, which adds one variable per iteration (minutes at ``k`` = 2,500)."""
    k = c.numel()
    free = torch.ones(k, dtype=torch.bool)  # start from the unconstrained minimiser
    scale = float(c.abs().max()) if k else 0.0
    tol = 1e-12 * max(scale, 1.0)
    best, alpha = k + 1, 3
    w = torch.zeros_like(c)
    for _ in range(max_iter):
        f = torch.nonzero(free).flatten()
        w.zero_()
        if f.numel():
            low = torch.linalg.cholesky(h[f[:, None], f])
            w[f] = torch.cholesky_solve(c[f, None], low).flatten()
        y = h @ w - c  # the gradient: 0 on the free set, must be >= 0 on the zero set
        bad = (free & (w < 0)) | (~free & (y < -tol))
        nbad = int(bad.sum())
        if nbad == 0:
            return w.clamp_min_(0.0)
        if nbad < best:
            best, alpha = nbad, 3
            free ^= bad
        elif alpha > 0:
            alpha -= 1
            free ^= bad
        else:
            i = int(torch.nonzero(bad).flatten()[-1])
            free[i] = ~free[i]
    raise RuntimeError(f"nnls_gram did not converge in {max_iter} exchanges")


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
    non-negative ridge fit ``argmin_{w >= 0} ||F_S^T w - b||^2 + lam ||w||^2`` (:func:`nnls_gram` on
    ``K_SS + lam I`` and ``F_S b``). Returns ``(indices in the order picked, weights)``; weights may be 0.

    The refit is never solved: with ``L L^T = K_SS + lam I`` (incremental Cholesky, :class:`_Schur` on
    ``K + lam I``), ``c = L^-1 F_S b`` and ``E = K_{.S} L^-T`` (the Cholesky coefficients of every candidate),
    the projections are ``<f_i, r> = <f_i, b> - E_i c``; a pick adds one column ``e`` to ``E`` and one entry
    ``c_t = <f_j, r> / L_tt`` to ``c``, so every projection drops by ``c_t e_i`` (Batch-OMP, Rubinstein et al.
    2008; the ridge is the Cholesky factor of ``K_SS + lam I`` instead of ``K_SS``). Float64 throughout.
    """
    n = g.shape[0]
    perm = torch.randperm(n, generator=generator)
    g, a = g[perm].double(), a[perm].double()
    target = g.T @ a  # b as a [C, d+1] matrix
    p0 = ((g @ target) * a).sum(dim=1)  # <f_i, b>
    proj = p0.clone()
    kern = g @ g.T
    kern.mul_(a @ a.T).diagonal().add_(lam)  # K + lam I
    taken = torch.zeros(n, dtype=torch.bool)
    schur = _Schur(kern, taken)
    picked = torch.empty(k, dtype=torch.int64)
    score = torch.empty(n, dtype=torch.float64)
    for t in range(k):
        score.copy_(proj).masked_fill_(taken, float("-inf"))
        j = int(torch.argmax(score))
        picked[t] = j
        taken[j] = True
        if t + 1 == k:
            break
        col = schur.column(j)
        ltt = math.sqrt(max(float(col[int(schur.row[j])]), lam))  # d_j^2 >= lam in exact arithmetic
        col.div_(ltt)
        proj.index_add_(0, schur.act, col, alpha=-float(proj[j]) / ltt)
        schur.push(col)
    del schur, kern
    gs, as_ = g[picked], a[picked]
    gram = gs @ gs.T
    gram.mul_(as_ @ as_.T).diagonal().add_(lam)
    return perm[picked], nnls_gram(gram, p0[picked])


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
    validation set (its ``main.py``) matches the training gradient, as here. Cost per class: ``O(n_c^2 (C + d + q_c))``
    (the Gram matrix and the blocked Cholesky, GEMM) and ``O(n_c^2)`` memory (float64: 200 MB at ``n_c`` = 5,000).
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
    over all samples with the full kernel (DeepCore's ``balance=False``; then ``O(N^2)`` memory). Unweighted.

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
    "nnls_gram",
    "gradmatch_select",
]
