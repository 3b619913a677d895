"""Reading AIS reports (NOAA MarineCadastre CSV, Parquet, tracktable ``.traj``, a DataFrame) into arrays.

Why: raw logs hold malformed rows (wrong field counts, unparsable stamps, MMSIs that are not
numbers, non-numeric positions). Each such row is skipped and listed with its line and reason, or
with ``bad_rows="raise"`` is an error naming the file, line and column, so that nothing is dropped
silently; every kept report remembers its line for later messages. Columns are found by their NOAA
names in any case. The tracktable text format is parsed in :mod:`trajdiff.plugins.vessel.traj`.

Files are read a chunk of rows at a time (Parquet a batch at a time, through pyarrow), and each chunk is
parsed into numbers before the next is read: memory follows the reports kept (about 36 bytes each), not the
text of the file. Vessels are numbered (``Rows.mmsi`` indexes ``Rows.names``), so no report holds a string.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trajdiff.errors import DataError
from trajdiff.plugins.vessel.traj import TrajReader

__all__ = ["CSV_COLUMNS", "OPTIONAL_COLUMNS", "Rows", "read_reports"]

CSV_COLUMNS = {"time": "BaseDateTime", "mmsi": "MMSI", "lat": "LAT", "lon": "LON"}
OPTIONAL_COLUMNS = {"sog": "SOG", "cog": "COG", "heading": "Heading"}
CHUNK = 200_000  # CSV rows (and Parquet rows) parsed at a time


@dataclass
class Rows:
    """Parsed reports of one file, with the line each came from, and what reading skipped. ``mmsi`` is each
    report's vessel as an index into ``names`` (the MMSIs as text); ``sog``, ``cog`` and ``heading`` are None
    where the source has no such column (all missing)."""

    label: str
    mmsi: np.ndarray
    names: list[str]
    time: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    sog: np.ndarray | None
    cog: np.ndarray | None
    heading: np.ndarray | None
    line: np.ndarray
    unit: str = "line"
    malformed: list[str] = field(default_factory=list)  # "line N: why" for every skipped row
    blank_lines: int = 0


def read_reports(source: str | Path | pd.DataFrame, bad_rows: str) -> Rows:
    """The well-formed reports of a file or DataFrame; ``bad_rows`` is "skip" (list them) or "raise"."""
    if isinstance(source, pd.DataFrame):
        return _collect([(source, np.arange(1, len(source) + 1))], list(source.columns), "DataFrame", "row",
                        lambda: ([], 0), bad_rows)
    if not isinstance(source, (str, Path)):
        raise DataError(f"the vessel domain reads a path (.csv or .traj) or a pandas DataFrame, got "
                        f"{type(source).__name__}")
    path = Path(source)
    label = str(source)
    if not path.is_file():
        raise DataError(f"{label}: file not found" + (" (it is a directory)" if path.is_dir() else "")
                        + "; check the path (relative paths start from the current directory)")
    name = path.name.lower()
    if name.endswith(".traj"):
        reader = TrajReader(path, label, bad_rows)
        return _collect(reader, list(CSV_COLUMNS.values()), label, "line", lambda: (reader.malformed, reader.blank),
                        bad_rows)
    if name.endswith((".csv", ".csv.gz")):
        csv_reader = _CsvReader(path, label, bad_rows)
        return _collect(csv_reader, csv_reader.columns, label, "line",
                        lambda: (csv_reader.malformed, csv_reader.blank), bad_rows)
    if name.endswith((".parquet", ".pq")):
        try:
            columns, chunks = _parquet(path)
        except Exception as e:  # pyarrow raises several types for corrupt files
            raise DataError(f"{label}: not a readable Parquet file ({e}); check or re-export the file") from e
        return _collect(chunks, columns, label, "row", lambda: ([], 0), bad_rows)
    raise DataError(f"{label}: unsupported file type; the vessel domain reads NOAA MarineCadastre .csv (or .csv.gz, "
                    ".parquet) and tracktable .traj files")


class _CsvReader:
    """A NOAA CSV a chunk of rows at a time; rows whose field count is not the header's are skipped and listed."""

    def __init__(self, path: Path, label: str, bad_rows: str) -> None:
        self.path, self.label, self.bad_rows = path, label, bad_rows
        self.malformed: list[str] = []
        self.blank = 0
        self.columns: list[str] = []
        self._handle = self._open()
        try:
            self._reader = csv.reader(self._handle)
            header = next(self._reader, None)
        except UnicodeDecodeError as e:
            self._handle.close()
            raise DataError(f"{label}: not UTF-8 text ({e}); re-export the log as UTF-8 CSV") from e
        except csv.Error as e:
            self._handle.close()
            raise DataError(f"{label}: cannot be read as CSV ({e}); fix the file or re-export it") from e
        if header is None:
            self._handle.close()
            raise DataError(f"{label}: the file is empty; it needs a header line (BaseDateTime,MMSI,LAT,LON,...) "
                            "and data rows")
        self.columns = [h.strip() for h in header]

    def _open(self) -> Any:
        if self.path.name.lower().endswith(".gz"):
            import gzip

            return gzip.open(self.path, "rt", newline="")
        return self.path.open(newline="", encoding="utf-8")

    def __iter__(self) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
        width = len(self.columns)
        records: list[list[str]] = []
        lines: list[int] = []
        chunks = 0
        with self._handle:
            try:
                for row in self._reader:
                    if not row or all(not cell.strip() for cell in row):
                        self.blank += 1
                        continue
                    if len(row) != width:
                        problem = f"line {self._reader.line_num}: {len(row)} fields, the header has {width}"
                        if self.bad_rows == "raise":
                            raise DataError(f"{self.label}: {problem}; fix that row, or pass bad_rows='skip' to skip "
                                            "and count malformed rows")
                        self.malformed.append(problem)
                        continue
                    records.append(row)
                    lines.append(self._reader.line_num)
                    if len(records) >= CHUNK:
                        chunks += 1
                        yield pd.DataFrame(records, columns=self.columns, dtype=str), np.asarray(lines, dtype=np.int64)
                        records, lines = [], []
            except UnicodeDecodeError as e:
                raise DataError(f"{self.label}: not UTF-8 text ({e}); re-export the log as UTF-8 CSV") from e
            except csv.Error as e:
                raise DataError(f"{self.label}: cannot be read as CSV ({e}); fix the file or re-export it") from e
        if records or not chunks:
            frame = pd.DataFrame(records, columns=self.columns, dtype=str) if records else \
                pd.DataFrame(columns=self.columns, dtype=str)
            yield frame, np.asarray(lines, dtype=np.int64)


