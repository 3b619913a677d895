"""Reading a well-formed CSV or Parquet file straight into typed arrays, a batch of rows at a time (pyarrow).

Why: the text path (:mod:`~trajdiff.plugins.timeseries.reading`) holds every cell as a string and parses whole
columns at once, about 180 bytes a row of a 3-column CSV at its peak. Here the time column is parsed as
timestamps, the value columns as float64 and the id column as series numbers while the file streams
(``pyarrow.csv.open_csv``; Parquet a row group at a time), so the peak is about twice the arrays kept (24 bytes a
row of a 2-column series, plus 4 with an id column). Only the columns the series need are read.

The result is the text path's, bit for bit: both parse ISO 8601 stamps and decimal numbers exactly, and the same
cells count as empty (pandas' missing-value words). Anything the text path would repair, skip, report or refuse
(a stamp that is empty, out of range, has a zone offset or is not ISO 8601; a value that is text or infinite; a
blank line; a row with too many or too few fields; a quoted header; duplicated or empty column names; a column
without any value; other types or a stored pandas index in Parquet) makes `read_typed` return None, and the
text path reads the file as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trajdiff.errors import TrajdiffError
from trajdiff.plugins.timeseries.columns import find_id_column, find_time_column
from trajdiff.plugins.timeseries.reading import RowNumbers, Table, open_text, separator, suffix_of

__all__ = ["PANDAS_MISSING", "TypedSeries", "read_typed"]

PANDAS_MISSING = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
                  "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")
"""The cells pandas reads as missing by default (``pandas.read_csv``'s ``na_values``), so both paths agree."""

BLOCK_BYTES = 1 << 20  # CSV bytes parsed per batch
PARQUET_BATCH = 1 << 16  # Parquet rows converted per batch


class _Fallback(Exception):
    """The file needs the text path."""


@dataclass
class TypedSeries:
    """The parsed columns of a file: stamps, values (NaN where empty) and the series of each row."""

    table: Table  # where rows came from, for messages (its frame holds the header only)
    time_column: str
    id_column: str | None
    value_columns: list[str]
    times: np.ndarray  # [N] datetime64[ns], naive (UTC)
    values: np.ndarray  # [N, F] float64
    codes: np.ndarray | None  # [N] int32: each row's series (index into names); None without an id column
    names: list[str]  # the series, in order of first appearance


def read_typed(source: Any, time_column: str | None = None, columns: list[str] | None = None,
               id_column: str | bool | None = None) -> TypedSeries | None:
    """The file ``source`` parsed (see the module docstring), or None where the text path must read it."""
    if not isinstance(source, (str, Path)) or not Path(source).is_file():
        return None
    path = Path(source)
    suffix = suffix_of(path)
    if suffix not in (".csv", ".csv.gz", ".parquet", ".pq"):
        return None
    parquet = suffix in (".parquet", ".pq")
    try:
        names = _parquet_names(path) if parquet else _csv_names(path)
        table = Table(pd.DataFrame(columns=names), RowNumbers(1 if parquet else 2), "row" if parquet else "line",
                      str(source), str(path), path.name[: -len(suffix)] or path.name)
        tcol, idcol, value_cols = _roles(table, names, time_column, columns, id_column)
        needed = [tcol, *value_cols] + ([idcol] if idcol is not None else [])
        batches = _parquet_batches(path, needed) if parquet else _csv_batches(path, needed, tcol, value_cols, idcol)
        return _collect(table, tcol, idcol, value_cols, batches, parquet)
    except (_Fallback, TrajdiffError, ImportError, OSError, ValueError, TypeError, ArithmeticError,
            UnicodeDecodeError, KeyError):
        return None  # pyarrow's errors (ArrowInvalid, ArrowTypeError ...) are ValueErrors and TypeErrors


def _roles(table: Table, names: list[str], time_column: str | None, columns: Any,
           id_column: str | bool | None) -> tuple[str, str | None, list[str]]:
    """The time, id and value columns, as the text path would choose them (it reports every problem)."""
    if len(set(names)) != len(names) or not all(names):
        raise _Fallback  # pandas renames such columns
    tcol = find_time_column(table, time_column)
    idcol = find_id_column(table, id_column)  # type: ignore[arg-type]
    if columns is None:
        value_cols = [name for name in names if name not in (tcol, idcol)]
    elif isinstance(columns, (list, tuple)) and all(isinstance(c, str) for c in columns):
        value_cols = list(columns)
        if len(set(value_cols)) != len(value_cols) or not set(value_cols) <= set(names) \
                or {tcol, idcol} & set(value_cols):
            raise _Fallback
    else:
        raise _Fallback
    if not value_cols:
        raise _Fallback
    return tcol, idcol, value_cols


def _csv_names(path: Path) -> list[str]:
    """The header's names; a header with quotes, a byte order mark or no line end is left to the text path."""
    with open_text(path) as handle:
        line = handle.readline()
    if not line.endswith("\n") or '"' in line or line.startswith("\ufeff"):
        raise _Fallback
    return line.rstrip("\r\n").split(separator(path))


def _csv_batches(path: Path, needed: list[str], tcol: str, value_cols: list[str],
                 idcol: str | None) -> Iterator[Any]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    types = {tcol: pa.timestamp("ns"), **{c: pa.float64() for c in value_cols}}
    if idcol is not None:
        types[idcol] = pa.string()
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES),
        parse_options=pacsv.ParseOptions(delimiter=separator(path), newlines_in_values=False,
                                         ignore_empty_lines=False),
        convert_options=pacsv.ConvertOptions(column_types=types, include_columns=needed,
                                             null_values=list(PANDAS_MISSING), strings_can_be_null=True,
                                             quoted_strings_can_be_null=True))
    if reader.schema.names != needed:
        raise _Fallback
    yield from reader


