"""Reading a time-series source (CSV, Parquet or a DataFrame) into a raw table of strings and numbers.

Why: every later message should point at the line of the file a user can open, so the table keeps,
for each row, the 1-based line (CSV) or row (Parquet, DataFrame) it came from. CSV is read as text
(``dtype=str``) so that parsing and its errors happen in :mod:`trajdiff.plugins.timeseries.columns`,
not silently inside pandas; a row with more fields than the header is an error naming its line, so is a
quoted field that runs over line ends (it would swallow the rows between), and empty lines are dropped and counted.
"""

from __future__ import annotations

import csv
import gzip
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trajdiff.errors import ConfigError, DataError

__all__ = ["SUPPORTED_SUFFIXES", "RowNumbers", "Table", "open_text", "read_table", "separator", "suffix_of"]

SUPPORTED_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")


@dataclass
class Table:
    """A raw table plus where each row came from, for messages."""

    frame: pd.DataFrame
    where: Any  # 1-based line (CSV) or row (Parquet, DataFrame) number of each row: an array or `RowNumbers`
    unit: str  # "line" or "row"
    label: str  # the file as the user named it, or "DataFrame"
    source: str
    stem: str
    blank_lines: int = 0

    def at(self, i: int) -> str:
        """Where row ``i`` came from, e.g. "line 12"."""
        return f"{self.unit} {int(self.where[i])}"


class RowNumbers:
    """The 1-based line or row number of each row when rows follow each other from ``first`` on: computed when a
    message needs one instead of stored (8 bytes a row)."""

    def __init__(self, first: int) -> None:
        self.first = first

    def __getitem__(self, i: Any) -> Any:
        return np.asarray(i, dtype=np.int64) + self.first


def suffix_of(path: Path) -> str:
    name = path.name.lower()
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    return "".join(path.suffixes[-2:]) or "(none)"


def read_table(source: str | Path | pd.DataFrame) -> Table:
    """Read a CSV (text cells), Parquet file or DataFrame; a DatetimeIndex becomes a time column."""
    if isinstance(source, pd.DataFrame):
        frame = source
        if isinstance(frame.index, pd.DatetimeIndex):  # stamps in the index become the time column
            name = frame.index.name or "time"
            frame = frame.reset_index(drop=name in frame.columns, names=name)
        else:
            frame = frame.reset_index(drop=True)
        return Table(frame, np.arange(1, len(frame) + 1), "row", "DataFrame", "DataFrame", "series")
    if not isinstance(source, (str, Path)):
        raise DataError(
            f"load_series reads a path (CSV or Parquet) or a pandas DataFrame, got {type(source).__name__}"
        )
    path = Path(source)
    label = str(source)
    suffix = suffix_of(path)
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
        return Table(frame, np.arange(1, len(frame) + 1), "row", label, str(path), stem)
    sep = separator(path)
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
    spans = frame.apply(lambda column: column.str.contains("[\r\n]", regex=True, na=False)).to_numpy().any(axis=1)
    if spans.any():  # a quoted cell that runs over line ends would swallow the rows in between, uncounted
        raise DataError(f"{label}: a quoted field opened on line {int(np.argmax(spans)) + 2} runs over several lines "
                        "(a stray quote character?); fix the quotes on that line")
    where = np.arange(len(frame)) + 2  # line 1 is the header
    empty = frame.isna().all(axis=1).to_numpy()
    if empty.any():
        frame = frame.loc[~empty].reset_index(drop=True)
        where = where[~empty]
    return Table(frame, where, "line", label, str(path), stem, blank_lines=int(empty.sum()))


def open_text(path: Path) -> Any:
    return gzip.open(path, "rt", newline="") if path.name.lower().endswith(".gz") else path.open(newline="")


def separator(path: Path) -> str:
    """',' unless the header line uses ';' or tabs instead (common European and TSV exports)."""
    try:
        with open_text(path) as f:
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
    with open_text(path) as f:
        reader = csv.reader(f, delimiter=sep)
        width = len(next(reader, []))
        for row in reader:
            if len(row) > width:
                return reader.line_num
    return "?"