def _parquet(path: Path) -> tuple[list[str], Iterable[tuple[pd.DataFrame, np.ndarray]]]:
    """The columns of a Parquet file and its rows a batch at a time (the whole file where pandas restores a stored
    index, as pandas reads it), with their 1-based row numbers."""
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    if any(isinstance(index, str) for index in (schema.pandas_metadata or {}).get("index_columns", [])):
        frame = pd.read_parquet(path)
        return list(frame.columns), [(frame, np.arange(1, len(frame) + 1))]
    columns = list(schema.names)
    wanted = [c for c in (_find(columns, name) for name in (*CSV_COLUMNS.values(), *OPTIONAL_COLUMNS.values()))
              if c is not None]

    def batches() -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
        first = 1
        try:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK, columns=wanted):
                yield batch.to_pandas(), np.arange(first, first + batch.num_rows)
                first += batch.num_rows
        except Exception as e:  # pyarrow raises several types for corrupt files
            raise DataError(f"{path}: not a readable Parquet file ({e}); check or re-export the file") from e

    return columns, batches()


def _find(columns: list[Any], wanted: str) -> Any:
    for column in columns:
        if str(column).strip().lower() == wanted.lower():
            return column
    return None


@dataclass
class _Parts:
    """Parsed chunks, joined at the end."""

    names: dict[str, int] = field(default_factory=dict)
    arrays: dict[str, list[np.ndarray]] = field(default_factory=dict)
    problems: list[tuple[int, str]] = field(default_factory=list)

    def add(self, key: str, values: np.ndarray) -> None:
        self.arrays.setdefault(key, []).append(values)

    def joined(self, key: str, dtype: Any) -> np.ndarray:
        parts = self.arrays.get(key, [])
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def _collect(chunks: Iterable[tuple[pd.DataFrame, np.ndarray]], columns: list[Any], label: str, unit: str,
             skipped: Any, bad_rows: str) -> Rows:
    """Checks the columns, parses every chunk, and joins the kept reports; ``skipped()`` gives the rows reading
    skipped and the blank lines (known once every chunk has been read)."""
    found = {key: _find(columns, name) for key, name in CSV_COLUMNS.items()}
    missing = [CSV_COLUMNS[k] for k, v in found.items() if v is None]
    if missing:
        raise DataError(
            f"{label}: missing column(s) {missing}; the columns are {[str(c) for c in columns]}. An AIS log "
            "needs BaseDateTime, MMSI, LAT and LON (NOAA MarineCadastre names, any case); rename the columns"
        )
    optional = {key: _find(columns, name) for key, name in OPTIONAL_COLUMNS.items()}
    parts = _Parts()
    for frame, where in chunks:
        _parse_chunk(frame, where, unit, found, optional, parts)
    malformed, blank = skipped()
    if parts.problems and bad_rows == "raise":
        parts.problems.sort()
        raise DataError(f"{label}: {len(parts.problems)} malformed row(s); the first: {parts.problems[0][1]}. Fix "
                        "those rows, or pass bad_rows='skip' to skip and count them")
    all_problems = sorted([(_line_of(m), m) for m in malformed] + parts.problems)
    optional_values = {key: parts.joined(key, np.float64) if optional[key] is not None else None for key in optional}
    return Rows(label, parts.joined("mmsi", np.int32), list(parts.names), parts.joined("time", "datetime64[ns]"),
                parts.joined("lat", np.float64), parts.joined("lon", np.float64), optional_values["sog"],
                optional_values["cog"], optional_values["heading"], parts.joined("line", np.int64), unit,
                [m for _, m in all_problems], blank)


