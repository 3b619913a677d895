"""The held-out settings of `vessel.py`: which tracks train, validate and test, by vessel, by day and by region.

Regions of the coastal day (``US_coastal_2020_06_30.traj``), by each track's median position (latitude,
longitude in degrees), checked in this order:

- ``pacific``: longitude < -115 (the West Coast, Alaska, Hawaii);
- ``great_lakes``: latitude >= 41 and longitude < -75.5 (the lakes and the St. Lawrence up to Lake Ontario);
- ``gulf``: latitude < 31 and longitude < -82 (Texas to the Florida Keys' west side);
- ``atlantic``: longitude >= -82 (Maine to Florida, Puerto Rico);
- ``inland``: the rest (the Mississippi, Ohio and Tennessee rivers).

When the Atlantic coast is held out, every track with a report within 100 km of New York Harbor
(40.64 N, 74.05 W) is dropped from its test and local-calibration sets, since the New York week trains.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trajdiff.core.data import Episodes
from trajdiff.plugins.vessel.geo import haversine_m

REGIONS = ("pacific", "great_lakes", "gulf", "atlantic", "inland")
NEW_YORK = (40.64, -74.05)
EXCLUSION_M = 100_000.0


def region_of(lat: float, lon: float) -> str:
    """The region of a track's median position (see the module docstring)."""
    if lon < -115.0:
        return "pacific"
    if lat >= 41.0 and lon < -75.5:
        return "great_lakes"
    if lat < 31.0 and lon < -82.0:
        return "gulf"
    if lon >= -82.0:
        return "atlantic"
    return "inland"


def regions(episodes: Episodes) -> list[str]:
    """The region of every track."""
    return [region_of(float(np.median(s[:, 0])), float(np.median(s[:, 1]))) for s in episodes.sequences]


def near_new_york(episodes: Episodes) -> np.ndarray:
    """Whether each track comes within 100 km of New York Harbor."""
    return np.array([bool((haversine_m(s[:, 0], s[:, 1], *NEW_YORK) < EXCLUSION_M).any()) for s in episodes.sequences],
                    dtype=bool)


def vessels_of(episodes: Episodes) -> list[str]:
    return [str(m["mmsi"]) for m in episodes.meta or []]


def pick_vessels(episodes: Episodes, fraction: float, seed: int) -> set[str]:
    """A share of the vessels (MMSI) of ``episodes``, drawn with ``seed``."""
    vessels = sorted(set(vessels_of(episodes)))
    rng = np.random.default_rng(seed)
    return set(rng.choice(vessels, size=max(1, round(len(vessels) * fraction)), replace=False).tolist())


def by_vessel(episodes: Episodes, vessels: set[str]) -> tuple[Episodes, Episodes]:
    """(tracks of other vessels, tracks of ``vessels``)."""
    names = vessels_of(episodes)
    return (episodes.select([i for i, v in enumerate(names) if v not in vessels]),
            episodes.select([i for i, v in enumerate(names) if v in vessels]))


def tagged(episodes: Episodes, tag: str) -> Episodes:
    """``episodes`` with ids prefixed by ``tag`` (so that files can be joined without clashing ids)."""
    return Episodes(list(episodes.sequences), list(episodes.columns), [f"{tag}:{i}" for i in episodes.ids or []],
                    [dict(m) for m in episodes.meta or []])


def join(*parts: Episodes) -> Episodes:
    """One set of tracks from several (same columns)."""
    return Episodes([s for p in parts for s in p.sequences], list(parts[0].columns),
                    [i for p in parts for i in p.ids or []], [m for p in parts for m in p.meta or []])


def crop_time(episodes: Episodes, start: np.datetime64 | None, end: np.datetime64 | None, min_rows: int) -> Episodes:
    """The rows of every track with start <= time < end (either bound open when None); tracks left with fewer
    than ``min_rows`` rows are dropped."""
    seqs, ids, metas = [], [], []
    for seq, sid, meta in zip(episodes.sequences, episodes.ids or [], episodes.meta or [], strict=True):
        times = np.asarray(meta["times"])
        keep = np.ones(len(times), dtype=bool)
        if start is not None:
            keep &= times >= start
        if end is not None:
            keep &= times < end
        rows = np.flatnonzero(keep)
        if len(rows) >= min_rows:  # the kept rows are contiguous: times increase along a track
            seqs.append(seq[rows[0]:rows[-1] + 1])
            ids.append(sid)
            metas.append({**meta, "times": times[rows[0]:rows[-1] + 1]})
    return Episodes(seqs, list(episodes.columns), ids, metas)


@dataclass
class Splits:
    """Every set of tracks the benchmark reads, and what made them."""

    train: Episodes
    validation: Episodes
    tests: dict[str, Episodes]
    local: dict[str, Episodes]
    record: dict


def make_splits(week: Episodes, day: Episodes, coastal: Episodes, *, held_out_region: str, seed: int,
                test_fraction: float = 0.2, validation_fraction: float = 0.1, local_hours: tuple[int, ...] = (1, 3),
                cut_hour: int = 12, min_rows: int = 60) -> Splits:
    """Training, validation, test and local-calibration tracks of the three settings.

    Held-out vessels: ``test_fraction`` of the New York week's vessels. Held-out day: the 8 December file. Held-out
    region: ``held_out_region`` of the coastal day (tracks near New York dropped when it is the Atlantic), its
    rows from ``cut_hour`` (UTC) on; its ``k`` hours before that are the local data of ``local[f"{k}h"]`` (the
    log is sparse at night, UTC, so local data come from the morning). Training: the New York week without the
    held-out vessels plus every other region of the coastal day; validation: ``validation_fraction`` of the
    training vessels, trained on by nobody."""
    test_vessels = pick_vessels(week, test_fraction, seed)
    week_train, week_test = by_vessel(week, test_vessels)
    names = regions(coastal)
    held = [i for i, r in enumerate(names) if r == held_out_region]
    region = coastal.select(held)
    near = near_new_york(region) if held_out_region == "atlantic" else np.zeros(len(region), dtype=bool)
    region = region.select(np.flatnonzero(~near).tolist())
    others = coastal.select([i for i, r in enumerate(names) if r != held_out_region])
    pool = join(tagged(week_train, "week"), tagged(others, "coastal"))
    validation_vessels = pick_vessels(pool, validation_fraction, seed + 1)
    train, validation = by_vessel(pool, validation_vessels)
    first = min(np.asarray(m["times"])[0] for m in coastal.meta or [])
    cut = np.datetime64(first, "D") + np.timedelta64(cut_hour, "h")
    tests = {"held-out vessels": week_test, "held-out day": day,
             f"held-out region ({held_out_region})": crop_time(region, cut, None, min_rows)}
    local = {f"{k}h": crop_time(region, cut - np.timedelta64(k, "h"), cut, min_rows) for k in local_hours}
    counts = {r: names.count(r) for r in REGIONS}
    record = {"seed": seed, "test_vessels_new_york": sorted(test_vessels),
              "validation_vessels": len(validation_vessels),
              "held_out_region": held_out_region, "region_tracks_coastal_day": counts,
              "region_tracks_dropped_near_new_york": int(near.sum()), "test_rows_from": str(cut),
              "local_hours": {f"{k}h": [str(cut - np.timedelta64(k, "h")), str(cut)] for k in local_hours},
              "train_tracks": len(train), "validation_tracks": len(validation),
              "test_tracks": {name: len(e) for name, e in tests.items()},
              "local_tracks": {name: len(e) for name, e in local.items()}}
    return Splits(train, validation, tests, local, record)
