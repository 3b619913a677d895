"""Reading AIS logs (NOAA MarineCadastre CSV, tracktable ``.traj``, DataFrames) into cleaned tracks.

Why: raw AIS is full of sentinel values, impossible positions, repeated and out-of-order reports
and GPS jumps. Each problem is either an error that names the file, line and column and says what
to do, or a repair that is counted: per vessel in ``episodes.meta[i]["report"]`` (with the file's
totals under ``"file"``) and in one warning per file, so nothing is dropped silently.

Pipeline per vessel (MMSI): unavailable SOG/COG/Heading become missing; reports at impossible
positions are dropped; reports are sorted by time and repeated stamps dropped (the first kept);
reports implying a speed above ``max_speed_knots`` are dropped; the rest is split into tracks at
time gaps longer than ``gap``, and each track is interpolated linearly onto a grid of ``interval``
(aligned to multiples of it). Columns: lat, lon (degrees), sog (knots), cog (degrees, clockwise from
north), speed and course derived from the resampled positions.
"""

from __future__ import annotations

import csv
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trajdiff.core.data import Episodes
from trajdiff.errors import ConfigError, DataError
from trajdiff.plugins.vessel.geo import KNOT_M_S, haversine_m, to_local

__all__ = ["COLUMNS", "CSV_COLUMNS", "load_ais", "parse_duration"]

logger = logging.getLogger(__name__)

COLUMNS = ["lat", "lon", "sog", "cog"]
CSV_COLUMNS = {"time": "BaseDateTime", "mmsi": "MMSI", "lat": "LAT", "lon": "LON"}
OPTIONAL_COLUMNS = {"sog": "SOG", "cog": "COG", "heading": "Heading"}
SOG_UNAVAILABLE = 102.3  # ITU-R M.1371: 1023 in 1/10 knot = not available
HEADING_UNAVAILABLE = 511.0
SHOWN_LINES = 10  # line numbers kept per kind of problem


@dataclass
class _Rows:
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


def parse_duration(value: Any, name: str) -> float:
    """Seconds from a number (seconds) or a pandas duration string such as '1min', '30s', '10min'."""
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a duration such as '1min' or a number of seconds, got {value!r}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        seconds = float(value)
    else:
        try:
            seconds = pd.Timedelta(str(value)).total_seconds()
        except (ValueError, TypeError):
            raise ConfigError(f"{name}={value!r} is not a duration; use e.g. '1min', '30s' or a number of "
                              "seconds") from None
    if not np.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{name} must be a positive duration, got {value!r}")
    return seconds


# ------------------------------------------------------------------------------------------ public


