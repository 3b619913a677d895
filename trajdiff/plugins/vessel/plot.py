"""Vessel forecasts on a map: history, sampled futures, their mean and (when known) the true future."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trajdiff.plotting import pyplot, save_figure

__all__ = ["plot_map"]


def plot_map(
    path: str | Path,
    histories: dict[str, np.ndarray],
    futures: dict[str, np.ndarray],
    truths: dict[str, np.ndarray] | None = None,
    max_entities: int = 6,
) -> Path:
    """One panel per vessel (up to ``max_entities``, those that moved most first), longitude against latitude
    at the true aspect ratio. ``histories`` entity -> ``[T, >=2]`` (lat, lon), ``futures`` -> ``[S, H, >=2]``."""
    plt = pyplot()

    def travelled(entity: str) -> float:  # the history's extent in degrees: moving vessels first
        hist = histories[entity]
        return float(np.ptp(hist[:, 0]) + np.ptp(hist[:, 1]))

    entities = sorted(futures, key=travelled, reverse=True)[:max_entities]
    cols = min(3, len(entities))
    rows = -(-len(entities) // cols)
    figure, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.0 * rows), squeeze=False)
    for ax in axes.flat[len(entities):]:
        ax.axis("off")
    for ax, entity in zip(axes.flat, entities, strict=False):
        hist, fut = histories[entity], futures[entity]
        for s in range(fut.shape[0]):
            ax.plot(np.r_[hist[-1, 1], fut[s, :, 1]], np.r_[hist[-1, 0], fut[s, :, 0]], color="tab:blue", alpha=0.25,
                    lw=0.7, label="samples" if s == 0 else None)
        mean = fut.mean(axis=0)
        ax.plot(np.r_[hist[-1, 1], mean[:, 1]], np.r_[hist[-1, 0], mean[:, 0]], color="tab:blue", lw=1.6,
                label="sample mean")
        ax.plot(hist[:, 1], hist[:, 0], color="black", lw=1.4, label="history")
        ax.plot(hist[-1, 1], hist[-1, 0], "o", color="black", ms=3)
        if truths is not None and entity in truths:
            truth = truths[entity]
            ax.plot(np.r_[hist[-1, 1], truth[:, 1]], np.r_[hist[-1, 0], truth[:, 0]], color="tab:red", ls="--",
                    lw=1.2, label="true future")
        ax.set_aspect(1.0 / np.cos(np.radians(float(hist[-1, 0]))), adjustable="datalim")
        ax.set_title(f"MMSI {entity}", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("longitude", fontsize=8)
        ax.set_ylabel("latitude", fontsize=8)
    axes.flat[0].legend(fontsize=7, loc="best")
    figure.tight_layout()
    return save_figure(figure, path)
