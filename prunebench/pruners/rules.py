"""Selection rules: pure functions turning scores into kept indices.

All randomness comes from the generator passed in. Ties are broken uniformly at random by the
*permute-then-select* trick: the candidates are put in a uniformly random order before a deterministic
top-k; whatever positions top-k picks among tied values, the samples sitting there are a uniform draw.
"""

from __future__ import annotations

import torch

from prunebench.errors import ConfigError


def uniform_subset(n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """``k`` indices drawn uniformly without replacement from ``range(n)``, in random order."""
    return torch.randperm(n, generator=generator)[:k]


def shuffle(indices: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``indices`` in a uniformly random order."""
    return indices[torch.randperm(indices.numel(), generator=generator)]


def topk_random_ties(
    scores: torch.Tensor, k: int, generator: torch.Generator, candidates: torch.Tensor | None = None,
    largest: bool = True,
) -> torch.Tensor:
    """Indices of the ``k`` largest (or smallest) ``scores`` among ``candidates``, ties at random.

    ``candidates`` (dataset indices) defaults to all of ``range(len(scores))``. If the candidates are
    already in uniformly random order (e.g. a fresh uniform draw), no extra permutation is needed, but
    one is applied anyway so the guarantee never depends on the caller.
    """
    if candidates is None:
        candidates = torch.arange(scores.numel())
    if k >= candidates.numel():
        return candidates[torch.randperm(candidates.numel(), generator=generator)]
    cand = candidates[torch.randperm(candidates.numel(), generator=generator)]
    pos = torch.topk(scores[cand], k, largest=largest, sorted=False).indices
    return cand[pos]


def class_budgets(labels: torch.Tensor, k: int, num_classes: int | None = None) -> torch.Tensor:
    """Per-class budgets proportional to class sizes, summing exactly to ``k`` (largest remainder).

    Raises :class:`ConfigError` if a class in ``range(num_classes)`` has no sample.
    """
    counts = torch.bincount(labels, minlength=num_classes or 0).to(torch.float64)
    if num_classes is not None and bool((counts == 0).any()):
        empty = int(torch.nonzero(counts == 0)[0])
        raise ConfigError(
            f"class_balanced selection needs every class present; class {empty} has no training sample "
            f"(use class_balanced=false)"
        )
    n = counts.sum()
    exact = counts * (k / n)
    base = torch.floor(exact)
    rem = int(k - base.sum().item())
    if rem > 0:
        # largest remainders first; ties broken by class index (deterministic)
        order = torch.argsort(exact - base, descending=True, stable=True)
        base[order[:rem]] += 1
    return torch.minimum(base, counts).to(torch.int64)


def class_balanced(
    labels: torch.Tensor,
    k: int,
    select: "callable",
    num_classes: int | None = None,
) -> torch.Tensor:
    """Apply ``select(class_indices, budget) -> kept`` within each class with proportional budgets."""
    budgets = class_budgets(labels, k, num_classes)
    kept = []
    for c, b in enumerate(budgets.tolist()):
        if b == 0:
            continue
        idx = torch.nonzero(labels == c).flatten()
        kept.append(select(idx, b))
    return torch.cat(kept) if kept else torch.empty(0, dtype=torch.int64)