def _parse_chunk(frame: pd.DataFrame, where: np.ndarray, unit: str, found: dict[str, Any],
                 optional: dict[str, Any], parts: _Parts) -> None:
    """Parses one chunk; its well-formed reports go into ``parts``, the others into ``parts.problems``."""
    n = len(frame)
    stamps = _stamps(frame[found["time"]])
    values: dict[str, np.ndarray] = {key: _numbers(frame[found[key]]) for key in ("lat", "lon")}
    mmsi, mmsi_ok = _vessels(frame[found["mmsi"]], parts.names)
    for key, column in optional.items():
        if column is not None:
            values[key] = _numbers(frame[column])
    checks = [
        (np.isnat(stamps), CSV_COLUMNS["time"], "an unparsable timestamp"),
        (~mmsi_ok, CSV_COLUMNS["mmsi"], "an MMSI that is not a positive integer"),
        (~np.isfinite(values["lat"]), CSV_COLUMNS["lat"], "a latitude that is not a number"),
        (~np.isfinite(values["lon"]), CSV_COLUMNS["lon"], "a longitude that is not a number"),
    ]
    bad = np.zeros(n, dtype=bool)
    for mask, column, what in checks:
        fresh = mask & ~bad
        for i in np.flatnonzero(fresh):
            cell = frame[found[_key(column)]].iloc[i]
            parts.problems.append((int(where[i]), f"{unit} {int(where[i])}: column {column!r} has {what} ({cell!r})"))
        bad |= mask
    keep = ~bad
    parts.add("mmsi", mmsi[keep])
    parts.add("time", stamps[keep])
    parts.add("line", np.asarray(where, dtype=np.int64)[keep])
    for key, column in values.items():
        parts.add(key, column[keep])


def _text(raw: pd.Series) -> Any:
    """A text column as a pyarrow array without nulls (None for other columns): what pyarrow may parse at once."""
    if not (pd.api.types.is_string_dtype(raw) and not pd.api.types.is_object_dtype(raw)):
        return None
    import pyarrow as pa

    text = pa.array(raw)
    return text if text.null_count == 0 and (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)) \
        else None


def _stamps(raw: pd.Series) -> np.ndarray:
    """Time stamps as datetime64[ns] (UTC, naive), NaT where a cell does not parse. ISO 8601 text without a zone
    is parsed by pyarrow (exactly as pandas would); anything else by pandas."""
    text = _text(raw)
    if text is not None:
        import pyarrow as pa

        try:
            return text.cast(pa.timestamp("ns")).cast(pa.int64()).to_numpy().view("datetime64[ns]")
        except (ValueError, TypeError):  # pyarrow's ArrowInvalid: a cell that needs pandas
            pass
    if pd.api.types.is_datetime64_any_dtype(raw):
        time = pd.to_datetime(raw, utc=True).dt.tz_localize(None)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            time = pd.to_datetime(raw.astype("string").str.strip(), errors="coerce", format="ISO8601", utc=True)
        time = time.dt.tz_localize(None)
    time = time.where((time >= pd.Timestamp.min) & (time <= pd.Timestamp.max))  # beyond 1677-2262: unparsable
    return time.dt.as_unit("ns").to_numpy(dtype="datetime64[ns]")  # (to_numpy alone would wrap those around)


def _numbers(raw: pd.Series) -> np.ndarray:
    """A column as float64, NaN where a cell is not a number. Text that pyarrow parses into finite numbers (the
    numbers pandas gives) is parsed by pyarrow; anything else by pandas."""
    text = _text(raw)
    if text is not None:
        import pyarrow as pa

        try:
            values = text.cast(pa.float64()).to_numpy()
            if np.isfinite(values).all():
                return values
        except (ValueError, TypeError):
            pass
    return pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _vessels(raw: pd.Series, names: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Each row's vessel number (new MMSIs get the next numbers) and whether its MMSI is a positive integer. The
    text of each distinct cell is parsed once; the MMSI is that number written as an integer."""
    codes, cells = pd.factorize(raw.astype("string").str.strip())  # missing cells: code -1
    number = pd.to_numeric(pd.Series(cells, dtype="string"), errors="coerce")
    valid = (number.notna() & (number == number.round()) & (number > 0)).to_numpy(dtype=bool, na_value=False)
    lookup = np.asarray([names.setdefault(str(int(v)), len(names)) if ok else -1
                         for v, ok in zip(number.to_numpy(dtype=np.float64, na_value=0), valid, strict=True)]
                        + [-1], dtype=np.int32)  # the last entry is for missing cells
    vessel = lookup[codes]
    return vessel, vessel >= 0


def _key(column: str) -> str:
    return next(k for k, v in CSV_COLUMNS.items() if v == column)


def _line_of(message: str) -> int:
    try:
        return int(message.split(":", 1)[0].split()[-1])
    except ValueError:
        return 0