def load_ais(
    source: str | Path | pd.DataFrame,
    *,
    interval: Any = "1min",
    gap: Any = "10min",
    max_speed_knots: float = 60.0,
    min_rows: int = 2,
    tracks: str = "all",
    bad_rows: str = "skip",
    hold_out: int = 0,
) -> Episodes:
    """Reads an AIS log into one episode per track (a vessel's reports split at time gaps).

    ``source``: a NOAA MarineCadastre CSV (columns BaseDateTime, MMSI, LAT, LON, optionally SOG, COG,
    Heading, ...; any case), a tracktable ``.traj`` file, or a DataFrame with those columns.
    ``interval``: the resampling step; ``gap``: a longer silence starts a new track; reports implying a
    speed above ``max_speed_knots`` are dropped as jumps; tracks with fewer than ``min_rows`` rows after
    resampling are dropped (counted); ``tracks="last"`` keeps only each vessel's latest track (what to
    forecast from); ``bad_rows="raise"`` raises on the first malformed row instead of skipping it;
    ``hold_out=N`` moves each track's last N rows to meta "future" / "future_times" (the known truth
    that `trajdiff forecast` then draws beside the forecasts).

    Episode ids and meta "entity" are the MMSI (``MMSI/k`` for a vessel's k-th track when it has
    several); meta also holds "mmsi", "times" (datetime64[ns]), "source" and "report".
    """
    step = parse_duration(interval, "interval")
    gap_s = parse_duration(gap, "gap")
    if gap_s < step:
        raise ConfigError(f"gap ({gap_s:g} s) must be at least the resampling interval ({step:g} s)")
    if isinstance(max_speed_knots, bool) or not isinstance(max_speed_knots, (int, float)) or max_speed_knots <= 0:
        raise ConfigError(f"max_speed_knots must be a positive number, got {max_speed_knots!r}")
    if isinstance(min_rows, bool) or not isinstance(min_rows, (int, np.integer)) or min_rows < 1:
        raise ConfigError(f"min_rows must be a positive integer, got {min_rows!r}")
    if tracks not in ("all", "last"):
        raise ConfigError(f"tracks must be 'all' or 'last', got {tracks!r}")
    if isinstance(hold_out, bool) or not isinstance(hold_out, (int, np.integer)) or hold_out < 0:
        raise ConfigError(f"hold_out must be a number of rows >= 0, got {hold_out!r}")
    if bad_rows not in ("skip", "raise"):
        raise ConfigError(f"bad_rows must be 'skip' or 'raise', got {bad_rows!r}")

    rows = _read(source, bad_rows)
    file_report: dict[str, Any] = {
        "rows_read": int(len(rows.time) + len(rows.malformed)),
        "malformed_rows": len(rows.malformed),
        "malformed_examples": rows.malformed[:SHOWN_LINES],
        "blank_lines": rows.blank_lines,
    }
    vessels: dict[str, dict[str, Any]] = {}
    order = pd.Series(np.arange(len(rows.mmsi))).groupby(rows.mmsi, sort=False).indices if len(rows.mmsi) else {}
    sequences, ids, metas = [], [], []
    kept_tracks: dict[str, list[int]] = {}
    for mmsi in pd.unique(rows.mmsi):
        pos = order[mmsi]
        report, cleaned = _clean_vessel(rows, pos, max_speed_knots)
        segments = _split(cleaned["time"], gap_s)
        report["tracks"] = 0
        report["tracks_too_short"] = 0
        report["rows_in_short_tracks"] = 0
        vessel_tracks = []
        for lo, hi in segments:
            times, values = _resample({k: v[lo:hi] for k, v in cleaned.items()}, step)
            if len(times) < min_rows + hold_out:
                report["tracks_too_short"] += 1
                report["rows_in_short_tracks"] += hi - lo
                continue
            vessel_tracks.append((times, values, hi - lo))
        if tracks == "last":
            report["tracks_not_last"] = max(0, len(vessel_tracks) - 1)
            vessel_tracks = vessel_tracks[-1:]
        report["tracks"] = len(vessel_tracks)
        vessels[mmsi] = report
        for k, (times, values, n_reports) in enumerate(vessel_tracks, start=1):
            entity = mmsi if len(vessel_tracks) == 1 else f"{mmsi}/{k}"
            kept_tracks.setdefault(mmsi, []).append(len(sequences))
            meta = {"times": times, "entity": entity, "mmsi": mmsi, "source": rows.label,
                    "report": {**report, "track": k, "reports": int(n_reports), "rows": len(times) - hold_out}}
            if hold_out:
                meta.update(future=values[-hold_out:], future_times=times[-hold_out:], times=times[:-hold_out])
                values = values[:-hold_out]
            sequences.append(values)
            ids.append(entity)
            metas.append(meta)
    totals = _totals(vessels, file_report)
    for meta in metas:
        meta["report"]["file"] = totals
    _announce(rows.label, totals, len(sequences), min_rows, step)
    if not sequences:
        raise DataError(
            f"{rows.label}: no track has {min_rows + hold_out} or more rows at interval {step:g} s after cleaning ("
            + _summary(totals) + "). A track needs reports spanning at least one interval without a gap longer "
            "than gap=...; use a log with more reports per vessel, or lower min_rows / raise gap"
        )
    return Episodes(sequences=sequences, columns=list(COLUMNS), ids=ids, meta=metas)


# ----------------------------------------------------------------------------------------- reading


