"""Per-file speed normalisation and sample spread for `eth_ucy.py` (``--speed-ref``, ``--spread``).

Why: the ETH/UCY files walk at different speeds per 0.4 s step (mean step: biwi_eth 0.92 m, the zara files
0.3-0.4 m, the students files 0.22-0.29 m), and leave-one-scene-out asks a model trained on the others to forecast
eth's faster steps, which it has never seen. ``--speed-ref R`` rescales every file's lengths (positions,
neighbour offsets and velocities) by ``R / mean step`` before training and forecasting, and the forecasts back:
a training file's mean step over all its rows, a test file's over the observed 8 steps of its evaluation windows
only (never their futures).

``--spread a`` widens (a > 1) or narrows the 20 samples around their mean by ``a``: a sampler draws from the
model's distribution, while best-of-20 scores reward covering the outcomes; ``a`` is chosen on validation files.
"""

from __future__ import annotations

import numpy as np

from trajdiff.core.data import Episodes


def length_columns(columns: list[str]) -> np.ndarray:
    """Mask of the loader's columns that are lengths (all but the neighbours' presence flags)."""
    return np.array([not name.endswith("_on") for name in columns])


def mean_step(pieces: list[np.ndarray]) -> float:
    """Mean displacement per step over pieces of track ``[T, >= 2]`` (x, y first)."""
    steps = [np.hypot(*np.diff(p[:, :2], axis=0).T) for p in pieces if len(p) >= 2]
    return float(np.concatenate(steps).mean()) if steps else 0.0


def file_factors(episodes: Episodes, ref: float, pieces: dict[str, list[np.ndarray]] | None = None) -> dict[str, float]:
    """``ref / mean step`` per file (``meta["scene"]``), from ``pieces`` per file when given (a test file's
    observed histories) or else from every track of the file."""
    if pieces is None:
        pieces = {}
        for seq, meta in zip(episodes.sequences, episodes.meta, strict=True):
            pieces.setdefault(meta["scene"], []).append(seq)
    return {name: ref / step if (step := mean_step(p)) > 0 else 1.0 for name, p in pieces.items()}


def rescale(episodes: Episodes, factors: dict[str, float]) -> Episodes:
    """The episodes with every length column of file ``f`` multiplied by ``factors[f]``."""
    mask = length_columns(list(episodes.columns)).astype(float)
    sequences = [seq * (1.0 + (factors[meta["scene"]] - 1.0) * mask)
                 for seq, meta in zip(episodes.sequences, episodes.meta, strict=True)]
    return Episodes(sequences, list(episodes.columns), ids=list(episodes.ids), meta=list(episodes.meta))


def spread(pred: np.ndarray, factor: float) -> np.ndarray:
    """Samples ``[N, S, H, 2]`` moved ``factor`` times as far from their mean as they are."""
    mean = pred.mean(axis=1, keepdims=True)
    return mean + factor * (pred - mean)
