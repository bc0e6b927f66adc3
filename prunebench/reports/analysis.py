"""Analyses of logged artifacts (kept masks, plan-time scores): pure numpy functions, tested directly."""

from __future__ import annotations

import itertools

import numpy as np


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|A n B| / |A u B| of two boolean masks (1 for two empty sets)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def cross_seed_jaccard(masks_by_seed: list[np.ndarray]) -> np.ndarray:
    """Per epoch, the mean Jaccard of the kept sets of every pair of seeds (masks: bool [E, N] each).

    Epochs beyond the shortest run are dropped.
    """
    if len(masks_by_seed) < 2:
        raise ValueError("cross-seed overlap needs at least two seeds")
    e = min(m.shape[0] for m in masks_by_seed)
    pairs = list(itertools.combinations(range(len(masks_by_seed)), 2))
    return np.array([np.mean([jaccard(masks_by_seed[i][t], masks_by_seed[j][t]) for i, j in pairs]) for t in range(e)])


def keep_by_rank(
    scores: np.ndarray, kept: np.ndarray, gamma: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Which loss ranks one epoch kept, and the keep probability OrderDP gives each rank.

    ``scores`` are the pruner's stored scores at plan time (what it ranks by), ``kept`` the epoch's kept
    mask. Samples are ranked by decreasing score (rank 1 = largest), tied samples in random order.
    Returns ``(kept_at_rank, expected_at_rank)``, both of length N: ``kept_at_rank[j]`` is 1 if the
    sample of rank ``j+1`` was kept; ``expected_at_rank[j]`` is ``gamma`` averaged over the tie block
    containing rank ``j+1`` (the pruner breaks ties uniformly, so a tied block shares its keep
    probability; without ties it equals ``gamma[j]``).
    """
    n = scores.size
    order = np.lexsort((rng.random(n), -scores.astype(np.float64)))
    kept_at_rank = kept[order].astype(float)
    s = scores[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    sizes = np.diff(np.r_[starts, n])
    block_mean = np.add.reduceat(gamma, starts) / sizes
    expected = np.repeat(block_mean, sizes)
    return kept_at_rank, expected


def bin_ranks(values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Average a per-rank array over ``bins`` contiguous rank bins; returns (bin centre rank, mean)."""
    n = values.size
    edges = np.linspace(0, n, min(bins, n) + 1).round().astype(int)
    edges = np.unique(edges)
    sums = np.add.reduceat(values, edges[:-1])
    width = np.diff(edges)
    centres = (edges[:-1] + edges[1:] - 1) / 2 + 1  # 1-based ranks
    return centres, sums / width
