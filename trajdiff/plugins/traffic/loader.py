"""Reading multi-agent tracks ``(frame, agent_id, x, y)`` into one episode per agent track.

Why: tracking logs such as ETH/UCY have malformed lines, repeated (frame, agent) rows, frames off the
scene's frame grid, gaps inside a track and agents seen only once. Each problem either raises a
`TrajdiffError` that names the file, line and column and says what to do, or is repaired and counted
in ``episodes.meta[i]["report"]`` (one warning per file), so that nothing is dropped silently; what was read
(rows, agents, tracks, frames and the box the positions span) is one line in the log, which the command line
prints. Reading the files (and counting the rows that depart from the format) is
:mod:`~trajdiff.plugins.traffic.reading`.

Neighbours reach the model as extra columns of each agent's sequence: at every frame, the ``neighbours``
nearest other agents of the same file, as relative position, relative velocity and a presence flag
(zeros and flag 0 where fewer agents are present).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trajdiff.core.data import Episodes
from trajdiff.errors import ConfigError, DataError
from trajdiff.plugins.traffic.reading import SHOW, TRACK_SUFFIXES, FileReport, read_source, sources

__all__ = ["NEIGHBOUR_FIELDS", "TRACK_SUFFIXES", "FileReport", "load_tracks", "neighbour_columns"]

logger = logging.getLogger(__name__)

NEIGHBOUR_FIELDS = ("dx", "dy", "dvx", "dvy", "on")


def neighbour_columns(neighbours: int) -> list[str]:
    """Column names of the neighbour features: ``n1_dx, n1_dy, n1_dvx, n1_dvy, n1_on, n2_dx, ...``."""
    return [f"n{k + 1}_{name}" for k in range(neighbours) for name in NEIGHBOUR_FIELDS]


def load_tracks(
    source: str | Path | pd.DataFrame | Sequence[str | Path],
    *,
    neighbours: int = 4,
    frame_step: float | None = None,
    fps: float = 25.0,
) -> Episodes:
    """Reads tracks from a file, a folder of files, a list of files or a DataFrame into Episodes.

    Files are tab/space/comma separated text (``frame agent_id x y``, header optional; ETH/UCY's
    format) or CSV/Parquet with columns named frame, agent_id (or ped_id, id, ...), x, y. One episode
    per agent track (a track is split where frames are missing); columns ``x, y`` and the neighbour
    features of `neighbour_columns`. Meta: ``times`` (frame numbers), ``entity`` (``file:agent``),
    ``scene`` (file stem), ``agent``, ``frame_step``, ``dt`` (seconds per step = frame_step / fps) and
    ``report`` (a `FileReport` dict). ``frame_step`` defaults to the most common step between frames.
    """
    if isinstance(neighbours, bool) or not isinstance(neighbours, int) or neighbours < 0:
        raise ConfigError(f"neighbours must be an integer >= 0, got {neighbours!r}")
    if frame_step is not None and not frame_step > 0:
        raise ConfigError(f"frame_step must be > 0, got {frame_step!r}")
    if not fps > 0:
        raise ConfigError(f"fps must be > 0, got {fps!r}")
    tables = [read_source(item) for item in sources(source)]
    sequences: list[np.ndarray] = []
    ids: list[str] = []
    metas: list[dict[str, Any]] = []
    for label, stem, table, report in tables:
        seqs, tids, tmetas = _tracks(table, report, stem, neighbours, frame_step, fps)
        _announce(label, report)
        sequences += seqs
        ids += tids
        metas += tmetas
    if not sequences:
        raise DataError(f"{tables[0][0] if len(tables) == 1 else f'{len(tables)} files'}: no agent has two or more "
                        "rows on the frame grid, so there is no track to use; check the file's columns "
                        "(frame, agent_id, x, y) and its frame numbers")
    return Episodes(sequences, ["x", "y", *neighbour_columns(neighbours)], ids=ids, meta=metas)


# ------------------------------------------------------------------------------------------- tracks


def _agent_name(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _tracks(
    table: pd.DataFrame, report: FileReport, stem: str, neighbours: int, frame_step: float | None, fps: float,
) -> tuple[list[np.ndarray], list[str], list[dict[str, Any]]]:
    table = table.sort_values(["frame", "agent", "line"], kind="stable").reset_index(drop=True)
    dup = table.duplicated(["frame", "agent"], keep="first").to_numpy()
    if dup.any():
        report.duplicate_rows = int(dup.sum())
        report.duplicate_lines = sorted(table.loc[dup, "line"].tolist())[:SHOW]
        table = table[~dup].reset_index(drop=True)
    frames = np.unique(table["frame"].to_numpy())
    step = frame_step if frame_step is not None else _common_step(frames)
    report.frame_step = float(step)
    grid = (table["frame"].to_numpy() - frames[0]) / step
    off = np.abs(grid - np.round(grid)) > 1e-6
    if off.any():
        report.off_grid_rows = int(off.sum())
        report.off_grid_lines = sorted(table.loc[off, "line"].tolist())[:SHOW]
        table = table[~off].reset_index(drop=True)
        grid = grid[~off]
    table["tick"] = np.round(grid).astype(np.int64)
    table = table.sort_values(["agent", "tick"], kind="stable").reset_index(drop=True)
    # split each agent's rows where ticks jump by more than one step
    agent = table["agent"].to_numpy()
    tick = table["tick"].to_numpy()
    new_agent = np.r_[True, agent[1:] != agent[:-1]]
    gap = np.r_[False, (tick[1:] - tick[:-1] > 1) & ~new_agent[1:]]
    report.gaps_split = int(gap.sum())
    segment = np.cumsum(new_agent | gap) - 1
    counts = np.bincount(segment)
    single = counts[segment] < 2
    if single.any():
        report.single_row_tracks = int((counts < 2).sum())
        report.single_row_agents = [_agent_name(a) for a in table.loc[single, "agent"].to_numpy()[:SHOW]]
        table = table[~single].reset_index(drop=True)
        segment = segment[~single]
    if table.empty:
        return [], [], []
    xy = table[["x", "y"]].to_numpy()
    report.rows_kept, report.agents = len(table), int(table["agent"].nunique())
    report.frames = [float(table["frame"].min()), float(table["frame"].max())]
    report.bounds = [float(xy[:, 0].min()), float(xy[:, 0].max()), float(xy[:, 1].min()), float(xy[:, 1].max())]
    velocity = _velocities(xy, segment)
    features = _neighbour_features(table["tick"].to_numpy(), xy, velocity, segment, neighbours)
    values = np.concatenate([xy, features], axis=1)
    report.tracks = int(len(np.unique(segment)))
    report_dict = report.as_dict()
    starts = np.flatnonzero(np.r_[True, segment[1:] != segment[:-1]])
    ends = np.r_[starts[1:], len(segment)]
    per_agent: dict[str, int] = {}
    sequences, ids, metas = [], [], []
    for lo, hi in zip(starts, ends, strict=True):
        name = _agent_name(table["agent"].iat[lo])
        part = per_agent.get(name, 0)
        per_agent[name] = part + 1
        entity = f"{stem}:{name}" + (f"#{part}" if part else "")
        sequences.append(values[lo:hi])
        ids.append(entity)
        metas.append({
            "times": table["frame"].to_numpy()[lo:hi].copy(),
            "entity": entity,
            "scene": stem,
            "agent": name,
            "frame_step": float(step),
            "dt": float(step) / fps,
            "report": report_dict,
        })
    return sequences, ids, metas


def _common_step(frames: np.ndarray) -> float:
    """The most common positive difference between consecutive frame numbers (1 if only one frame)."""
    if len(frames) < 2:
        return 1.0
    diffs = np.round(np.diff(frames), 6)
    values, counts = np.unique(diffs[diffs > 0], return_counts=True)
    return float(values[np.argmax(counts)])


def _velocities(xy: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """Per-row displacement per frame step: backward difference, forward at a track's first row."""
    v = np.zeros_like(xy)
    same = segment[1:] == segment[:-1]
    back = np.where(same[:, None], xy[1:] - xy[:-1], 0.0)
    v[1:] = back
    first = np.flatnonzero(np.r_[True, ~same])
    has_next = first + 1 < len(xy)
    nxt = first[has_next]
    ok = segment[np.minimum(nxt + 1, len(xy) - 1)] == segment[nxt]
    v[nxt[ok]] = xy[nxt[ok] + 1] - xy[nxt[ok]]
    return v