def _read(source: str | Path | pd.DataFrame, bad_rows: str) -> _Rows:
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
        return _read_traj(path, label, bad_rows)
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


def _read_csv(path: Path, label: str, bad_rows: str) -> _Rows:
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
                bad_rows: str) -> _Rows:
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
    return _Rows(label, mmsi[keep], stamps[keep], values["lat"][keep], values["lon"][keep], values["sog"][keep],
                 values["cog"][keep], values["heading"][keep], where[keep], unit, [m for _, m in all_problems], blank)


def _key(column: str) -> str:
    return next(k for k, v in CSV_COLUMNS.items() if v == column)


def _line_of(message: str) -> int:
    try:
        return int(message.split(":", 1)[0].split()[-1])
    except ValueError:
        return 0


def _read_traj(path: Path, label: str, bad_rows: str) -> _Rows:
    """Tracktable text trajectories: one per line, ``*T*,uuid,domain,n_points,n_props,[props],*P*,domain,
    dimension,has_id,has_timestamp,n_point_props`` followed by n_points x (id, timestamp, lon, lat, props)."""
    mmsi: list[str] = []
    stamps: list[str] = []
    lon: list[str] = []
    lat: list[str] = []
    where: list[int] = []
    malformed: list[str] = []
    blank = 0

    def bad(line: int, why: str) -> None:
        problem = f"line {line}: {why}"
        if bad_rows == "raise":
            raise DataError(f"{label}: {problem}; fix that line, or pass bad_rows='skip' to skip and count it")
        malformed.append(problem)

    try:
        with path.open(encoding="utf-8") as handle:
            for number, text in enumerate(handle, start=1):
                fields = text.rstrip("\r\n").split(",")
                if not text.strip():
                    blank += 1
                    continue
                if fields[0] != "*T*" or "*P*" not in fields:
                    bad(number, "not a tracktable trajectory (expected '*T*,uuid,domain,n_points,...,*P*,...')")
                    continue
                p = fields.index("*P*")
                try:
                    n_points = int(fields[3])
                    dimension, has_id, has_time, n_props = (int(v) for v in fields[p + 2:p + 6])
                except (ValueError, IndexError):
                    bad(number, "the trajectory header has a non-integer point count or point layout")
                    continue
                if dimension != 2 or not has_time:
                    bad(number, f"points must be 2-D with time stamps (dimension {dimension}, timestamps {has_time})")
                    continue
                per = has_id + has_time + dimension + n_props
                body = fields[p + 6:]
                if len(body) != n_points * per:
                    bad(number, f"the header announces {n_points} points of {per} fields but the line holds "
                                f"{len(body)} fields")
                    continue
                uid = fields[1]
                for k in range(n_points):
                    point = body[k * per:(k + 1) * per]
                    mmsi.append(point[0] if has_id else uid)
                    stamps.append(point[has_id])
                    lon.append(point[has_id + 1])
                    lat.append(point[has_id + 2])
                    where.append(number)
    except UnicodeDecodeError as e:
        raise DataError(f"{label}: not UTF-8 text ({e}); is it a tracktable text .traj file?") from e
    frame = pd.DataFrame({"BaseDateTime": stamps, "MMSI": mmsi, "LAT": lat, "LON": lon}, dtype=str)
    return _from_frame(frame, label, np.asarray(where, dtype=np.int64), "line", malformed, blank, bad_rows)


# ---------------------------------------------------------------------------------------- cleaning


