"""Cleaning one vessel's AIS reports, and the counts that report every repair.

Why: AIS carries sentinel values (SOG 102.3, Heading 511), impossible positions, repeated and
out-of-order reports and GPS jumps. Sentinels become missing values; bad positions, repeated stamps
and reports implying an impossible speed are dropped; each of these is counted per vessel, and
:func:`file_totals` and :func:`summarize` add the counts up per file for the report and the warning.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trajdiff.plugins.vessel.geo import KNOT_M_S, haversine_m
from trajdiff.plugins.vessel.reading import Rows

__all__ = ["HEADING_UNAVAILABLE", "SOG_UNAVAILABLE", "clean_vessel", "file_totals", "summarize"]

SOG_UNAVAILABLE = 102.3  # ITU-R M.1371: 1023 in 1/10 knot = not available
HEADING_UNAVAILABLE = 511.0
SPEED_MARGIN = 1e-9  # relative: far above the rounding differences of vectorized and scalar distances


def clean_vessel(rows: Rows, pos: np.ndarray, max_speed_knots: float) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Counts unavailable values, drops impossible positions, sorts, de-duplicates and removes jumps."""
    time, lat, lon = rows.time[pos], rows.lat[pos], rows.lon[pos]
    sog, cog, heading = (np.full(len(pos), np.nan) if column is None else column[pos]
                         for column in (rows.sog, rows.cog, rows.heading))  # copies
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

    # Reports that may be too fast after the one before them, found for all at once; a margin far above
    # rounding makes sure that every other report is reachable from the one before it, as `speed` finds.
    step = haversine_m(lat[:-1], lon[:-1], lat[1:], lon[1:]) / np.maximum(np.abs(np.diff(seconds)), 1.0)
    suspects = np.flatnonzero(step > max_speed * (1.0 - SPEED_MARGIN)) + 1
    if n >= 3 and speed(0, 1) > max_speed and speed(1, 2) <= max_speed:
        jumps[0] = True
    last = int(np.argmin(jumps))
    i = last + 1
    while i < n:
        if last == i - 1:  # reports follow each other until the next suspect: all kept
            k = int(np.searchsorted(suspects, i))
            if k == len(suspects):
                break
            i = int(suspects[k])
            last = i - 1
        if speed(last, i) > max_speed:
            jumps[i] = True
        else:
            last = i
        i += 1
    return jumps


_COUNTED = ("reports_read", "sog_unavailable", "cog_unavailable", "heading_unavailable", "positions_invalid",
            "reports_sorted", "duplicates_removed", "jumps_removed", "tracks", "tracks_too_short",
            "rows_in_short_tracks")


def file_totals(vessels: dict[str, dict[str, Any]], file_report: dict[str, Any]) -> dict[str, Any]:
    """The file's counts (``file_report``, from reading) plus every vessel's counts added up."""
    totals = dict(file_report)
    for key in _COUNTED:
        totals[key] = int(sum(r.get(key, 0) for r in vessels.values()))
    totals["tracks_not_last"] = int(sum(r.get("tracks_not_last", 0) for r in vessels.values()))
    totals["vessels"] = len(vessels)
    totals["vessels_single_report"] = int(sum(1 for r in vessels.values() if r["reports_read"] == 1))
    totals["vessels_without_track"] = int(sum(1 for r in vessels.values() if r["tracks"] == 0))
    return totals


def summarize(t: dict[str, Any]) -> str:
    """:func:`file_totals` in words, listing only what happened, for the warning and errors."""
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
