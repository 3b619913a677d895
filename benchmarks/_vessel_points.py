"""Point forecasts from samples, the nearest-neighbour baseline and the scores of `vessel.py`.

- ``medoid``: the sample whose mean distance (over the horizon) to the other samples is least;
- ``NearestNeighbour``: the future of the training window whose encoded history (the model's own frame: last
  position at the origin, turned to the course, constant-velocity residual, standardized) is nearest, decoded in
  the test window's frame; a forecast by analogy with the training tracks;
- ``scores``: ADE/FDE at 10, 20 and 30 minutes with standard errors over windows, and the FDE at 30 minutes
  relative to constant velocity with its (paired, delta-method) standard error.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trajdiff.core.data import Episodes
from trajdiff.plugins.vessel.geo import haversine_m
from trajdiff.plugins.vessel.metrics import M_PER_DEG

MARKS = (10, 20, 30)


def _metres(samples: np.ndarray) -> np.ndarray:
    """(lat, lon) samples ``[S, ..., 2]`` -> (east, north) metres ``[S, ..., 2]`` around their mean."""
    lat0, lon0 = samples[..., 0].mean(0), samples[..., 1].mean(0)
    return np.stack([(samples[..., 1] - lon0) * M_PER_DEG * np.cos(np.radians(lat0)),
                     (samples[..., 0] - lat0) * M_PER_DEG], -1)


def medoid(samples: np.ndarray) -> np.ndarray:
    """(lat, lon) samples ``[S, N, H, >=2]`` -> for each window the sample (``[N, H, 2]``) of least mean distance
    to the others over the horizon."""
    xy = _metres(np.asarray(samples, dtype=np.float64)[..., :2])
    best = np.concatenate([np.linalg.norm(part[:, None] - part[None], axis=-1).mean(-1).sum(1).argmin(0)
                           for part in np.array_split(xy, max(1, xy.shape[1] // 128), axis=1)])  # [N]
    return np.asarray(samples)[best, np.arange(xy.shape[1]), :, :2]


class NearestNeighbour:
    """The future of the nearest training window in the model's encoded frame (see the module docstring)."""

    def __init__(self, loaded: Any, train: Episodes, *, stride: int, max_windows: int = 60_000, seed: int = 0):
        from trajdiff import api

        d = loaded.defaults
        self.encoder, self.history, self.length = loaded.encoder, d.history, d.length
        x, _, _ = api.encode_windows(train, self.encoder, d.history, d.length, stride)
        if len(x) > max_windows:
            x = x[np.sort(np.random.default_rng(seed).choice(len(x), max_windows, replace=False))]
        self.tokens = self.history // self.encoder.rows_per_token
        self.keys = x[:, :self.tokens].reshape(len(x), -1).astype(np.float32)
        self.futures = x[:, self.tokens:]
        self.windows = len(x)

    def forecast(self, histories: np.ndarray) -> np.ndarray:
        """Observed rows ``[N, history, F]`` -> forecast (lat, lon) ``[N, H, 2]``."""
        encoded = [self.encoder.encode_history(h, self.length - self.history) for h in histories]
        queries = np.stack([t[:self.tokens].reshape(-1) for t, _ in encoded]).astype(np.float32)
        norms = (self.keys ** 2).sum(1)
        nearest = np.concatenate([(norms[None] - 2.0 * q @ self.keys.T).argmin(1)
                                  for q in np.array_split(queries, max(1, len(queries) // 256))])
        out = []
        for (tokens, frame), j in zip(encoded, nearest, strict=True):
            window = np.concatenate([tokens[:self.tokens], self.futures[j]])
            out.append(self.encoder.decode(window, frame)[self.history:, :2])
        return np.stack(out)


def distances(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Metres between point forecasts ``[N, H, >=2]`` and truth ``[N, H, >=2]``: ``[N, H]``."""
    return haversine_m(pred[..., 0], pred[..., 1], truth[..., 0], truth[..., 1])


def best_of(samples: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-window minADE (prefix up to each mark) and minFDE, as ``[N, H]`` arrays of the best sample's error: the
    ADE of mark m is row-wise mean over the first m steps of the sample best on those m steps."""
    d = haversine_m(samples[..., 0], samples[..., 1], truth[None, ..., 0], truth[None, ..., 1])  # [S, N, H]
    ade = np.stack([np.cumsum(d, -1)[..., m - 1] / m for m in range(1, d.shape[-1] + 1)], -1).min(0)
    return ade, d.min(0)


def scores(errors: np.ndarray, cv: np.ndarray, ade: np.ndarray | None = None) -> dict[str, float]:
    """ADE/FDE at each mark from per-window, per-step errors ``[N, H]`` (``ade``: per-window ADE at each step
    when it is not the running mean of ``errors``, as for the best of S), their standard errors, and the FDE at 30
    minutes relative to constant velocity's errors ``cv [N, H]`` on the same windows."""
    n = len(errors)
    running = np.cumsum(errors, -1) / np.arange(1, errors.shape[-1] + 1) if ade is None else ade
    out: dict[str, float] = {"windows": n}
    for m in MARKS:
        out[f"ade_{m}"] = float(running[:, m - 1].mean())
        out[f"fde_{m}"] = float(errors[:, m - 1].mean())
        out[f"fde_{m}_se"] = float(errors[:, m - 1].std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    a, b = errors[:, MARKS[-1] - 1], cv[:, MARKS[-1] - 1]
    ratio = a.mean() / b.mean()
    out["fde_30_vs_cv"] = float(ratio - 1.0)
    if n > 1:
        spread = np.var(a, ddof=1) + ratio ** 2 * np.var(b, ddof=1) - 2 * ratio * np.cov(a, b)[0, 1]
        out["fde_30_vs_cv_se"] = float(np.sqrt(max(spread, 0.0) / n) / b.mean())
    return out
