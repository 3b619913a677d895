"""Parsing tracktable text trajectories (``.traj``) into a table of AIS reports.

Why: tracktable stores one trajectory per line with a header announcing its point count and point
layout; a line whose header and body disagree is skipped and listed with its line number and reason
(or, with ``bad_rows="raise"``, is an error), never half-read. The result has the NOAA column names,
so :mod:`trajdiff.plugins.vessel.reading` checks and parses it like any CSV.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trajdiff.errors import DataError

__all__ = ["read_traj"]


COLUMNS = ("BaseDateTime", "MMSI", "LAT", "LON")
CHUNK = 200_000  # points held as Python strings at once, before they go into compact text arrays


def read_traj(path: Path, label: str, bad_rows: str) -> tuple[pd.DataFrame, np.ndarray, list[str], int]:
    """Tracktable text trajectories: one per line, ``*T*,uuid,domain,n_points,n_props,[props],*P*,domain,
    dimension,has_id,has_timestamp,n_point_props`` followed by n_points x (id, timestamp, lon, lat, props).

    Returns the points as text columns BaseDateTime, MMSI (the point id, else the trajectory's uuid),
    LAT and LON; the line of each point; the skipped lines ("line N: why"); and the blank lines.
    Points are gathered a chunk at a time into Arrow text arrays, so that memory follows the text, not
    four Python strings per point (about 250 bytes a point before)."""
    pending: dict[str, list[str]] = {name: [] for name in COLUMNS}
    parts: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    where: list[np.ndarray] = []
    lines: list[int] = []
    malformed: list[str] = []
    blank = 0

    def bad(line: int, why: str) -> None:
        problem = f"line {line}: {why}"
        if bad_rows == "raise":
            raise DataError(f"{label}: {problem}; fix that line, or pass bad_rows='skip' to skip and count it")
        malformed.append(problem)

    def flush() -> None:
        for name, values in pending.items():
            parts[name].append(pd.Series(pd.array(values, dtype=str)))
            pending[name] = []
        where.append(np.asarray(lines, dtype=np.int64))
        lines.clear()

    try:
        with path.open(encoding="utf-8") as handle:
            for number, text in enumerate(handle, start=1):
                fields = text.rstrip("\r\n").split(",")
                if not text.strip():
                    blank += 1
                    continue
                if fields[0] != "*T*" or "*P*" not in fields:
                    bad(number, "not a tracktable trajectory (expected '*T*,uuid,domain,n_points,...,*P*,...')")
                    continue
                p = fields.index("*P*")
                try:
                    n_points = int(fields[3])
                    dimension, has_id, has_time, n_props = (int(v) for v in fields[p + 2:p + 6])
                except (ValueError, IndexError):
                    bad(number, "the trajectory header has a non-integer point count or point layout")
                    continue
                if dimension != 2 or not has_time:
                    bad(number, f"points must be 2-D with time stamps (dimension {dimension}, timestamps {has_time})")
                    continue
                per = has_id + has_time + dimension + n_props
                body = fields[p + 6:]
                if len(body) != n_points * per:
                    bad(number, f"the header announces {n_points} points of {per} fields but the line holds "
                                f"{len(body)} fields")
                    continue
                pending["MMSI"].extend(body[0::per] if has_id else [fields[1]] * n_points)
                pending["BaseDateTime"].extend(body[has_id::per])
                pending["LON"].extend(body[has_id + 1::per])
                pending["LAT"].extend(body[has_id + 2::per])
                lines.extend([number] * n_points)
                if len(lines) >= CHUNK:
                    flush()
    except UnicodeDecodeError as e:
        raise DataError(f"{label}: not UTF-8 text ({e}); is it a tracktable text .traj file?") from e
    flush()
    frame = pd.DataFrame({name: pd.concat(parts[name], ignore_index=True) for name in COLUMNS})
    return frame, np.concatenate(where), malformed, blank