def _parquet_names(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    pandas_meta = schema.pandas_metadata or {}
    if any(isinstance(index, str) for index in pandas_meta.get("index_columns", [])):
        raise _Fallback  # a stored index: pandas restores it (a DatetimeIndex becomes the time column)
    if any(c.get("name") != c.get("field_name") for c in pandas_meta.get("columns", [])):
        raise _Fallback  # column labels that are not the field names (numbers ...)
    return list(schema.names)


def _parquet_batches(path: Path, needed: list[str]) -> Iterator[Any]:
    import pyarrow.parquet as pq

    yield from pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH, columns=needed)


def _collect(table: Table, tcol: str, idcol: str | None, value_cols: list[str], batches: Iterator[Any],
             parquet: bool) -> TypedSeries:
    """Converts batch after batch into numpy parts, then joins them."""
    times, blocks, codes = [], [], []
    present = np.zeros(len(value_cols), dtype=np.int64)
    names: dict[str, int] = {}
    for batch in batches:
        times.append(_stamps(batch.column(tcol)))
        block = np.empty((batch.num_rows, len(value_cols)), dtype=np.float64)
        for j, name in enumerate(value_cols):
            block[:, j], present[j] = _numbers(batch.column(name), parquet)
        blocks.append(block)
        if idcol is not None:
            codes.append(_series(batch.column(idcol), names, check_lines=not parquet))
    if not blocks or not sum(len(b) for b in blocks) or not present.all():
        raise _Fallback  # no rows, or a column without any value (the text path ignores or refuses it)
    return TypedSeries(table, tcol, idcol, value_cols, np.concatenate(times), np.concatenate(blocks),
                       np.concatenate(codes) if idcol is not None else None, list(names))


def _stamps(column: Any) -> np.ndarray:
    """Stamps as datetime64[ns] (zone-aware ones in UTC, as the text path converts them)."""
    import pyarrow as pa

    if column.null_count:
        raise _Fallback
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = column.cast(pa.timestamp("ns"))
    elif not pa.types.is_timestamp(column.type):
        raise _Fallback
    ns = column.cast(pa.timestamp("ns", column.type.tz)).cast(pa.int64())  # checked: out of range raises
    return ns.to_numpy().view("datetime64[ns]")


def _numbers(column: Any, parquet: bool) -> tuple[np.ndarray, int]:
    """A value column as float64 with NaN where empty, and how many values it holds. A CSV cell that is NaN
    without being a missing-value word, and any infinity, is left to the text path (which refuses it)."""
    import pyarrow as pa

    kind = column.type
    if not (pa.types.is_floating(kind) or pa.types.is_integer(kind)):
        raise _Fallback
    values = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    nan = int(np.isnan(values).sum())
    if np.isinf(values).any() or (not parquet and nan != column.null_count):
        raise _Fallback
    return values, len(values) - nan


def _series(column: Any, names: dict[str, int], check_lines: bool) -> np.ndarray:
    """Each row's series number; new names get the next numbers, in order of appearance."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if column.null_count or not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise _Fallback
    encoded = pc.dictionary_encode(column)
    found = encoded.dictionary
    if check_lines and pc.any(pc.match_substring_regex(found, "[\r\n]")).as_py():
        raise _Fallback  # a quoted cell over several lines: the text path refuses it
    lookup = np.asarray([names.setdefault(name, len(names)) for name in found.to_pylist()], dtype=np.int32)
    return lookup[encoded.indices.to_numpy(zero_copy_only=False)]
