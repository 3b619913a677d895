"""Choosing and parsing the columns of a time-series table: time stamps, values and series ids.

Why: the time column, the value columns and the id column are found by name when the user does not
say, and each is parsed with errors that name the file, line and column of the first bad cell and
say what to do. Empty value cells become NaN here (gaps that cleaning fills and reports); text or
infinities in a value column are errors, never silently dropped.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from trajdiff.errors import ConfigError, DataError
from trajdiff.plugins.timeseries.reading import Table

__all__ = [
    "ID_COLUMN_NAMES",
    "TIME_COLUMN_NAMES",
    "find_id_column",
    "find_time_column",
    "parse_times",
    "parse_values",
    "series_ids",
    "show_cell",
    "value_columns",
]

TIME_COLUMN_NAMES = ("date", "time", "timestamp", "datetime")
ID_COLUMN_NAMES = ("series", "series_id", "unique_id")


def find_time_column(table: Table, time_column: str | None) -> str:
    """``time_column`` if the table has it, else the one column named date/time/timestamp/datetime."""
    cols = [str(c) for c in table.frame.columns]
    if time_column is not None:
        if time_column not in table.frame.columns:
            raise DataError(
                f"{table.label}: time column {time_column!r} not found; the columns are {cols}. "
                "Pass time_column= one of them"
            )
        return time_column
    found = [c for c in table.frame.columns if str(c).strip().lower() in TIME_COLUMN_NAMES]
    if not found:
        raise DataError(
            f"{table.label}: no time column; looked for a column named {'/'.join(TIME_COLUMN_NAMES)} (any case) "
            f"among {cols}. Pass time_column='NAME'"
        )
    if len(found) > 1:
        raise DataError(
            f"{table.label}: several columns could be the time column: {found}; pass time_column='NAME'"
        )
    return found[0]


def find_id_column(table: Table, id_column: str | Literal[False] | None) -> str | None:
    """The column naming each row's series: ``id_column`` if given, else one named series/series_id/
    unique_id (any case) if there is one; ``False`` (or no such column) means a single series."""
    if id_column is None:
        id_column = next((c for c in table.frame.columns if str(c).strip().lower() in ID_COLUMN_NAMES), None)
    elif id_column is False:
        id_column = None
    if id_column is not None and id_column not in table.frame.columns:
        raise DataError(
            f"{table.label}: id column {id_column!r} not found; the columns are {list(table.frame.columns)}. "
            "Pass id_column=False for a single series, or the name of the column that identifies each series"
        )
    return id_column


def show_cell(value: Any) -> str:
    """A cell as an error message shows it."""
    return "an empty cell" if value is None or (isinstance(value, float) and np.isnan(value)) else repr(value)


def parse_times(table: Table, col: str) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps as datetime64[ns] (offsets converted to UTC, then naive) and a mask of bad rows."""
    raw = table.frame[col]
    if ptypes.is_datetime64_any_dtype(raw):
        parsed = raw.dt.tz_convert("UTC").dt.tz_localize(None) if getattr(raw.dt, "tz", None) else raw
    else:
        present = int(raw.notna().sum())
        if ptypes.is_numeric_dtype(raw) or (present and pd.to_numeric(raw, errors="coerce").notna().sum() == present):
            raise DataError(
                f"{table.label}: time column {col!r} holds numbers, not timestamps; convert it first, e.g. "
                f"df[{col!r}] = pd.to_datetime(df[{col!r}], unit='s'), and pass the DataFrame"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = pd.to_datetime(raw, errors="coerce", format="ISO8601", utc=True)
            if parsed.isna().sum() > raw.isna().sum():
                other = pd.to_datetime(raw, errors="coerce", utc=True)
                if other.isna().sum() < parsed.isna().sum():
                    parsed = other
        parsed = parsed.dt.tz_localize(None)
    try:  # pandas may parse in coarser units; converting checks the range (to_numpy would wrap around silently)
        stamps = parsed.dt.as_unit("ns").to_numpy(dtype="datetime64[ns]")
    except (pd.errors.OutOfBoundsDatetime, OverflowError, ValueError) as e:
        raise DataError(f"{table.label}: column {col!r} has timestamps outside 1677-2262 ({e})") from e
    return stamps, np.isnat(stamps)


def value_columns(table: Table, columns: list[str] | None, exclude: set[Any]) -> tuple[list[str], list[str]]:
    """(value columns, ignored text columns): ``columns`` checked, or every mostly-numeric column
    outside ``exclude`` (the time and id columns)."""
    frame = table.frame
    if columns is not None:
        if isinstance(columns, str):
            raise ConfigError(f"columns must be a list of names, got the string {columns!r}; use [{columns!r}]")
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataError(f"{table.label}: column(s) {missing} not found; the columns are "
                            f"{[str(c) for c in frame.columns]}")
        clash = [c for c in columns if c in exclude]
        if clash:
            raise ConfigError(f"columns {clash} are the time or id column; list only value columns")
        return list(columns), []
    chosen, ignored = [], []
    for c in frame.columns:
        if c in exclude:
            continue
        raw = frame[c]
        if ptypes.is_bool_dtype(raw) or ptypes.is_numeric_dtype(raw):
            chosen.append(str(c))
            continue
        if ptypes.is_datetime64_any_dtype(raw):
            ignored.append(str(c))
            continue
        present = raw.notna()
        numbers = pd.to_numeric(raw, errors="coerce").notna()
        if present.any() and numbers.sum() >= 0.5 * present.sum():
            chosen.append(str(c))  # mostly numbers: stray text in it is an error, not a reason to drop it
        else:
            ignored.append(str(c))
    if not chosen:
        raise DataError(
            f"{table.label}: no numeric value columns (ignored as text: {ignored}); pass columns=[...] naming "
            "the value columns"
        )
    return chosen, ignored


def parse_values(table: Table, cols: list[str], keep: np.ndarray) -> np.ndarray:
    """Values [rows kept, F] as float64 with NaN for empty cells; raises on text or infinities."""
    out = np.empty((int(keep.sum()), len(cols)), dtype=np.float64)
    where = table.where[keep]
    for j, c in enumerate(cols):
        raw = table.frame[c][keep]
        if ptypes.is_bool_dtype(raw) or ptypes.is_numeric_dtype(raw):
            num = raw.to_numpy(dtype=np.float64, na_value=np.nan)
            bad = np.isinf(num)
        else:
            num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            bad = (np.isnan(num) & raw.notna().to_numpy()) | np.isinf(num)
        if bad.any():
            i = int(np.argmax(bad))
            unit = table.unit
            raise DataError(
                f"{table.label}: column {c!r} has {int(bad.sum())} value(s) that are not finite numbers; the first "
                f"is {raw.iloc[i]!r} at {unit} {int(where[i])}. Fix or blank those cells (blank cells count as "
                "gaps and are filled), or leave the column out with columns=[...]"
            )
        out[:, j] = num
    return out


def series_ids(table: Table, id_column: str | None, keep: np.ndarray) -> np.ndarray:
    """The series id (as a string) of each kept row; all one series without an id column."""
    n = int(keep.sum())
    if id_column is None:
        return np.zeros(n, dtype=object)
    raw = table.frame[id_column][keep]
    missing = raw.isna().to_numpy()
    if missing.any():
        i = int(np.argmax(missing))
        raise DataError(
            f"{table.label}: id column {id_column!r} is empty at {table.unit} {int(table.where[keep][i])} "
            f"({int(missing.sum())} empty id cell(s)); fill in the series id of those rows"
        )
    return np.array([str(v) for v in raw.to_numpy()], dtype=object)
