"""Reading time series from CSV, Parquet or a DataFrame into validated `Episodes`.

Why: real logs have unparsable stamps, stray text, duplicated or unsorted rows, gaps and uneven
sampling. Each problem either raises a `TrajdiffError` that names the file, line and column and
says what to do, or is repaired and counted in ``episodes.meta[i]["report"]`` (and announced with
one warning per file), so that nothing is dropped or changed silently.

This module runs the pipeline and announces what it repaired: :mod:`~trajdiff.plugins.timeseries.typed_reading`
reads a well-formed CSV or Parquet file a batch of rows at a time straight into typed arrays (bounded memory);
any other source, or a file that needs a repair or an error, goes the text path, where
:mod:`~trajdiff.plugins.timeseries.reading` reads it into a table that remembers each row's line and
:mod:`~trajdiff.plugins.timeseries.columns` finds and parses the time, value and id columns. Both give the same
series, which :mod:`~trajdiff.plugins.timeseries.cleaning` sorts, de-duplicates, fills and resamples. What was
read (rows, series, columns, time span) is one line in the log, which the command line prints.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from trajdiff.core.data import Episodes
from trajdiff.errors import ConfigError, DataError
from trajdiff.plugins.timeseries.cleaning import check_freq, clean_series
from trajdiff.plugins.timeseries.columns import (
    find_id_column,
    find_time_column,
    parse_times,
    parse_values,
    series_ids,
    show_cell,
    value_columns,
)
from trajdiff.plugins.timeseries.reading import Table, read_table
from trajdiff.plugins.timeseries.typed_reading import TypedSeries, read_typed

__all__ = ["load_series"]

logger = logging.getLogger(__name__)

FILLS = ("interpolate", "ffill", "none")
BAD_TIMES = ("raise", "skip")

Fill = Literal["interpolate", "ffill", "none"]


def load_series(
    source: str | Path | pd.DataFrame,
    *,
    time_column: str | None = None,
    columns: list[str] | None = None,
    id_column: str | Literal[False] | None = None,
    freq: str | None = None,
    fill: Fill = "interpolate",
    min_length: int = 1,
    bad_times: Literal["raise", "skip"] = "raise",
    split_columns: bool = False,
) -> Episodes:
    """Read one or several time series (one episode per ``id_column`` value) into Episodes.

    ``split_columns=True`` makes every column of every series its own univariate episode (entity
    ``"<series>:<column>"``, one feature named ``value``): channel-independent modelling, which
    generalizes better on small multivariate data sets such as ETTh1 (Nie et al., 2023).

    ``time_column`` defaults to the column named date/time/timestamp/datetime (any case);
    ``id_column`` to a column named series/series_id/unique_id if there is one (False: one series);
    ``columns`` to every numeric column other than the time and id columns (text columns are
    ignored and listed in the report). Rows are sorted by time, duplicated stamps keep the last
    row, gaps (empty cells, NA, NaN, null ...) are filled (``fill``: linear in time, forward fill,
    or "none" to raise) and marked in meta "missing" (a [T, F] mask). A series
    with uneven stamps needs ``freq`` (a pandas frequency such as "1h"): values are then
    interpolated linearly in time onto that grid. ``bad_times="skip"`` drops (and counts) rows whose
    stamp does not parse instead of raising. Each episode's meta holds "times" (datetime64[ns]),
    "entity", "source" and "report" (counts of everything skipped or repaired).
    """
    if fill not in FILLS:
        raise ConfigError(f"fill must be one of {FILLS}, got {fill!r}")
    if bad_times not in BAD_TIMES:
        raise ConfigError(f"bad_times must be one of {BAD_TIMES}, got {bad_times!r}")
    if isinstance(min_length, bool) or not isinstance(min_length, (int, np.integer)) or min_length < 1:
        raise ConfigError(f"min_length must be a positive integer, got {min_length!r}")
    offset = check_freq(freq)

    typed = read_typed(source, time_column, columns, id_column)
    if typed is not None:  # a well-formed file, read a batch of rows at a time into typed arrays
        table, id_column, value_cols, ignored = typed.table, typed.id_column, typed.value_columns, []
        groups = _typed_groups(typed)
        del typed
    else:
        table, id_column, value_cols, ignored, groups = _text_groups(source, time_column, columns, id_column,
                                                                    bad_times)

    sequences, names, metas = [], [], []
    for sid, rows, stamps, group_values, n_skipped in groups:
        entity = str(sid) if id_column else table.stem
        report: dict[str, Any] = {
            "rows_read": int(len(stamps)) + n_skipped,
            "bad_times_skipped": n_skipped,
            "id_column": id_column,
            "blank_lines_skipped": table.blank_lines,
            "columns_ignored": list(ignored),
        }
        seq, stamps, missing = clean_series(
            table, entity if id_column else None, rows, stamps, group_values, value_cols, offset, freq, fill, report,
        )
        del group_values
        if len(seq) < min_length:
            who = f"series {entity!r}" if id_column else "the series"
            raise DataError(
                f"{table.label}: {who} has {len(seq)} row(s) after cleaning"
                + (f" and resampling to freq={freq!r}" if freq else "")
                + f", fewer than the required min_length={min_length}; use a longer series or lower min_length"
            )
        report["rows"] = len(seq)
        sequences.append(seq)
        names.append(entity)
        metas.append({"times": stamps, "entity": entity, "source": table.source, "report": report,
                      "missing": missing})

    _announce(table.label, metas, ignored, table.blank_lines, list(value_cols))
    if split_columns:
        return _split_columns(sequences, list(value_cols), metas)
    return Episodes(sequences=sequences, columns=list(value_cols), ids=names, meta=metas)


Group = tuple[str, "np.ndarray | None", np.ndarray, np.ndarray, int]
"""A series before cleaning: its name, its rows of the table (None: all, in order), stamps, values [rows, F] and
the rows skipped for bad stamps."""


def _typed_groups(typed: TypedSeries) -> Iterator[Group]:
    """The series of a typed read in order of first appearance; a single series is passed on without a copy."""
    if typed.codes is None or len(typed.names) == 1:
        yield (typed.names[0] if typed.names else "", None, typed.times, typed.values, 0)
        return
    order = np.argsort(typed.codes, kind="stable")  # each series' rows in file order
    bounds = np.concatenate([[0], np.cumsum(np.bincount(typed.codes, minlength=len(typed.names)))])
    for k, name in enumerate(typed.names):
        rows = order[bounds[k]:bounds[k + 1]]
        yield name, rows, typed.times[rows], typed.values[rows], 0


def _text_groups(source: Any, time_column: str | None, columns: list[str] | None, id_column: Any,
                 bad_times: str) -> tuple[Table, str | None, list[str], list[str], Iterator[Group]]:
    """The series of a table read as text (any source), after the checks that name the file, row and column."""
    table = read_table(source)
    tcol = find_time_column(table, time_column)
    id_column = find_id_column(table, id_column)
    times, bad = parse_times(table, tcol)
    skipped = np.zeros(len(table.frame), dtype=bool)
    if bad.any():
        if bad_times == "raise":
            i = int(np.argmax(bad))
            raise DataError(
                f"{table.label}: column {tcol!r} has {int(bad.sum())} timestamp(s) that cannot be parsed; the "
                f"first is {show_cell(table.frame[tcol].iloc[i])} at {table.at(i)}. Fix them (timestamps must share "
                "one format, e.g. 2016-07-01 00:00:00), or pass bad_times='skip' to drop and count those rows"
            )
        skipped = bad

    value_cols, ignored = value_columns(table, columns, exclude={tcol, id_column})
    keep = ~skipped
    values = parse_values(table, value_cols, keep)

    ids = series_ids(table, id_column, keep)
    indices = pd.Series(np.arange(len(ids))).groupby(ids, sort=False).indices if len(ids) else {}
    groups = {k: indices[k] for k in pd.unique(ids)}  # series in order of first appearance
    if not groups:
        raise DataError(
            f"{table.label} holds no data rows"
            + (f" ({int(skipped.sum())} skipped for bad timestamps)" if skipped.any() else "")
            + "; check that the file is the one you meant"
        )
    skipped_per_id: dict[str, int] = {}
    if skipped.any():
        if id_column is None:
            skipped_per_id[""] = int(skipped.sum())
        else:
            skipped_per_id = table.frame[id_column][skipped].astype(str).value_counts().to_dict()
    kept_rows = np.flatnonzero(keep)

    def each() -> Iterator[Group]:
        for sid, pos in groups.items():
            rows = kept_rows[pos]
            yield sid, rows, times[rows], values[pos], int(skipped_per_id.get(str(sid) if id_column else "", 0))

    return table, id_column, value_cols, ignored, each()


def _split_columns(sequences: list[np.ndarray], columns: list[str], metas: list[dict[str, Any]]) -> Episodes:
    """One univariate episode per (series, column), in series order then column order."""
    out, ids, out_meta = [], [], []
    for values, meta in zip(sequences, metas, strict=True):
        for j, column in enumerate(columns):
            entity = f"{meta['entity']}:{column}"
            out.append(values[:, j:j + 1])
            ids.append(entity)
            out_meta.append({**meta, "entity": entity, "column": column, "missing": meta["missing"][:, j:j + 1]})
    return Episodes(sequences=out, columns=["value"], ids=ids, meta=out_meta)


def _announce(label: str, metas: list[dict[str, Any]], ignored: list[str], blank: int, columns: list[str]) -> None:
    """What was read as one line in the log (the command line prints it: rows, series, columns, time span), and one
    warning per file listing everything skipped or repaired (details in each report)."""
    reports = [m["report"] for m in metas]
    parts = []
    total = {k: sum(r[k] for r in reports) for k in ("bad_times_skipped", "rows_sorted", "duplicates_removed",
                                                     "rows_resampled", "rows_off_grid")}
    if total["bad_times_skipped"]:
        parts.append(f"{total['bad_times_skipped']} row(s) with unparsable timestamps skipped")
    if blank:
        parts.append(f"{blank} empty line(s) skipped")
    if total["rows_sorted"]:
        parts.append(f"{total['rows_sorted']} row(s) moved to sort by time")
    if total["duplicates_removed"]:
        parts.append(f"{total['duplicates_removed']} row(s) with a duplicated timestamp removed (kept the last)")
    filled: dict[str, int] = {}
    for r in reports:
        for c, n in r["cells_filled"].items():
            filled[c] = filled.get(c, 0) + n
    if any(filled.values()):
        detail = ", ".join(f"{c}: {n}" for c, n in filled.items() if n)
        parts.append(f"{sum(filled.values())} empty cell(s) filled by {reports[0]['fill']} ({detail})")
    if total["rows_resampled"] or total["rows_off_grid"]:
        parts.append(f"resampled to freq={reports[0]['freq']!r}: {total['rows_resampled']} row(s) interpolated, "
                     f"{total['rows_off_grid']} original row(s) off the grid")
    if ignored:
        parts.append(f"non-numeric column(s) ignored: {ignored}")
    rows = sum(r["rows"] for r in reports)
    first = min(m["times"][0] for m in metas if len(m["times"]))
    last = max(m["times"][-1] for m in metas if len(m["times"]))
    logger.info(f"{label}: read {sum(r['rows_read'] for r in reports)} row(s): {len(metas)} series of {rows} row(s), "
                f"columns {', '.join(columns)}, {pd.Timestamp(first)} to {pd.Timestamp(last)}")
    if parts:
        message = f"{label}: loaded {len(metas)} series, {rows} rows; " + "; ".join(parts) \
            + " (per-series counts in episodes.meta[i]['report'])"
        warnings.warn(message, UserWarning, stacklevel=3)