def _clean_vessel(rows: _Rows, pos: np.ndarray, max_speed_knots: float) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Counts unavailable values, drops impossible positions, sorts, de-duplicates and removes jumps."""
    time, lat, lon = rows.time[pos], rows.lat[pos], rows.lon[pos]
    sog, cog, heading = rows.sog[pos].copy(), rows.cog[pos].copy(), rows.heading[pos].copy()
    report: dict[str, Any] = {"reports_read": int(len(pos))}
    sog_bad = np.isfinite(sog) & ((sog >= SOG_UNAVAILABLE) | (sog < 0))
    cog_bad = np.isfinite(cog) & ((cog < 0) | (cog >= 360))
    heading_bad = np.isfinite(heading) & ((heading == HEADING_UNAVAILABLE) | (heading < 0) | (heading >= 360))
    report["sog_unavailable"] = int(sog_bad.sum())
    report["cog_unavailable"] = int(cog_bad.sum())
    report["heading_unavailable"] = int(heading_bad.sum())
    sog[sog_bad], cog[cog_bad], heading[heading_bad] = np.nan, np.nan, np.nan

    invalid = (np.abs(lat) > 90) | (np.abs(lon) > 180) | ((lat == 0) & (lon == 0))
    report["positions_invalid"] = int(invalid.sum())
    keep = ~invalid
    time, lat, lon, sog, cog = time[keep], lat[keep], lon[keep], sog[keep], cog[keep]

    order = np.argsort(time, kind="stable")
    report["reports_sorted"] = int((order != np.arange(len(order))).sum())
    time, lat, lon, sog, cog = time[order], lat[order], lon[order], sog[order], cog[order]
    dup = np.zeros(len(time), dtype=bool)
    dup[1:] = time[1:] == time[:-1]  # the first report of a stamp is kept
    report["duplicates_removed"] = int(dup.sum())
    time, lat, lon, sog, cog = time[~dup], lat[~dup], lon[~dup], sog[~dup], cog[~dup]

    jumps = _jumps(time, lat, lon, max_speed_knots * KNOT_M_S)
    report["jumps_removed"] = int(jumps.sum())
    keep = ~jumps
    return report, {"time": time[keep], "lat": lat[keep], "lon": lon[keep], "sog": sog[keep], "cog": cog[keep]}


def _jumps(time: np.ndarray, lat: np.ndarray, lon: np.ndarray, max_speed: float) -> np.ndarray:
    """Reports that imply a speed above ``max_speed`` (m/s) from the previous kept report.

    A lone outlier (too fast both in and out, while its neighbours agree) is removed first; then a
    forward pass keeps each report reachable from the last kept one. If the first report is the odd
    one out (too fast to its successors that agree with each other), it is the one removed."""
    n = len(time)
    jumps = np.zeros(n, dtype=bool)
    if n < 2:
        return jumps
    seconds = time.astype("datetime64[ns]").astype(np.int64) / 1e9

    def speed(i: int, j: int) -> float:
        dt = max(abs(seconds[j] - seconds[i]), 1.0)  # AIS stamps have one-second resolution
        return float(haversine_m(lat[i], lon[i], lat[j], lon[j])) / dt

    if n >= 3 and speed(0, 1) > max_speed and speed(1, 2) <= max_speed:
        jumps[0] = True
    last = int(np.argmin(jumps))
    for i in range(last + 1, n):
        if speed(last, i) > max_speed:
            jumps[i] = True
        else:
            last = i
    return jumps


def _split(time: np.ndarray, gap_s: float) -> list[tuple[int, int]]:
    if len(time) == 0:
        return []
    seconds = time.astype(np.int64) / 1e9
    cuts = np.flatnonzero(np.diff(seconds) > gap_s) + 1
    bounds = [0, *cuts.tolist(), len(time)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _resample(track: dict[str, np.ndarray], step: float) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation of lat/lon onto multiples of ``step`` seconds within the track; sog/cog are
    derived from the resampled positions (speed in knots, course in degrees clockwise from north)."""
    ns = track["time"].astype(np.int64)
    step_ns = int(round(step * 1e9))
    first = -(-int(ns[0]) // step_ns) * step_ns
    grid = np.arange(first, int(ns[-1]) + 1, step_ns, dtype=np.int64)
    if len(grid) == 0:
        return grid.astype("datetime64[ns]"), np.zeros((0, len(COLUMNS)))
    lat = np.interp(grid, ns, track["lat"])
    lon = np.interp(grid, ns, track["lon"])
    return grid.astype("datetime64[ns]"), np.column_stack([lat, lon, *derive_motion(lat, lon, step)])


def derive_motion(lat: np.ndarray, lon: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Speed (knots) and course (degrees in [0, 360)) of each row from the displacement that ends at
    it (the first row takes the second's); arrays ``[..., T]``, step in seconds. Zero for one row."""
    lat, lon = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    if lat.shape[-1] < 2:
        return np.zeros_like(lat), np.zeros_like(lat)
    ref_lat, ref_lon = lat[..., :-1], lon[..., :-1]
    d = to_local(lat[..., 1:], lon[..., 1:], 0.0, 0.0) - to_local(ref_lat, ref_lon, 0.0, 0.0)
    d[..., 0] *= np.cos(np.radians((lat[..., 1:] + ref_lat) / 2))  # east metres at the segment's latitude
    speed = np.hypot(d[..., 0], d[..., 1]) / step / KNOT_M_S
    course = np.degrees(np.arctan2(d[..., 0], d[..., 1])) % 360.0
    speed = np.concatenate([speed[..., :1], speed], axis=-1)
    course = np.concatenate([course[..., :1], course], axis=-1)
    return speed, course


# ------------------------------------------------------------------------------------------ report

_COUNTED = ("reports_read", "sog_unavailable", "cog_unavailable", "heading_unavailable", "positions_invalid",
            "reports_sorted", "duplicates_removed", "jumps_removed", "tracks", "tracks_too_short",
            "rows_in_short_tracks")


def _totals(vessels: dict[str, dict[str, Any]], file_report: dict[str, Any]) -> dict[str, Any]:
    totals = dict(file_report)
    for key in _COUNTED:
        totals[key] = int(sum(r.get(key, 0) for r in vessels.values()))
    totals["tracks_not_last"] = int(sum(r.get("tracks_not_last", 0) for r in vessels.values()))
    totals["vessels"] = len(vessels)
    totals["vessels_single_report"] = int(sum(1 for r in vessels.values() if r["reports_read"] == 1))
    totals["vessels_without_track"] = int(sum(1 for r in vessels.values() if r["tracks"] == 0))
    return totals


def _summary(t: dict[str, Any]) -> str:
    parts = [f"{t['rows_read']} row(s) read", f"{t['vessels']} vessel(s)"]
    labels = [
        ("malformed_rows", "malformed row(s) skipped"),
        ("blank_lines", "blank line(s) skipped"),
        ("sog_unavailable", "SOG value(s) unavailable (102.3 or out of range)"),
        ("cog_unavailable", "COG value(s) unavailable (outside [0, 360))"),
        ("heading_unavailable", "Heading value(s) unavailable (511 or out of range)"),
        ("positions_invalid", "report(s) at impossible positions dropped"),
        ("reports_sorted", "report(s) moved to sort by time"),
        ("duplicates_removed", "report(s) with a repeated time stamp dropped (first kept)"),
        ("jumps_removed", "report(s) implying impossible speed dropped"),
        ("vessels_single_report", "vessel(s) with a single report"),
        ("tracks_too_short", "track(s) too short to resample dropped"),
        ("rows_in_short_tracks", "report(s) in those tracks"),
        ("tracks_not_last", "earlier track(s) left out (tracks='last')"),
    ]
    parts += [f"{t[key]} {text}" for key, text in labels if t.get(key)]
    if t.get("malformed_examples"):
        parts.append("malformed: " + "; ".join(t["malformed_examples"][:3]))
    return ", ".join(parts)


def _announce(label: str, totals: dict[str, Any], n_tracks: int, min_rows: int, step: float) -> None:
    """One warning per file when anything was repaired, skipped or dropped (details in the reports)."""
    quiet = ("rows_read", "vessels", "tracks", "reports_read", "malformed_examples")
    message = f"{label}: {n_tracks} track(s) at {step:g} s intervals; " + _summary(totals)
    if any(v for k, v in totals.items() if k not in quiet):
        warnings.warn(message + " (per-vessel counts in episodes.meta[i]['report'])", UserWarning, stacklevel=4)
    logger.info(message)
