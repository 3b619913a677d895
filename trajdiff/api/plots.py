"""The generic forecast plot: history, a fan of samples, their median and the truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trajdiff.plotting import pyplot, save_figure


def plot_forecasts(
    histories: dict[str, np.ndarray],
    futures: dict[str, np.ndarray],
    columns: list[str],
    path: str | Path,
    truths: dict[str, np.ndarray] | None = None,
    max_entities: int = 4,
    max_columns: int = 4,
) -> Path:
    """History, sampled futures (fan of samples and their median) and, if known, the true future."""
    plt = pyplot()

    entities = list(futures)[:max_entities]
    cols = list(range(min(len(columns), max_columns)))
    figure, axes = plt.subplots(len(cols), len(entities), figsize=(4 * len(entities), 2.2 * len(cols)),
                                squeeze=False)
    for e, entity in enumerate(entities):
        hist, fut = histories[entity], futures[entity]
        h = np.arange(-len(hist) + 1, 1)
        f = np.arange(1, fut.shape[1] + 1)
        for c in cols:
            ax = axes[c, e]
            ax.plot(h, hist[:, c], color="black", lw=1.2, label="history")
            lo, hi = np.quantile(fut[..., c], [0.05, 0.95], axis=0)
            ax.fill_between(f, lo, hi, color="tab:blue", alpha=0.2, label="90% interval")
            for s in range(min(5, fut.shape[0])):
                ax.plot(f, fut[s, :, c], color="tab:blue", alpha=0.35, lw=0.7)
            ax.plot(f, np.median(fut[..., c], axis=0), color="tab:blue", lw=1.4, label="median")
            if truths is not None and entity in truths:
                ax.plot(f, truths[entity][:, c], color="black", ls="--", lw=1.0, label="truth")
            if e == 0:
                ax.set_ylabel(columns[c])
            if c == 0:
                ax.set_title(str(entity))
    axes[0, 0].legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    return save_figure(figure, path)