def _neighbour_features(
    tick: np.ndarray, xy: np.ndarray, velocity: np.ndarray, segment: np.ndarray, neighbours: int,
) -> np.ndarray:
    """[N, 5 * neighbours]: the nearest other tracks present at the same tick, nearest first."""
    out = np.zeros((len(xy), len(NEIGHBOUR_FIELDS) * neighbours))
    if neighbours == 0:
        return out
    order = np.argsort(tick, kind="stable")
    bounds = np.flatnonzero(np.r_[True, tick[order][1:] != tick[order][:-1], True])
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        rows = order[lo:hi]
        if len(rows) < 2:
            continue
        rel = xy[rows][None, :, :] - xy[rows][:, None, :]  # [n, n, 2]: other - self
        dist = np.hypot(rel[..., 0], rel[..., 1])
        dist[segment[rows][:, None] == segment[rows][None, :]] = np.inf
        nearest = np.argsort(dist, axis=1)[:, :neighbours]
        for k in range(nearest.shape[1]):
            other = nearest[:, k]
            present = np.isfinite(dist[np.arange(len(rows)), other])
            base = len(NEIGHBOUR_FIELDS) * k
            out[rows, base:base + 2] = np.where(present[:, None], rel[np.arange(len(rows)), other], 0.0)
            dv = velocity[rows[other]] - velocity[rows]
            out[rows, base + 2:base + 4] = np.where(present[:, None], dv, 0.0)
            out[rows, base + 4] = present.astype(float)
    return out


def _announce(label: str, report: FileReport) -> None:
    """What was read, as one line in the log (the command line prints it), and one warning per file listing
    what was skipped or repaired."""
    logger.info(report.summary(label))
    problems = report.problems()
    if problems:
        warnings.warn(f"{label}: loaded {report.tracks} track(s) from {report.rows} row(s); " + "; ".join(problems)
                      + " (counts in episodes.meta[i]['report'])", UserWarning, stacklevel=4)
