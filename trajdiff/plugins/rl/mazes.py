"""PointMaze geometry and the expert that makes the D4RL-style data sets.

The expert follows the shortest path through the maze's free cells (breadth-first search on the
cell grid, which is exact for unit-cost moves between 4-neighbours) with a PD controller towards
the next cell centre, and towards the goal itself once it is in the goal's cell. This is the
waypoint controller that D4RL and Minari used to collect maze2d / pointmaze data (Fu et al., 2020).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

G, R = "g", "r"

# Maze layouts of gymnasium-robotics' PointMaze_{UMaze,Medium,Large}-v3 with the single fixed goal
# cell that the D4RL / Minari evaluation environments use (reset positions are any free cell).
EVAL_MAPS: dict[str, list[list[int | str]]] = {
    "umaze": [
        [1, 1, 1, 1, 1],
        [1, G, 0, 0, 1],
        [1, 1, 1, 0, 1],
        [1, 0, 0, 0, 1],
        [1, 1, 1, 1, 1],
    ],
    "medium": [
        [1, 1, 1, 1, 1, 1, 1, 1],
        [1, 0, 0, 1, 1, 0, 0, 1],
        [1, 0, 0, 1, 0, 0, 0, 1],
        [1, 1, 0, 0, 0, 1, 1, 1],
        [1, 0, 0, 1, 0, 0, 0, 1],
        [1, 0, 1, 0, 0, 1, 0, 1],
        [1, 0, 0, 0, 1, 0, G, 1],
        [1, 1, 1, 1, 1, 1, 1, 1],
    ],
    "large": [
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
        [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1],
        [1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1],
        [1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1],
        [1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1],
        [1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1],
        [1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1],
        [1, 0, 0, 1, 0, 0, 0, 1, 0, G, 0, 1],
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    ],
}

ENV_IDS = {"umaze": "PointMaze_UMaze-v3", "medium": "PointMaze_Medium-v3", "large": "PointMaze_Large-v3"}


@dataclass(frozen=True)
class MazeGrid:
    """A maze layout (1 = wall) with the cell <-> position conversion of gymnasium-robotics' Maze."""

    walls: np.ndarray  # [rows, cols] bool
    scaling: float = 1.0

    @classmethod
    def from_map(cls, maze_map: list[list[int | str]], scaling: float = 1.0) -> MazeGrid:
        return cls(np.array([[cell == 1 for cell in row] for row in maze_map], dtype=bool), scaling)

    @property
    def center(self) -> tuple[float, float]:
        rows, cols = self.walls.shape
        return cols / 2 * self.scaling, rows / 2 * self.scaling

    def cell_to_xy(self, cell: tuple[int, int]) -> np.ndarray:
        cx, cy = self.center
        return np.array([(cell[1] + 0.5) * self.scaling - cx, cy - (cell[0] + 0.5) * self.scaling])

    def xy_to_cell(self, xy: np.ndarray) -> tuple[int, int]:
        cx, cy = self.center
        row = int(np.floor((cy - xy[1]) / self.scaling))
        col = int(np.floor((xy[0] + cx) / self.scaling))
        rows, cols = self.walls.shape
        return min(max(row, 0), rows - 1), min(max(col, 0), cols - 1)

    def free_cells(self) -> list[tuple[int, int]]:
        return [(int(r), int(c)) for r, c in zip(*np.nonzero(~self.walls), strict=True)]

    def shortest_path(self, start: tuple[int, int], goal: tuple[int, int]) -> list[tuple[int, int]]:
        """Cells from ``start`` to ``goal`` inclusive (breadth-first search over free 4-neighbours)."""
        parents: dict[tuple[int, int], tuple[int, int] | None] = {start: None}
        queue = deque([start])
        while queue:
            cell = queue.popleft()
            if cell == goal:
                break
            r, c = cell
            for nxt in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                if nxt not in parents and 0 <= nxt[0] < self.walls.shape[0] and 0 <= nxt[1] < self.walls.shape[1] \
                        and not self.walls[nxt]:
                    parents[nxt] = cell
                    queue.append(nxt)
        if goal not in parents:
            return [start]
        path = [goal]
        while parents[path[-1]] is not None:
            path.append(parents[path[-1]])  # type: ignore[arg-type]
        return path[::-1]


class WaypointController:
    """PD control along the shortest cell path to the goal: ``a = kp (target - pos) - kd vel``, clipped."""

    def __init__(self, grid: MazeGrid, kp: float = 10.0, kd: float = 1.0) -> None:
        self.grid, self.kp, self.kd = grid, kp, kd

    def target(self, position: np.ndarray, goal: np.ndarray) -> np.ndarray:
        here, there = self.grid.xy_to_cell(position), self.grid.xy_to_cell(goal)
        path = self.grid.shortest_path(here, there)
        return goal if len(path) <= 1 else self.grid.cell_to_xy(path[1])

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        position, velocity = obs["observation"][:2], obs["observation"][2:4]
        target = self.target(position, obs["desired_goal"])
        return np.clip(self.kp * (target - position) - self.kd * velocity, -1.0, 1.0).astype(np.float32)
