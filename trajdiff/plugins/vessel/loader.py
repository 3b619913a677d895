"""Reading AIS logs (NOAA MarineCadastre CSV, tracktable ``.traj``, DataFrames) into cleaned tracks.

Why: raw AIS is full of sentinel values, impossible positions, repeated and out-of-order reports
and GPS jumps. Each problem is either an error that names the file, line and column and says what
to do, or a repair that is counted: per vessel in ``episodes.meta[i]["report"]`` (with the file's
totals under ``"file"``) and in one warning per file, so nothing is dropped silently. What was read (rows,
vessels, tracks, time span and the box the positions span) is one line in the log, which the command line prints.

Pipeline per vessel (MMSI): unavailable SOG/COG/Heading become missing; reports at impossible
positions are dropped; reports are sorted by time and repeated stamps dropped (the first kept);
reports implying a speed above ``max_speed_knots`` are dropped; the rest is split into tracks at
time gaps longer than ``gap``, and each track is interpolated linearly onto a grid of ``interval``
(aligned to multiples of it). Columns: lat, lon (degrees), sog (knots), cog (degrees, clockwise from
north), speed and course derived from the resampled positions.

This module runs that pipeline, cuts and resamples the tracks and announces the repairs;
:mod:`~trajdiff.plugins.vessel.reading` (with :mod:`~trajdiff.plugins.vessel.traj`) reads and checks the
reports, and :mod:`~trajdiff.plugins.vessel.cleaning` repairs each vessel's reports and counts what it did.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trajdiff.core.data import Episodes
from trajdiff.errors import ConfigError, DataError
from trajdiff.plugins.vessel.cleaning import clean_vessel, file_totals, summarize
from trajdiff.plugins.vessel.geo import EARTH_RADIUS_M, KNOT_M_S
from trajdiff.plugins.vessel.reading import Rows, read_reports

__all__ = ["COLUMNS", "derive_motion", "load_ais", "parse_duration"]

logger = logging.getLogger(__name__)

COLUMNS = ["lat", "lon", "sog", "cog"]
SHOWN_LINES = 10  # line numbers kept per kind of problem


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

    rows = read_reports(source, bad_rows)
    file_report: dict[str, Any] = {
        "rows_read": int(len(rows.time) + len(rows.malformed)),
        "malformed_rows": len(rows.malformed),
        "malformed_examples": rows.malformed[:SHOWN_LINES],
        "blank_lines": rows.blank_lines,
    }
    vessels: dict[str, dict[str, Any]] = {}
    sequences, ids, metas = [], [], []
    kept_tracks: dict[str, list[int]] = {}
    for mmsi, pos in _by_vessel(rows):
        report, cleaned = clean_vessel(rows, pos, max_speed_knots)
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
    totals = file_totals(vessels, file_report)
    for meta in metas:
        meta["report"]["file"] = totals
    _announce(rows.label, totals, len(sequences), min_rows, step)
    logger.info(_summary(rows.label, totals, sequences, metas, step))
    if not sequences:
        raise DataError(
            f"{rows.label}: no track has {min_rows + hold_out} or more rows at interval {step:g} s after cleaning ("
            + summarize(totals) + "). A track needs reports spanning at least one interval without a gap longer "
            "than gap=...; use a log with more reports per vessel, or lower min_rows / raise gap"
        )
    return Episodes(sequences=sequences, columns=list(COLUMNS), ids=ids, meta=metas)


def _by_vessel(rows: Rows) -> Iterator[tuple[str, np.ndarray]]:
    """Each vessel's MMSI and its reports (positions in ``rows``, in file order), vessels in order of their first
    report."""
    if not len(rows.mmsi):
        return
    order = np.argsort(rows.mmsi, kind="stable")
    counts = np.bincount(rows.mmsi, minlength=len(rows.names))
    bounds = np.concatenate([[0], np.cumsum(counts)])
    present = np.flatnonzero(counts)
    first = order[bounds[present]]  # a vessel's first report comes first among its own
    for code in present[np.argsort(first)]:
        yield rows.names[code], order[bounds[code]:bounds[code + 1]]


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
    north = np.radians(np.diff(lat, axis=-1)) * EARTH_RADIUS_M
    east = np.radians(np.diff(lon, axis=-1)) * EARTH_RADIUS_M  # metres along the equator ...
    east *= np.cos(np.radians((lat[..., 1:] + lat[..., :-1]) / 2))  # ... and at the segment's latitude
    speed = np.hypot(east, north) / (step * KNOT_M_S)
    course = np.degrees(np.arctan2(east, north))  # (-180, 180]
    course = np.where(course < 0.0, course + 360.0, course) + 0.0  # [0, 360), no -0.0 (cheaper than % 360)
    speed = np.concatenate([speed[..., :1], speed], axis=-1)
    course = np.concatenate([course[..., :1], course], axis=-1)
    return speed, course


def _announce(label: str, totals: dict[str, Any], n_tracks: int, min_rows: int, step: float) -> None:
    """One warning per file when anything was repaired, skipped or dropped (details in the reports)."""
    quiet = ("rows_read", "vessels", "tracks", "reports_read", "malformed_examples")
    message = f"{label}: {n_tracks} track(s) at {step:g} s intervals; " + summarize(totals)
    if any(v for k, v in totals.items() if k not in quiet):
        warnings.warn(message + " (per-vessel counts in episodes.meta[i]['report'])", UserWarning, stacklevel=4)


def _summary(label: str, totals: dict[str, Any], sequences: list[np.ndarray], metas: list[dict[str, Any]],
             step: float) -> str:
    """What was read, in one line for the log (the command line prints it): reports, vessels, tracks, the time
    span and the box the positions span, where a mistake no check can see (latitude and longitude swapped, another
    region than meant) shows."""
    rows = sum(len(s) for s in sequences)
    line = (f"{label}: read {totals['rows_read']} row(s) of {totals['vessels']} vessel(s): {len(sequences)} track(s) "
            f"of {rows} row(s) at {step:g} s intervals")
    if not sequences:
        return line
    parts = [*sequences, *(m["future"] for m in metas if "future" in m)]  # bounds per track: no copy of them all
    low = np.min([part.min(axis=0) for part in parts if len(part)], axis=0)
    high = np.max([part.max(axis=0) for part in parts if len(part)], axis=0)
    times = [np.asarray(m[key]) for m in metas for key in ("times", "future_times") if key in m]
    first, last = (np.datetime_as_string(t, unit="s") for t in (min(t.min() for t in times if len(t)),
                                                                  max(t.max() for t in times if len(t))))
    return (f"{line}, {first} to {last}, lat {low[0]:.4f} to {high[0]:.4f}, "
            f"lon {low[1]:.4f} to {high[1]:.4f}")
