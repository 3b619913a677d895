"""The pieces of benchmarks/vessel.py: the region rule, the 100 km exclusion around New York, splits that keep
every vessel on one side, time crops, the medoid and the paired ratio to constant velocity."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from trajdiff.core.data import Episodes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _vessel_points import medoid, scores  # noqa: E402
from _vessel_settings import by_vessel, crop_time, near_new_york, pick_vessels, region_of  # noqa: E402


def _track(lat: float, lon: float, rows: int = 10) -> np.ndarray:
    return np.column_stack([np.full(rows, lat), np.linspace(lon, lon + 0.01, rows), np.zeros(rows), np.zeros(rows)])


def _episodes(points: list[tuple[float, float]], mmsi: list[int]) -> Episodes:
    times = np.datetime64("2020-06-30T10:00") + np.arange(10) * np.timedelta64(1, "m")
    return Episodes([_track(lat, lon) for lat, lon in points], ["lat", "lon", "sog", "cog"],
                    meta=[{"mmsi": m, "times": times} for m in mmsi])


def test_regions_follow_the_documented_rule() -> None:
    places = {"pacific": (37.8, -122.4), "great_lakes": (41.9, -87.6), "gulf": (29.7, -95.0),
              "atlantic": (40.6, -74.0), "inland": (38.6, -90.2)}
    assert {name: region_of(*place) for name, place in places.items()} == {name: name for name in places}
    assert region_of(25.8, -80.1) == "atlantic"  # Miami
    assert region_of(44.2, -76.3) == "great_lakes"  # Lake Ontario's east end


def test_tracks_near_new_york_and_vessel_splits() -> None:
    episodes = _episodes([(40.7, -74.0), (40.22, -74.0), (41.5, -72.9), (40.7, -74.0)], [1, 2, 3, 1])
    assert near_new_york(episodes).tolist() == [True, True, False, True]  # 47 km, 136 km
    held = pick_vessels(episodes, 0.5, seed=0)
    rest, chosen = by_vessel(episodes, held)
    assert len(held) == 2 and len(rest) + len(chosen) == 4
    assert {m["mmsi"] for m in rest.meta}.isdisjoint(m["mmsi"] for m in chosen.meta)


def test_time_crops_keep_whole_rows_and_drop_short_tracks() -> None:
    episodes = _episodes([(40.0, -70.0)], [1])
    start = np.datetime64("2020-06-30T10:03")
    cropped = crop_time(episodes, start, start + np.timedelta64(4, "m"), min_rows=3)
    assert len(cropped.sequences[0]) == 4 and cropped.meta[0]["times"][0] == start
    assert np.array_equal(cropped.sequences[0], episodes.sequences[0][3:7])
    assert len(crop_time(episodes, start, None, min_rows=8)) == 0


def test_medoid_and_ratio_to_constant_velocity() -> None:
    samples = np.zeros((3, 1, 2, 2))
    samples[..., 0] = 40.0
    samples[:, 0, :, 1] = np.array([-70.0, -70.001, -70.1])[:, None]  # the middle sample is nearest the others
    assert np.array_equal(medoid(samples)[0], samples[1, 0])
    rng = np.random.default_rng(0)
    cv = rng.uniform(100, 200, (400, 30))
    row = scores(0.7 * cv, cv)
    assert row["fde_30_vs_cv"] == pytest.approx(-0.3) and row["fde_30_vs_cv_se"] == pytest.approx(0.0, abs=1e-6)
    assert row["windows"] == 400 and row["ade_10"] == pytest.approx(0.7 * cv[:, :10].mean())
