"""Drawing track forecasts in the x-y plane."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trajdiff.plotting import pyplot, save_figure

__all__ = ["plot_tracks"]


def plot_tracks(
    path: str | Path,
    histories: dict[str, np.ndarray],
    futures: dict[str, np.ndarray],
    truths: dict[str, np.ndarray] | None = None,
    max_entities: int = 12,
    max_samples: int = 20,
) -> Path:
    """One x-y panel: each entity's history (solid), sampled futures (thin, its colour) and, when
    known, the true future (dashed black). ``histories[e]`` is ``[T, >=2]``, ``futures[e]`` ``[S, H, >=2]``."""
    plt = pyplot()

    figure, ax = plt.subplots(figsize=(7, 7))
    colours = plt.get_cmap("tab10")
    for n, entity in enumerate(list(futures)[:max_entities]):
        colour = colours(n % 10)
        hist, fut = np.asarray(histories[entity])[:, :2], np.asarray(futures[entity])[..., :2]
        ax.plot(hist[:, 0], hist[:, 1], color=colour, lw=2.0, marker=".", label=str(entity))
        for s in range(min(max_samples, fut.shape[0])):
            ax.plot(np.r_[hist[-1, 0], fut[s, :, 0]], np.r_[hist[-1, 1], fut[s, :, 1]], color=colour, lw=0.6,
                    alpha=0.35)
        if truths is not None and entity in truths:
            true = np.asarray(truths[entity])[:, :2]
            ax.plot(np.r_[hist[-1, 0], true[:, 0]], np.r_[hist[-1, 1], true[:, 1]], color="black", ls="--", lw=1.2)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title("history (thick), sampled futures (thin)" + (", truth (dashed)" if truths else ""))
    if len(futures) <= 12:
        ax.legend(fontsize=7, loc="best")
    figure.tight_layout()
    return save_figure(figure, path)
