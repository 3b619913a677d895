"""Reading time series from CSV, Parquet or a DataFrame into validated `Episodes`.

Why: real logs have unparsable stamps, stray text, duplicated or unsorted rows, gaps and uneven
sampling. Each problem either raises a `TrajdiffError` that names the file, line and column and
says what to do, or is repaired and counted in ``episodes.meta[i]["report"]`` (and announced with
one warning per file), so that nothing is dropped or changed silently.
"""

from __future__ import annotations

import csv
import gzip
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from pandas.tseries.frequencies import to_offset
from pandas.tseries.offsets import Tick

from trajdiff.core.data import Episodes
from trajdiff.errors import ConfigError, DataError

__all__ = ["ID_COLUMN_NAMES", "SUPPORTED_SUFFIXES", "TIME_COLUMN_NAMES", "load_series"]

logger = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
TIME_COLUMN_NAMES = ("date", "time", "timestamp", "datetime")
ID_COLUMN_NAMES = ("series", "series_id", "unique_id")
FILLS = ("interpolate", "ffill", "none")
BAD_TIMES = ("raise", "skip")

Fill = Literal["interpolate", "ffill", "none"]


@dataclass
class _Table:
    """A raw table plus where each row came from, for messages."""

    frame: pd.DataFrame
    where: np.ndarray  # 1-based line (CSV) or row (Parquet, DataFrame) number of each row
    unit: str  # "line" or "row"
    label: str  # the file as the user named it, or "DataFrame"
    source: str
    stem: str
    blank_lines: int = 0

    def at(self, i: int) -> str:
        return f"{self.unit} {int(self.where[i])}"


# ------------------------------------------------------------------------------------------- public


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
    offset = _check_freq(freq)

    table = _read(source)
    tcol = _time_column(table, time_column)
    if id_column is None:
        id_column = next((c for c in table.frame.columns if str(c).strip().lower() in ID_COLUMN_NAMES), None)
    elif id_column is False:
        id_column = None
    if id_column is not None and id_column not in table.frame.columns:
        raise DataError(
            f"{table.label}: id column {id_column!r} not found; the columns are {list(table.frame.columns)}. "
            "Pass id_column=False for a single series, or the name of the column that identifies each series"
        )
    times, bad = _parse_times(table, tcol)
    skipped = np.zeros(len(table.frame), dtype=bool)
    if bad.any():
        if bad_times == "raise":
            i = int(np.argmax(bad))
            raise DataError(
                f"{table.label}: column {tcol!r} has {int(bad.sum())} timestamp(s) that cannot be parsed; the "
                f"first is {_show(table.frame[tcol].iloc[i])} at {table.at(i)}. Fix them (timestamps must share "
                "one format, e.g. 2016-07-01 00:00:00), or pass bad_times='skip' to drop and count those rows"
            )
        skipped = bad

    value_cols, ignored = _value_columns(table, columns, exclude={tcol, id_column})
    keep = ~skipped
    values = _parse_values(table, value_cols, keep)

    ids = _series_ids(table, id_column, keep)
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

    sequences, names, metas = [], [], []
    for sid, pos in groups.items():
        rows = kept_rows[pos]
        entity = str(sid) if id_column else table.stem
        n_skipped = int(skipped_per_id.get(str(sid) if id_column else "", 0))
        report: dict[str, Any] = {
            "rows_read": int(len(rows)) + n_skipped,
            "bad_times_skipped": n_skipped,
            "id_column": id_column,
            "blank_lines_skipped": table.blank_lines,
            "columns_ignored": list(ignored),
        }
        seq, stamps, missing = _clean_series(
            table, entity if id_column else None, rows, times[rows], values[pos], value_cols, offset, freq, fill,
            report,
        )
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

    _announce(table.label, metas, ignored, table.blank_lines)
    if split_columns:
        return _split_columns(sequences, list(value_cols), metas)
    return Episodes(sequences=sequences, columns=list(value_cols), ids=names, meta=metas)


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


# ------------------------------------------------------------------------------------------ reading


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    return "".join(path.suffixes[-2:]) or "(none)"


