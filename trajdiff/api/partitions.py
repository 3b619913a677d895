"""The partitions of a log larger than memory: the files of a folder or list, or one large file split by a column.

Why: a forecast needs all rows of an entity at once (its history ends where its rows end), but never two
entities together, so a log can be forecast one partition at a time if no entity spans two partitions. A
folder of Parquet (or CSV) partitions written by an entity key already is such a log. One large file is made
into one by hashing a column (the entity, or the scene for domains whose entities see each other) into
partition files, reading a chunk of rows at a time, so memory stays bounded by the chunk and the largest
partition; rows keep their order within each partition, so every entity's rows keep theirs.
"""

from __future__ import annotations

import csv
import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from trajdiff.errors import ConfigError, DataError

PARTITION_BYTES = 64 * 2**20
"""Input bytes per partition when a large file is split by a column (about this much of the file each)."""

CHUNK_ROWS = 200_000
"""Rows read at a time when a large file is split by a column."""


def list_partitions(data: Any) -> list[Path]:
    """The partition files of ``data``: a list of files, every file under a folder (sorted by path; names that
    start with ``.`` or ``_``, such as ``_SUCCESS``, left out), or one file."""
    if isinstance(data, (list, tuple)):
        if not data:
            raise ConfigError("got an empty list of data files; pass at least one file")
        paths = [Path(item) for item in data]
        missing = [str(path) for path in paths if not path.is_file()]
        if missing:
            raise DataError(f"{missing[0]}: file not found ({len(missing)} of the {len(paths)} data files are "
                            "missing); check the paths")
        return paths
    path = Path(data)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file()
                       and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts))
        if not files:
            raise DataError(f"{path} holds no data files; point --data at a folder of partitions (one file per "
                            "group of entities) or at a file")
        return files
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the path (relative paths start from the current directory)")
    return [path]


@contextmanager
def split_by_column(source: Path, column: str, scratch: Path) -> Iterator[list[Path]]:
    """Partition files of the CSV or Parquet file ``source``, its rows hashed by ``column`` into about one file per
    `PARTITION_BYTES` of input, in a temporary folder under ``scratch`` that is removed on exit. CSV cells are
    copied as read (text); Parquet keeps its column types."""
    if not source.is_file():
        raise DataError(f"{source}: file not found; --partition-by splits one CSV or Parquet file")
    name = source.name.lower()
    parquet = name.endswith((".parquet", ".pq"))
    if not parquet and not name.endswith((".csv", ".csv.gz")):
        raise DataError(f"{source}: --partition-by splits a .csv, .csv.gz or .parquet file; for other files write "
                        "one file per group of entities into a folder and pass the folder")
    count = max(1, math.ceil(source.stat().st_size / PARTITION_BYTES))
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".trajdiff-partitions-", dir=scratch) as folder:
        suffix = ".parquet" if parquet else ".csv"
        paths = [Path(folder) / f"part-{k:05d}{suffix}" for k in range(count)]
        (_split_parquet if parquet else _split_csv)(source, column, paths)
        yield [path for path in paths if path.exists()]


def _bucket(values: pd.Series, count: int) -> pd.Series:
    """The partition of each row: a fixed hash of the column's text (the same in every process and run)."""
    return pd.Series(pd.util.hash_pandas_object(values.astype(str), index=False).to_numpy() % count,
                     index=values.index)


def _check_column(columns: list[str], column: str, source: Path) -> None:
    if column not in columns:
        raise ConfigError(f"{source} has no column {column!r} to partition by; its columns: {columns[:20]}")


def _split_csv(source: Path, column: str, paths: list[Path]) -> None:
    sep = _separator(source)
    try:
        reader = pd.read_csv(source, dtype=str, sep=sep, chunksize=CHUNK_ROWS, keep_default_na=False,
                             na_filter=False, index_col=False)
        for chunk in reader:
            _check_column(list(chunk.columns), column, source)
            for k, rows in chunk.groupby(_bucket(chunk[column], len(paths)), sort=True):
                path = paths[int(k)]
                rows.to_csv(path, mode="a", header=not path.exists(), index=False, sep=sep)
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"{source}: cannot be read as CSV ({str(error).strip()}); fix that line, or split the file "
                        "into partitions yourself") from error
    except pd.errors.EmptyDataError as error:
        raise DataError(f"{source}: the file is empty; it needs a header line and data rows") from error


def _split_parquet(source: Path, column: str, paths: list[Path]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        reader = pq.ParquetFile(source)
    except Exception as error:  # pyarrow raises several types for corrupt files
        raise DataError(f"{source}: not a readable Parquet file ({error}); check or re-export the file") from error
    _check_column(reader.schema_arrow.names, column, source)
    writers: dict[int, Any] = {}
    try:
        for batch in reader.iter_batches(batch_size=CHUNK_ROWS):
            chunk = batch.to_pandas()
            for k, rows in chunk.groupby(_bucket(chunk[column], len(paths)), sort=True):
                table = pa.Table.from_pandas(rows, schema=reader.schema_arrow, preserve_index=False)
                if int(k) not in writers:
                    writers[int(k)] = pq.ParquetWriter(paths[int(k)], reader.schema_arrow)
                writers[int(k)].write_table(table)
    finally:
        for writer in writers.values():
            writer.close()


def _separator(path: Path) -> str:
    """The CSV separator, guessed from the header line (comma unless it holds only semicolons or tabs)."""
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", newline="") as handle:  # type: ignore[operator]
        header = handle.readline()
    try:
        return csv.Sniffer().sniff(header, delimiters=",;\t").delimiter
    except csv.Error:
        return ","
