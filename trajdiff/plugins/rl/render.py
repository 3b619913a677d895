"""Pictures of one planned episode: where the agent went and what it planned on the way.

`EpisodeRecord` keeps one episode's observed rows (the start included) and every plan made in it with
the step it was made at, so a drawing shows start, goal, the whole path and the plans of a few
replanning points of that same episode: each drawn plan starts where the agent was when it was made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trajdiff.errors import ConfigError
from trajdiff.plotting import pyplot, save_figure


@dataclass
class EpisodeRecord:
    """One episode: ``rows[s]`` is the encoder row observed before step ``s`` (``rows[0]`` the start) and
    ``plans`` the (step, planned rows ``[T, F]``) pairs of every plan made in it."""

    rows: list[np.ndarray] = field(default_factory=list)
    plans: list[tuple[int, np.ndarray]] = field(default_factory=list)
    frames: list[Any] = field(default_factory=list)

    def shown_plans(self, count: int = 4) -> list[tuple[int, np.ndarray]]:
        """``count`` plans evenly spaced over the episode (the first and the last included)."""
        if len(self.plans) <= count:
            return list(self.plans)
        picks = np.unique(np.round(np.linspace(0, len(self.plans) - 1, count)).astype(int))
        return [self.plans[i] for i in picks]


def render_episode(path: Path, record: EpisodeRecord, position_cols: list[int], goal_cols: list[int],
                   columns: list[str], maze: Any = None, plans: int = 4) -> list[int]:
    """Writes a GIF of the episode's frames, or a PNG of its path and a few of its plans: in the plane
    (over the maze's walls) when the observation holds positions, else the first observed columns
    against time. Returns the steps of the plans drawn."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        try:
            import imageio.v2 as imageio
        except ImportError:
            raise ConfigError("writing a GIF needs imageio: pip install 'trajdiff[rl]'") from None
        usable = [f for f in record.frames if f is not None]
        if not usable:
            raise ConfigError("the environment rendered no frames; render to a .png instead (or set MUJOCO_GL=egl)")
        imageio.mimsave(path, usable, duration=0.05)
        return []
    if suffix != ".png":
        raise ConfigError(f"cannot render to {path}: use a .gif or .png file name")
    plt = pyplot()
    trace = np.asarray(record.rows)
    shown = record.shown_plans(plans)
    colours = plt.get_cmap("viridis")(np.linspace(0.1, 0.9, max(len(shown), 1)))
    if position_cols:
        figure, ax = plt.subplots(figsize=(5, 5))
        if maze is not None:
            _walls(ax, plt, maze)
        ax.plot(trace[:, position_cols[0]], trace[:, position_cols[1]], color="black", lw=1.2, label="agent")
        for (step, plan), colour in zip(shown, colours, strict=False):
            ax.plot(plan[:, position_cols[0]], plan[:, position_cols[1]], color=colour, ls="--", lw=1.0,
                    label=f"plan at step {step}")
            ax.plot(plan[0, position_cols[0]], plan[0, position_cols[1]], "o", color=colour, markersize=4)
        ax.plot(trace[0, position_cols[0]], trace[0, position_cols[1]], "s", color="black", label="start")
        if goal_cols:
            goal = trace[0, goal_cols]
            ax.plot(goal[0], goal[1], marker="*", color="tab:red", markersize=14, ls="none", label="goal")
        ax.set_aspect("equal")
    else:
        shownc = [i for i, c in enumerate(columns) if not c.startswith(("action", "desired_goal"))][:3]
        figure, axes = plt.subplots(len(shownc), 1, figsize=(7, 2.2 * len(shownc)), sharex=True, squeeze=False)
        for ax, col in zip(axes[:, 0], shownc, strict=True):
            ax.plot(np.arange(len(trace)), trace[:, col], color="black", lw=1.2, label="agent")
            for (step, plan), colour in zip(shown, colours, strict=False):
                ax.plot(step + np.arange(len(plan)), plan[:, col], color=colour, ls="--", lw=1.0,
                        label=f"plan at step {step}")
            ax.set_ylabel(columns[col], fontsize=8)
        axes[-1, 0].set_xlabel("step")
        ax = axes[0, 0]
    ax.legend(loc="upper left", fontsize=7)
    save_figure(figure, path)
    return [step for step, _ in shown]


def _walls(ax: Any, plt: Any, maze: Any) -> None:
    scale = float(maze.maze_size_scaling)
    for r, row in enumerate(maze.maze_map):
        for c, cell in enumerate(row):
            if cell == 1:
                x, y = maze.cell_rowcol_to_xy(np.array([r, c]))
                ax.add_patch(plt.Rectangle((x - scale / 2, y - scale / 2), scale, scale, color="0.8"))
    ax.set_xlim(-maze.x_map_center, maze.x_map_center)
    ax.set_ylim(-maze.y_map_center, maze.y_map_center)
