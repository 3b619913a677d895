"""Where the data went: a grid of the positions a data set visited, to reject plans that leave it.

A planner trained offline knows the world only through its data. In a maze the data never enters a
wall, so a plan whose path runs through cells the data never visited is crossing something the model
failed to learn; executing it presses the agent against the wall. The grid records the visited cells
of the positions (``achieved_goal``) over every step of every episode, one neighbouring cell of
tolerance around them, and answers for any point whether it lies in that support. It is learned from
the data set alone (nothing is read from the environment), as the data's speed limits are.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import torch
from torch.nn import functional

from trajdiff.errors import ConfigError, DataError

CELLS = 64
"""Cells along the widest axis; the other axes use the same cell size."""
MAX_DIMS = 3


class VisitedGrid:
    """Occupancy of an axis-aligned grid of square cells over the visited positions."""

    def __init__(self, origin: np.ndarray, cell: float, visited: np.ndarray) -> None:
        if visited.ndim != len(origin) or cell <= 0:
            raise ConfigError(f"a visited grid needs one origin per axis and a positive cell size, got "
                              f"origin {list(origin)}, cell {cell}, grid of shape {visited.shape}")
        self.origin = np.asarray(origin, dtype=np.float64)
        self.cell = float(cell)
        self.visited = visited.astype(bool)
        self.allowed = _dilate(self.visited)
        self._field: torch.Tensor | None = None

    @classmethod
    def fit(cls, points: np.ndarray, cells: int = CELLS) -> VisitedGrid:
        """``points`` ``[N, D]`` (D <= 3) -> the grid of the cells they fall in."""
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or not 1 <= points.shape[1] <= MAX_DIMS or len(points) == 0:
            raise DataError(f"a visited grid needs points [N, 1..{MAX_DIMS}], got shape {points.shape}")
        points = points[np.isfinite(points).all(axis=1)]
        if len(points) == 0:
            raise DataError("no finite positions to build a visited grid from")
        low, high = points.min(axis=0), points.max(axis=0)
        cell = max(float((high - low).max()) / cells, 1e-6)
        origin = low - cell  # one empty cell of margin on every side
        shape = tuple(int(n) for n in np.floor((high - origin) / cell).astype(int) + 2)
        visited = np.zeros(shape, dtype=bool)
        visited[tuple(np.floor((points - origin) / cell).astype(int).T)] = True
        return cls(origin, cell, visited)

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Whether each point of ``points`` ``[..., D]`` lies in a visited cell or next to one."""
        points = np.asarray(points, dtype=np.float64)
        finite = np.isfinite(points).all(axis=-1)
        scaled = np.where(np.isfinite(points), (points - self.origin) / self.cell, -1.0)
        index = np.floor(np.clip(scaled, -1.0, np.asarray(self.visited.shape))).astype(int)
        inside = finite & np.all((index >= 0) & (index < np.asarray(self.visited.shape)), axis=-1)
        clipped = np.clip(index, 0, np.asarray(self.visited.shape) - 1)
        return inside & self.allowed[tuple(np.moveaxis(clipped, -1, 0))]

    def distance(self, points: torch.Tensor) -> torch.Tensor:
        """How far each point of ``points`` ``[..., D]`` lies from the support (0 inside it), in the
        points' units; piecewise linear between cell centres, so it has a gradient that leads back
        into the support (the planner's support guidance descends it)."""
        if self._field is None:
            self._field = torch.from_numpy(_distance_field(self.allowed) * self.cell).float()
        field = self._field.to(points.dtype)
        shape = torch.tensor(self.visited.shape, dtype=points.dtype)
        centre = (points - torch.from_numpy(self.origin).to(points.dtype)) / self.cell - 0.5
        normalized = 2.0 * centre / (shape - 1).clamp(min=1) - 1.0  # align_corners=True convention
        flat = normalized.reshape(-1, normalized.shape[-1])
        dims = flat.shape[-1]
        if dims == 1:  # sampled as a 1-pixel-high image
            volume, grid = field[None, None, None, :], torch.stack([flat[:, 0], torch.zeros_like(flat[:, 0])], -1)
            grid = grid[None, None]
        else:  # grid_sample reads its coordinates in reverse axis order (x indexes the last axis)
            volume = field[None, None]
            grid = flat.flip(-1).reshape((1,) * dims + flat.shape)
        sampled = functional.grid_sample(volume, grid, mode="bilinear", padding_mode="border", align_corners=True)
        outside = (normalized.abs() - 1.0).clamp(min=0.0).norm(dim=-1) * (shape.max() - 1) / 2 * self.cell
        return sampled.reshape(points.shape[:-1]) + outside

    @property
    def coverage(self) -> float:
        """Share of the grid's cells the data visited."""
        return float(self.visited.mean())

    def state_dict(self) -> dict[str, Any]:
        bits = base64.b64encode(np.packbits(self.visited.ravel()).tobytes()).decode("ascii")
        return {"origin": self.origin.tolist(), "cell": self.cell, "shape": list(self.visited.shape), "bits": bits}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> VisitedGrid:
        shape = tuple(int(n) for n in state["shape"])
        packed = np.frombuffer(base64.b64decode(state["bits"]), dtype=np.uint8)
        visited = np.unpackbits(packed)[: int(np.prod(shape))].reshape(shape).astype(bool)
        return cls(np.asarray(state["origin"]), float(state["cell"]), visited)


def _distance_field(allowed: np.ndarray) -> np.ndarray:
    """Cells to the nearest allowed cell (chessboard distance, grown one ring of cells at a time)."""
    field = np.where(allowed, 0.0, np.inf)
    reached, ring = allowed.copy(), 0
    while not reached.all():
        ring += 1
        grown = _dilate(reached)
        field[grown & ~reached] = ring
        if (grown == reached).all():
            break
        reached = grown
    return field


def _dilate(grid: np.ndarray) -> np.ndarray:
    """Each cell and its neighbours (diagonals included)."""
    out = grid.copy()
    padded = np.pad(grid, 1)
    for offset in np.ndindex(*(3,) * grid.ndim):
        out |= padded[tuple(slice(o, o + n) for o, n in zip(offset, grid.shape, strict=True))]
    return out
