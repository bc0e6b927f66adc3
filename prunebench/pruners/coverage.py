"""Greedy cover selection rules over embeddings: k-center, herding, facility location.

Each greedy step is a handful of batched tensor operations over all points (one matrix-vector product
for k-center and herding, one block of columns for facility location); there is no Python loop over
samples inside a step. Points are visited in a random order drawn from the generator passed in, so
ties (equal distances or gains) are broken uniformly at random.
"""

from __future__ import annotations

import torch


def kcenter_greedy(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Farthest-point greedy k-center (Sener & Savarese, ICLR 2018), from a uniformly random first
    center (as DeepCore). Returns the ``k`` row indices of ``x [n, d]`` in the order picked.

    Exact greedy, sped up with the triangle inequality (as Elkan's k-means): every point keeps its
    distance ``r_i`` to its nearest center ``c(i)`` and every center the radius ``R_c`` of its cluster.
    A new center ``j`` can only come closer to a point of cluster ``c`` if ``d(c, j) < 2 R_c``, so each
    step computes the distances of ``j`` to the centers (one matrix-vector product) and then to the
    points of the clusters it may steal from, all as batched tensor operations.
    """
    n = x.shape[0]
    perm = torch.randperm(n, generator=generator)
    x = x[perm].float().contiguous()
    sq = (x * x).sum(dim=1)
    picked = torch.empty(k, dtype=torch.int64)
    centers = torch.empty(k, x.shape[1])
    radius = torch.zeros(k)  # R_c (distance, not squared)
    min_d = torch.full((n,), float("inf"))  # squared distance to the nearest center
    assign = torch.zeros(n, dtype=torch.int64)
    j = 0  # position 0 of a uniform permutation is a uniformly random first center
    for t in range(k):
        picked[t] = j
        xj = x[j]
        centers[t] = xj
        if t == 0:
            pts = torch.arange(n)
        else:
            # j is at distance r = sqrt(min_d[j]) from every center, so d(c, j) < 2 R_c needs R_c > r / 2
            r = float(min_d[j].clamp_min(0.0).sqrt())
            near = torch.nonzero(radius[:t] > 0.5 * r).flatten()
            dc = torch.mv(centers[near], xj).mul_(-2.0).add_(sq[picked[near]]).add_(sq[j]).clamp_min_(0.0).sqrt_()
            may = torch.zeros(t, dtype=torch.bool)
            may[near] = dc < 2.0 * radius[near]
            pts = torch.nonzero(may[assign]).flatten()
        if pts.numel() > n // 8:  # gathering many rows costs more than streaming all of them
            dp = torch.mv(x, xj)[pts]
        else:
            dp = torch.mv(x[pts], xj)
        dp = dp.mul_(-2.0).add_(sq[pts]).add_(sq[j]).clamp_min_(0.0)
        old = min_d[pts]
        closer = dp < old
        min_d[pts] = torch.where(closer, dp, old)
        assign[pts] = torch.where(closer, t, assign[pts])
        min_d[j] = float("-inf")  # never picked again, even when duplicates make every distance zero
        a = assign[pts]
        radius[a] = 0.0
        radius.scatter_reduce_(0, a, min_d[pts].clamp_min(0.0).sqrt(), reduce="amax")
        j = int(torch.argmax(min_d))
    return perm[picked]


def herding(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Kernel herding on embeddings (Welling, ICML 2009; Chen et al., UAI 2010; as DeepCore's Herding):
    step ``t`` adds the point that brings the mean of the selected embeddings closest to the mean of
    all, i.e. ``argmin_i ||(t+1) mu - S_t - x_i||`` over unselected ``i``. Returns indices in order."""
    n = x.shape[0]
    perm = torch.randperm(n, generator=generator)
    x = x[perm].float().contiguous()
    sq = (x * x).sum(dim=1)
    mu = x.to(torch.float64).mean(dim=0)
    s = torch.zeros_like(mu)  # running sum over thousands of steps: double precision
    picked = torch.empty(k, dtype=torch.int64)
    taken = torch.zeros(n, dtype=torch.bool)
    score = torch.empty(n)
    for t in range(k):
        r = ((t + 1) * mu - s).float()
        torch.mv(x, r, out=score)
        score.mul_(-2.0).add_(sq)  # ||r - x_i||^2 minus the constant ||r||^2
        score.masked_fill_(taken, float("inf"))
        j = int(torch.argmin(score))
        picked[t] = j
        taken[j] = True
        s += x[j].to(torch.float64)
    return perm[picked]


def facility_location(x: torch.Tensor, k: int, generator: torch.Generator, block: int = 32
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Lazy greedy maximisation of the facility-location function ``F(S) = sum_i max_{j in S} sim(i, j)``
    with CRAIG's similarity ``sim = max(D) - D`` (``D`` the Euclidean distances; Mirzasoleiman et al.,
    ICML 2020; DeepCore's submodular selection).

    Lazy greedy (Minoux 1978): stale gains are upper bounds (submodularity), so the point with the
    best *fresh* gain is accepted once that gain is at least every other stale bound. Fresh gains are
    evaluated ``block`` candidates at a time as one matrix operation. Returns ``(indices in order
    picked, weights)`` where ``weights[t]`` is the size of the cluster of points whose most similar
    selected point is ``indices[t]`` (CRAIG's per-element weights; they sum to ``n``).
    """
    n = x.shape[0]
    perm = torch.randperm(n, generator=generator)
    x = x[perm].float()
    dist = torch.cdist(x, x)
    dist.fill_diagonal_(0.0)
    sim = dist.max() - dist  # >= 0, symmetric, so rows double as columns
    del dist
    cur = torch.zeros(n)  # max similarity of each point to the selected set (0 for the empty set)
    bounds = sim.sum(dim=0)  # gains w.r.t. the empty set are exact
    picked = torch.empty(k, dtype=torch.int64)
    b = min(block, n)
    for t in range(k):
        while True:
            top = torch.topk(bounds, min(b + 1, n))
            cand = top.indices[:b]
            fresh = (sim[cand] - cur).clamp_min_(0.0).sum(dim=1)
            bounds[cand] = fresh
            best = int(torch.argmax(fresh))
            if top.values.numel() <= b or fresh[best] >= top.values[b] or not torch.isfinite(top.values[b]):
                break
        j = int(cand[best])
        picked[t] = j
        torch.maximum(cur, sim[j], out=cur)
        bounds[j] = float("-inf")
    # clusters: each point goes to its most similar selected point; a selected point to itself
    assign = torch.argmax(sim[:, picked], dim=1)
    assign[picked] = torch.arange(k)
    weights = torch.bincount(assign, minlength=k).to(torch.float32)
    return perm[picked], weights
