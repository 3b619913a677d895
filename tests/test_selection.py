"""Choosing representative samples: k-means on end points covers the modes that independent samples miss."""

from __future__ import annotations

import numpy as np
import pytest

from trajdiff.core.selection import kmeans, representative_samples
from trajdiff.errors import ConfigError, ShapeError


def test_kmeans_recovers_well_separated_clusters() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = np.concatenate([c + 0.1 * rng.standard_normal((30, 2)) for c in centres])[None]  # [1, 90, 2]
    found, labels = kmeans(points, 3, seed=1)
    assert np.abs(np.sort(found[0], axis=0) - np.sort(centres, axis=0)).max() < 0.1
    for block in range(3):  # each true cluster is one label, and the three labels differ
        assert len(set(labels[0, 30 * block:30 * (block + 1)].tolist())) == 1
    assert len(set(labels[0].tolist())) == 3


def test_representatives_cover_a_rare_mode_that_the_first_samples_miss() -> None:
    """90 of 100 samples end near (0, 0), 10 near (5, 0): 4 of them must include the rare mode; the first 4
    (what plain sampling of 4 would give, in order) do not, so their best-of-4 error on the rare truth is large."""
    rng = np.random.default_rng(3)
    ends = np.concatenate([0.3 * rng.standard_normal((90, 2)), [5.0, 0.0] + 0.3 * rng.standard_normal((10, 2))])
    keep = representative_samples(ends[None], 4, seed=0)[0]
    assert len(set(keep.tolist())) == 4 and keep.max() < 100
    truth = np.array([5.0, 0.0])
    best_kept = np.linalg.norm(ends[keep] - truth, axis=-1).min()
    best_first = np.linalg.norm(ends[:4] - truth, axis=-1).min()
    assert best_kept < 1.0 < best_first


def test_indices_are_distinct_even_when_samples_coincide() -> None:
    rng = np.random.default_rng(1)
    points = rng.standard_normal((5, 40, 3))
    points[2] = 0.0  # all samples identical: clusters collapse, still 6 distinct indices
    keep = representative_samples(points, 6, seed=2)
    assert keep.shape == (5, 6)
    assert all(len(set(row.tolist())) == 6 for row in keep)
    every = representative_samples(points, 40)
    assert all(sorted(row.tolist()) == list(range(40)) for row in every)


def test_selection_errors() -> None:
    with pytest.raises(ConfigError, match="between 1 and the number of points"):
        representative_samples(np.zeros((1, 5, 2)), 6)
    with pytest.raises(ConfigError, match="between 1"):
        kmeans(np.zeros((1, 5, 2)), 0)
    with pytest.raises(ShapeError, match=r"\[N, M, C\]"):
        kmeans(np.zeros((5, 2)), 2)
