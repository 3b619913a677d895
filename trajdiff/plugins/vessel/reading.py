"""Reading AIS reports (NOAA MarineCadastre CSV, Parquet, tracktable ``.traj``, a DataFrame) into arrays.

Why: raw logs hold malformed rows (wrong field counts, unparsable stamps, MMSIs that are not
numbers, non-numeric positions). Each such row is skipped and listed with its line and reason, or
with ``bad_rows="raise"`` is an error naming the file, line and column, so that nothing is dropped
silently; every kept report remembers its line for later messages. Columns are found by their NOAA
names in any case. The tracktable text format is parsed in :mod:`trajdiff.plugins.vessel.traj`.
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from trajdiff.errors import DataError
from trajdiff.plugins.vessel.traj import read_traj

__all__ = ["CSV_COLUMNS", "OPTIONAL_COLUMNS", "Rows", "read_reports"]

CSV_COLUMNS = {"time": "BaseDateTime", "mmsi": "MMSI", "lat": "LAT", "lon": "LON"}
OPTIONAL_COLUMNS = {"sog": "SOG", "cog": "COG", "heading": "Heading"}


@dataclass
class Rows:
    """Parsed reports of one file, with the line each came from, and what reading skipped."""

    label: str
    mmsi: np.ndarray
    time: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    sog: np.ndarray
    cog: np.ndarray
    heading: np.ndarray
    line: np.ndarray
    unit: str = "line"
    malformed: list[str] = field(default_factory=list)  # "line N: why" for every skipped row
    blank_lines: int = 0


def read_reports(source: str | Path | pd.DataFrame, bad_rows: str) -> Rows:
    """The well-formed reports of a file or DataFrame; ``bad_rows`` is "skip" (list them) or "raise"."""
    if isinstance(source, pd.DataFrame):
        return _from_frame(source, "DataFrame", np.arange(1, len(source) + 1), "row", [], 0, bad_rows)
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
        frame, lines, malformed, blank = read_traj(path, label, bad_rows)
        return _from_frame(frame, label, lines, "line", malformed, blank, bad_rows)
    if name.endswith((".csv", ".csv.gz")):
        return _read_csv(path, label, bad_rows)
    if name.endswith((".parquet", ".pq")):
        try:
            frame = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises several types for corrupt files
            raise DataError(f"{label}: not a readable Parquet file ({e}); check or re-export the file") from e
        return _from_frame(frame, label, np.arange(1, len(frame) + 1), "row", [], 0, bad_rows)
    raise DataError(f"{label}: unsupported file type; the vessel domain reads NOAA MarineCadastre .csv (or .csv.gz, "
                    ".parquet) and tracktable .traj files")


def _read_csv(path: Path, label: str, bad_rows: str) -> Rows:
    opener = (lambda: __import__("gzip").open(path, "rt", newline="")) if path.name.lower().endswith(".gz") \
        else (lambda: path.open(newline="", encoding="utf-8"))
    records: list[list[str]] = []
    lines: list[int] = []
    malformed: list[str] = []
    blank = 0
    try:
        with opener() as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{label}: the file is empty; it needs a header line (BaseDateTime,MMSI,LAT,LON,...) "
                                "and data rows")
            width = len(header)
            for row in reader:
                if not row or all(not cell.strip() for cell in row):
                    blank += 1
                    continue
                if len(row) != width:
                    problem = f"line {reader.line_num}: {len(row)} fields, the header has {width}"
                    if bad_rows == "raise":
                        raise DataError(f"{label}: {problem}; fix that row, or pass bad_rows='skip' to skip and count "
                                        "malformed rows")
                    malformed.append(problem)
                    continue
                records.append(row)
                lines.append(reader.line_num)
    except UnicodeDecodeError as e:
        raise DataError(f"{label}: not UTF-8 text ({e}); re-export the log as UTF-8 CSV") from e
    except csv.Error as e:
        raise DataError(f"{label}: cannot be read as CSV ({e}); fix the file or re-export it") from e
    frame = pd.DataFrame(records, columns=[h.strip() for h in header], dtype=str) if records else \
        pd.DataFrame(columns=[h.strip() for h in header], dtype=str)
    return _from_frame(frame, label, np.asarray(lines, dtype=np.int64), "line", malformed, blank, bad_rows)


def _find(frame: pd.DataFrame, wanted: str) -> str | None:
    for column in frame.columns:
        if str(column).strip().lower() == wanted.lower():
            return column
    return None


def _from_frame(frame: pd.DataFrame, label: str, where: np.ndarray, unit: str, malformed: list[str], blank: int,
                bad_rows: str) -> Rows:
    found = {key: _find(frame, name) for key, name in CSV_COLUMNS.items()}
    missing = [CSV_COLUMNS[k] for k, v in found.items() if v is None]
    if missing:
        raise DataError(
            f"{label}: missing column(s) {missing}; the columns are {[str(c) for c in frame.columns]}. An AIS log "
            "needs BaseDateTime, MMSI, LAT and LON (NOAA MarineCadastre names, any case); rename the columns"
        )
    n = len(frame)
    raw_time = frame[found["time"]]
    if pd.api.types.is_datetime64_any_dtype(raw_time):
        time = pd.to_datetime(raw_time, utc=True).dt.tz_localize(None)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            time = pd.to_datetime(raw_time.astype("string").str.strip(), errors="coerce", format="ISO8601", utc=True)
        time = time.dt.tz_localize(None)
    stamps = time.to_numpy(dtype="datetime64[ns]")
    values: dict[str, np.ndarray] = {}
    for key in ("lat", "lon"):
        values[key] = pd.to_numeric(frame[found[key]], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    mmsi_raw = frame[found["mmsi"]].astype("string").str.strip()
    mmsi_num = pd.to_numeric(mmsi_raw, errors="coerce")
    mmsi_ok = (mmsi_num.notna() & (mmsi_num == mmsi_num.round()) & (mmsi_num > 0)).to_numpy(dtype=bool, na_value=False)
    mmsi = np.array([str(int(v)) if ok else "" for v, ok in zip(mmsi_num.to_numpy(dtype=np.float64, na_value=0),
                                                                   mmsi_ok, strict=True)], dtype=object)
    for key, name in OPTIONAL_COLUMNS.items():
        column = _find(frame, name)
        values[key] = (pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
                       if column is not None else np.full(n, np.nan))
    checks = [
        (np.isnat(stamps), CSV_COLUMNS["time"], "an unparsable timestamp"),
        (~mmsi_ok, CSV_COLUMNS["mmsi"], "an MMSI that is not a positive integer"),
        (~np.isfinite(values["lat"]), CSV_COLUMNS["lat"], "a latitude that is not a number"),
        (~np.isfinite(values["lon"]), CSV_COLUMNS["lon"], "a longitude that is not a number"),
    ]
    bad = np.zeros(n, dtype=bool)
    problems: list[tuple[int, str]] = []
    for mask, column, what in checks:
        fresh = mask & ~bad
        for i in np.flatnonzero(fresh):
            cell = frame[found[_key(column)]].iloc[i]
            problems.append((int(where[i]), f"{unit} {int(where[i])}: column {column!r} has {what} ({cell!r})"))
        bad |= mask
    if problems and bad_rows == "raise":
        problems.sort()
        raise DataError(f"{label}: {len(problems)} malformed row(s); the first: {problems[0][1]}. Fix those rows, or "
                        "pass bad_rows='skip' to skip and count them")
    all_problems = sorted([(_line_of(m), m) for m in malformed] + problems)
    keep = ~bad
    return Rows(label, mmsi[keep], stamps[keep], values["lat"][keep], values["lon"][keep], values["sog"][keep],
                 values["cog"][keep], values["heading"][keep], where[keep], unit, [m for _, m in all_problems], blank)


def _key(column: str) -> str:
    return next(k for k, v in CSV_COLUMNS.items() if v == column)


def _line_of(message: str) -> int:
    try:
        return int(message.split(":", 1)[0].split()[-1])
    except ValueError:
        return 0
