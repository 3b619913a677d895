"""Cleaning one time series: sort, de-duplicate, fill gaps, check or impose a regular time grid.

Why: models assume one row per regular time step with no gaps. Each repair here is counted in the
series' report (rows sorted, duplicates removed, cells filled, rows resampled) and the filled cells
are returned as a mask, so imputation and anomaly scoring know what was observed; uneven stamps
without a ``freq`` are an error that suggests the median interval instead of a silent resample.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset
from pandas.tseries.offsets import Tick

from trajdiff.errors import ConfigError, DataError
from trajdiff.plugins.timeseries.reading import Table

__all__ = ["check_freq", "clean_series"]


def check_freq(freq: str | None) -> Any:
    """The pandas offset for ``freq`` (None for None); an unknown or non-positive one is a ConfigError."""
    if freq is None:
        return None
    try:
        offset = to_offset(freq)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"freq={freq!r} is not a pandas frequency; use e.g. '1h', '15min', '1D'") from e
    if isinstance(offset, Tick) and offset.nanos <= 0:
        raise ConfigError(f"freq={freq!r} must be a positive interval")
    return offset


def _freq_hint(step: np.timedelta64) -> str:
    text = to_offset(pd.Timedelta(step)).freqstr
    return "1" + text if text[:1].isalpha() else text


def clean_series(
    table: Table,
    sid: str | None,
    rows: np.ndarray | None,
    stamps: np.ndarray,
    values: np.ndarray,
    cols: list[str],
    offset: Any,
    freq: str | None,
    fill: str,
    report: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort, de-duplicate, fill and (if asked) resample one series; counts go into ``report``. ``rows``: the table
    row of each of its rows, for messages (None: the table's rows in order).

    Also returns which cells were missing (filled), on the output rows: imputation and anomaly
    scoring need to know what was observed."""
    who = f"series {sid!r}" if sid is not None else "the series"
    kept = rows  # the table row of each row kept, in output order (a series in order is not copied)
    report["rows_sorted"] = 0
    if len(stamps) > 1 and not (stamps[1:] >= stamps[:-1]).all():
        order = np.argsort(stamps, kind="stable")
        report["rows_sorted"] = int((order != np.arange(len(order))).sum())
        stamps, values, kept = stamps[order], values[order], order if rows is None else rows[order]
    dup = np.zeros(len(stamps), dtype=bool)
    dup[:-1] = stamps[:-1] == stamps[1:]  # equal stamps stay in file order: keep the last one
    report["duplicates_removed"] = int(dup.sum())
    if report["duplicates_removed"]:
        stamps, values = stamps[~dup], values[~dup]
        kept = np.flatnonzero(~dup) if kept is None else kept[~dup]
    del dup
    where = _Where(table, kept)

    nan = np.isnan(values)
    report["fill"] = fill
    report["cells_filled"] = {c: int(n) for c, n in zip(cols, nan.sum(axis=0), strict=True)}
    if nan.any():
        if fill == "none":
            cells = np.argwhere(nan)
            r, j = cells[np.lexsort((cells[:, 1], where[cells[:, 0]]))[0]]
            raise DataError(
                f"{table.label}: {who} has {int(nan.sum())} empty cell(s); the first is in column {cols[j]!r} at "
                f"{table.unit} {int(where[r])}. Pass fill='interpolate' or fill='ffill' to fill gaps, or fix the "
                "data"
            )
        values = _fill(values, nan, stamps, fill, cols, who, table.label)

    report["freq"] = freq
    report["resampled"] = False
    report["rows_resampled"] = 0
    report["rows_off_grid"] = 0
    if freq is None:
        _check_regular(stamps, where, table, who)
        return values, stamps, nan
    grid = _grid(stamps, offset)
    x = stamps.astype(np.int64).astype(np.float64)
    g = grid.astype(np.int64).astype(np.float64)
    values = np.stack([np.interp(g, x, values[:, j]) for j in range(values.shape[1])], axis=1) if len(grid) \
        else np.zeros((0, values.shape[1]))
    # A resampled cell counts as missing if it leans on a missing original cell.
    missing = np.stack([np.interp(g, x, nan[:, j].astype(np.float64)) > 0 for j in range(nan.shape[1])], axis=1) \
        if len(grid) else np.zeros((0, nan.shape[1]), dtype=bool)
    report["resampled"] = True
    report["rows_resampled"] = int((~np.isin(grid, stamps)).sum())
    report["rows_off_grid"] = int((~np.isin(stamps, grid)).sum())
    return values, grid, missing


class _Where:
    """The file line (or row) of each kept row, looked up when a message needs one (no array per row)."""

    def __init__(self, table: Table, rows: np.ndarray | None) -> None:
        self.table, self.rows = table, rows

    def __getitem__(self, i: Any) -> Any:
        return self.table.where[i if self.rows is None else self.rows[i]]


def _fill(values: np.ndarray, nan: np.ndarray, stamps: np.ndarray, fill: str, cols: list[str], who: str,
          label: str) -> np.ndarray:
    values = values.copy()
    t = stamps.astype(np.int64).astype(np.float64)
    for j in np.flatnonzero(nan.any(axis=0)):
        ok = ~nan[:, j]
        if not ok.any():
            raise DataError(
                f"{label}: column {cols[j]!r} of {who} has no values at all; leave it out with columns=[...]"
            )
        if fill == "interpolate":
            values[nan[:, j], j] = np.interp(t[nan[:, j]], t[ok], values[ok, j])  # ends take the nearest value
        else:
            idx = np.where(ok, np.arange(len(ok)), 0)
            np.maximum.accumulate(idx, out=idx)
            first = int(np.argmax(ok))
            idx[:first] = first  # leading gaps take the first observed value
            values[:, j] = values[idx, j]
    return values


def _check_regular(stamps: np.ndarray, where: _Where, table: Table, who: str) -> None:
    if len(stamps) < 3:
        return
    steps = np.diff(stamps)
    if (steps == steps[0]).all():
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if pd.infer_freq(pd.DatetimeIndex(stamps)) is not None:
                return  # a calendar frequency such as month starts: regular, though intervals differ
        except (TypeError, ValueError):
            pass
    k = int(np.argmax(steps != steps[0]))
    median = np.median(steps.astype(np.int64)).astype(np.int64).astype("timedelta64[ns]")
    raise DataError(
        f"{table.label}: {who} has irregular timestamps: intervals range from {pd.Timedelta(steps.min())} to "
        f"{pd.Timedelta(steps.max())} (the interval first changes at {table.unit} {int(where[k + 1])}). "
        f"Pass freq='{_freq_hint(median)}' (the median interval) to resample it onto a regular grid"
    )


def _grid(stamps: np.ndarray, offset: Any) -> np.ndarray:
    first, last = pd.Timestamp(stamps[0]), pd.Timestamp(stamps[-1])
    if isinstance(offset, Tick):
        first = first.ceil(offset)
    return pd.date_range(first, last, freq=offset).to_numpy(dtype="datetime64[ns]")
