"""Choosing a few representative samples out of many: k-means over the samples' end points.

Why: a best-of-K score (minADE / minFDE) rewards K samples that cover the distinct futures, while
K independent samples crowd the most likely one. Drawing M > K samples and keeping one per k-means
cluster of their final positions spreads the K over the modes (final position clustering, Xu et al.,
"SocialVAE", ECCV 2022). The kept samples are real draws: each is the member nearest its cluster's
centre, so nothing is averaged into a trajectory the model did not produce.

    keep = representative_samples(final_points, k=20)           # final_points: [N, M, C] -> [N, 20]
    chosen = np.take_along_axis(samples, keep[:, :, None, None], axis=1)   # samples: [N, M, T, C]
"""

from __future__ import annotations

import numpy as np

from trajdiff.errors import ConfigError, ShapeError

__all__ = ["kmeans", "representative_samples"]


def kmeans(points: np.ndarray, k: int, *, iterations: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Batched k-means (k-means++ start, Lloyd steps) on ``points [N, M, C]``: centres ``[N, k, C]`` and
    each point's cluster ``[N, M]``. Every batch item is clustered on its own."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 3:
        raise ShapeError(f"points must be [N, M, C], got shape {points.shape}")
    n, m, _ = points.shape
    if not 1 <= k <= m:
        raise ConfigError(f"k must be between 1 and the number of points ({m}), got {k}")
    rng = np.random.default_rng(seed)
    rows = np.arange(n)
    centres = np.empty((n, k, points.shape[2]))
    centres[:, 0] = points[rows, rng.integers(0, m, size=n)]
    nearest = ((points - centres[:, :1]) ** 2).sum(-1)  # [N, M] squared distance to the closest centre so far
    for j in range(1, k):  # k-means++: the next centre drawn with probability proportional to that distance
        weights = nearest / np.maximum(nearest.sum(1, keepdims=True), 1e-300)
        weights[nearest.sum(1) == 0] = 1.0 / m  # all points coincide with the centres: any point will do
        pick = (weights.cumsum(1) < rng.random((n, 1))).sum(1).clip(max=m - 1)
        centres[:, j] = points[rows, pick]
        nearest = np.minimum(nearest, ((points - centres[:, j:j + 1]) ** 2).sum(-1))
    for _ in range(iterations):
        labels = _assign(points, centres)
        onehot = labels[..., None] == np.arange(k)  # [N, M, k]
        counts = onehot.sum(1)  # [N, k]
        sums = np.einsum("nmk,nmc->nkc", onehot.astype(np.float64), points)
        moved = np.where(counts[..., None] > 0, sums / np.maximum(counts, 1)[..., None], centres)
        if np.allclose(moved, centres):
            break
        centres = moved
    return centres, _assign(points, centres)


def _assign(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return ((points[:, :, None] - centres[:, None]) ** 2).sum(-1).argmin(-1)


def representative_samples(final_points: np.ndarray, k: int, *, iterations: int = 20, seed: int = 0) -> np.ndarray:
    """Indices ``[N, k]`` of ``k`` distinct samples out of ``M`` per item, one per k-means cluster of
    ``final_points [N, M, C]`` (the member nearest its centre). A cluster left empty (repeated points)
    is filled with the unchosen samples farthest from their centres, so ``k`` distinct indices always
    come back; with ``k == M`` every sample is kept."""
    points = np.asarray(final_points, dtype=np.float64)
    centres, labels = kmeans(points, k, iterations=iterations, seed=seed)
    m = points.shape[1]
    gap = np.sqrt(((points - np.take_along_axis(centres, labels[..., None], axis=1)) ** 2).sum(-1))  # [N, M]
    member = labels[..., None] == np.arange(k)  # [N, M, k]
    keep = np.where(member, gap[..., None], np.inf).argmin(1)  # [N, k]: each cluster's member nearest its centre
    for i in np.flatnonzero(~member.any(1).all(1)):  # items with an empty cluster (coinciding samples)
        chosen = keep[i][member[i].any(0)].tolist()
        rest = np.setdiff1d(np.arange(m), chosen)
        keep[i] = chosen + rest[np.argsort(-gap[i, rest], kind="stable")][:k - len(chosen)].tolist()
    return keep