def _read(source: str | Path | pd.DataFrame) -> _Table:
    if isinstance(source, pd.DataFrame):
        frame = source
        if isinstance(frame.index, pd.DatetimeIndex):  # stamps in the index become the time column
            name = frame.index.name or "time"
            frame = frame.reset_index(drop=name in frame.columns, names=name)
        else:
            frame = frame.reset_index(drop=True)
        return _Table(frame, np.arange(1, len(frame) + 1), "row", "DataFrame", "DataFrame", "series")
    if not isinstance(source, (str, Path)):
        raise DataError(
            f"load_series reads a path (CSV or Parquet) or a pandas DataFrame, got {type(source).__name__}"
        )
    path = Path(source)
    label = str(source)
    suffix = _suffix(path)
    if suffix not in SUPPORTED_SUFFIXES:
        raise DataError(
            f"{label}: unsupported file type {suffix!r}; supported: {', '.join(SUPPORTED_SUFFIXES)}. "
            "Convert the file, or read it with pandas and pass the DataFrame"
        )
    if not path.is_file():
        raise DataError(f"{label}: file not found" + (" (it is a directory)" if path.is_dir() else "")
                        + "; check the path (relative paths start from the current directory)")
    stem = path.name[: -len(suffix)] or path.name
    if suffix in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(path)
        except ImportError as e:
            raise ConfigError(f"{label}: reading Parquet needs pyarrow; install it with `pip install pyarrow`") from e
        except Exception as e:  # pyarrow raises several types for corrupt files
            raise DataError(f"{label}: not a readable Parquet file ({e}); check or re-export the file") from e
        frame = frame.reset_index(drop=not isinstance(frame.index, pd.DatetimeIndex))
        return _Table(frame, np.arange(1, len(frame) + 1), "row", label, str(path), stem)
    sep = _separator(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)  # pandas would drop extra fields
            frame = pd.read_csv(path, dtype=str, skip_blank_lines=False, index_col=False, sep=sep)
    except pd.errors.EmptyDataError as e:
        raise DataError(f"{label}: the file is empty; it needs a header line and data rows") from e
    except pd.errors.ParserWarning as e:
        raise DataError(
            f"{label}: line {_long_line(path, sep)} has more fields than the header; fix that row (a stray "
            "separator?) or add the missing column name"
        ) from e
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError, OSError) as e:
        raise DataError(
            f"{label}: cannot be read as CSV ({str(e).strip()}); fix the file or re-export it as UTF-8 CSV"
        ) from e
    where = np.arange(len(frame)) + 2  # line 1 is the header
    empty = frame.isna().all(axis=1).to_numpy()
    if empty.any():
        frame = frame.loc[~empty].reset_index(drop=True)
        where = where[~empty]
    return _Table(frame, where, "line", label, str(path), stem, blank_lines=int(empty.sum()))


def _open_text(path: Path) -> Any:
    return gzip.open(path, "rt", newline="") if path.name.lower().endswith(".gz") else path.open(newline="")


def _separator(path: Path) -> str:
    """',' unless the header line uses ';' or tabs instead (common European and TSV exports)."""
    try:
        with _open_text(path) as f:
            header = f.readline()
    except (OSError, UnicodeDecodeError, EOFError):
        return ","  # let pandas report the problem
    if "," not in header:
        for sep in (";", "\t"):
            if sep in header:
                return sep
    return ","


def _long_line(path: Path, sep: str) -> int | str:
    """The first line with more fields than the header ("?" if it cannot be found)."""
    with _open_text(path) as f:
        reader = csv.reader(f, delimiter=sep)
        width = len(next(reader, []))
        for row in reader:
            if len(row) > width:
                return reader.line_num
    return "?"


def _time_column(table: _Table, time_column: str | None) -> str:
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


def _show(value: Any) -> str:
    return "an empty cell" if value is None or (isinstance(value, float) and np.isnan(value)) else repr(value)


def _parse_times(table: _Table, col: str) -> tuple[np.ndarray, np.ndarray]:
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
    try:
        stamps = parsed.to_numpy(dtype="datetime64[ns]")
    except (pd.errors.OutOfBoundsDatetime, OverflowError, ValueError) as e:
        raise DataError(f"{table.label}: column {col!r} has timestamps outside 1677-2262 ({e})") from e
    return stamps, np.isnat(stamps)


def _value_columns(table: _Table, columns: list[str] | None, exclude: set[Any]) -> tuple[list[str], list[str]]:
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


def _parse_values(table: _Table, cols: list[str], keep: np.ndarray) -> np.ndarray:
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


def _series_ids(table: _Table, id_column: str | None, keep: np.ndarray) -> np.ndarray:
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


# ----------------------------------------------------------------------------------------- cleaning


def _check_freq(freq: str | None) -> Any:
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


def _clean_series(
    table: _Table,
    sid: str | None,
    rows: np.ndarray,
    stamps: np.ndarray,
    values: np.ndarray,
    cols: list[str],
    offset: Any,
    freq: str | None,
    fill: str,
    report: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort, de-duplicate, fill and (if asked) resample one series; counts go into ``report``.

    Also returns which cells were missing (filled), on the output rows: imputation and anomaly
    scoring need to know what was observed."""
    who = f"series {sid!r}" if sid is not None else "the series"
    where = table.where[rows]
    order = np.argsort(stamps, kind="stable")
    report["rows_sorted"] = int((order != np.arange(len(order))).sum())
    stamps, values, where = stamps[order], values[order], where[order]
    dup = np.zeros(len(stamps), dtype=bool)
    dup[:-1] = stamps[:-1] == stamps[1:]  # equal stamps stay in file order: keep the last one
    report["duplicates_removed"] = int(dup.sum())
    stamps, values, where = stamps[~dup], values[~dup], where[~dup]

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


def _check_regular(stamps: np.ndarray, where: np.ndarray, table: _Table, who: str) -> None:
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


def _announce(label: str, metas: list[dict[str, Any]], ignored: list[str], blank: int) -> None:
    """One warning per file listing everything skipped or repaired (details in each report)."""
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
    summary = f"{label}: loaded {len(metas)} series, {sum(r['rows'] for r in reports)} rows"
    if parts:
        message = f"{summary}; " + "; ".join(parts) + " (per-series counts in episodes.meta[i]['report'])"
        logger.info(message)
        warnings.warn(message, UserWarning, stacklevel=3)
    else:
        logger.info(summary)
