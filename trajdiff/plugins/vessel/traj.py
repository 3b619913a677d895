"""Parsing tracktable text trajectories (``.traj``) into chunks of AIS reports.

Why: tracktable stores one trajectory per line with a header announcing its point count and point
layout; a line whose header and body disagree is skipped and listed with its line number and reason
(or, with ``bad_rows="raise"``, is an error), never half-read. The chunks have the NOAA column names,
so :mod:`trajdiff.plugins.vessel.reading` checks and parses them like any CSV, one chunk at a time: memory
follows the reports kept (as numbers), never the text of the whole file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from trajdiff.errors import DataError

__all__ = ["TrajReader"]


COLUMNS = ("BaseDateTime", "MMSI", "LAT", "LON")
CHUNK = 200_000  # points held as Python strings at once, before they are handed on as a chunk
TEXT = pd.array([], dtype=str).dtype  # pandas' text columns: "str" (kept in Arrow) from pandas 3 on, else object


def _text(values: list[str]) -> Any:
    """``pd.array(values, dtype=str)``, built through pyarrow where pandas keeps text in Arrow (5 times faster)."""
    if getattr(TEXT, "storage", None) == "pyarrow":
        return pa.array(values, type=pa.string()).to_pandas(types_mapper={pa.string(): TEXT}.get)
    return pd.array(values, dtype=str)


class TrajReader:
    """Tracktable text trajectories: one per line, ``*T*,uuid,domain,n_points,n_props,[props],*P*,domain,
    dimension,has_id,has_timestamp,n_point_props`` followed by n_points x (id, timestamp, lon, lat, props).

    Iterating yields chunks of about `CHUNK` points: a frame of text columns BaseDateTime, MMSI (the point id,
    else the trajectory's uuid), LAT and LON, and the line of each point. Once iterated, ``malformed`` holds
    the skipped lines ("line N: why") and ``blank`` the number of blank lines."""

    def __init__(self, path: Path, label: str, bad_rows: str) -> None:
        self.path, self.label, self.bad_rows = path, label, bad_rows
        self.malformed: list[str] = []
        self.blank = 0

    def _bad(self, line: int, why: str) -> None:
        problem = f"line {line}: {why}"
        if self.bad_rows == "raise":
            raise DataError(f"{self.label}: {problem}; fix that line, or pass bad_rows='skip' to skip and count it")
        self.malformed.append(problem)

    def __iter__(self) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
        pending: dict[str, list[str]] = {name: [] for name in COLUMNS}
        lines: list[int] = []

        def chunk() -> tuple[pd.DataFrame, np.ndarray]:
            frame = pd.DataFrame({name: _text(values) for name, values in pending.items()})
            where = np.asarray(lines, dtype=np.int64)
            for values in pending.values():
                values.clear()
            lines.clear()
            return frame, where

        chunks = 0
        try:
            with self.path.open(encoding="utf-8") as handle:
                for number, text in enumerate(handle, start=1):
                    if self._parse(number, text, pending, lines) and len(lines) >= CHUNK:
                        chunks += 1
                        yield chunk()
        except UnicodeDecodeError as e:
            raise DataError(f"{self.label}: not UTF-8 text ({e}); is it a tracktable text .traj file?") from e
        if lines or not chunks:
            yield chunk()

    def _parse(self, number: int, text: str, pending: dict[str, list[str]], lines: list[int]) -> bool:
        """Adds the points of one line to ``pending``; False for a blank or skipped line."""
        fields = text.rstrip("\r\n").split(",")
        if not text.strip():
            self.blank += 1
            return False
        if fields[0] != "*T*" or "*P*" not in fields:
            self._bad(number, "not a tracktable trajectory (expected '*T*,uuid,domain,n_points,...,*P*,...')")
            return False
        p = fields.index("*P*")
        try:
            n_points = int(fields[3])
            dimension, has_id, has_time, n_props = (int(v) for v in fields[p + 2:p + 6])
        except (ValueError, IndexError):
            self._bad(number, "the trajectory header has a non-integer point count or point layout")
            return False
        if dimension != 2 or not has_time:
            self._bad(number, f"points must be 2-D with time stamps (dimension {dimension}, timestamps {has_time})")
            return False
        per = has_id + has_time + dimension + n_props
        body = fields[p + 6:]
        if len(body) != n_points * per:
            self._bad(number, f"the header announces {n_points} points of {per} fields but the line holds "
                              f"{len(body)} fields")
            return False
        pending["MMSI"].extend(body[0::per] if has_id else [fields[1]] * n_points)
        pending["BaseDateTime"].extend(body[has_id::per])
        pending["LON"].extend(body[has_id + 1::per])
        pending["LAT"].extend(body[has_id + 2::per])
        lines.extend([number] * n_points)
        return True
