"""The vessel domain: AIS loading and cleaning (every bad-input case), the local frame, baselines, metrics,
guides (keep-out, speed, turn, waypoint), plugin hooks and data set cards."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from trajdiff.core.guidance import CostGradient
from trajdiff.errors import ConfigError, DataError, ShapeError
from trajdiff.plugins import vessel as plugin
from trajdiff.plugins.manager import Plugins
from trajdiff.plugins.spec import DatasetCard
from trajdiff.plugins.vessel.baselines import constant_turn_rate, constant_velocity
from trajdiff.plugins.vessel.domain import AIS_FILES, VesselDomain
from trajdiff.plugins.vessel.encoder import VesselEncoder
from trajdiff.plugins.vessel.geo import (
    EARTH_RADIUS_M,
    from_local,
    haversine_m,
    load_polygons,
    signed_distance,
    to_local,
)
from trajdiff.plugins.vessel.guides import BindableCost, vessel_guides, violations
from trajdiff.plugins.vessel.loader import load_ais
from trajdiff.plugins.vessel.metrics import ade_m, fde_m, min_ade_m, min_fde_m

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
AIS = SHARED_DATA / "ais"
HOUR_CSV = AIS / "NYHarbor_2020_06_30_first_hour.csv"
DAY_TRAJ = AIS / "NYHarbor_2020_12_08.traj"
needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"shared data folder {SHARED_DATA} is absent")

HEADER = "BaseDateTime,LON,LAT,MMSI,SOG,COG,Heading,VesselName\n"
LAT0, LON0 = 40.6, -74.05


def _csv(tmp_path: Path, rows: list[str], name: str = "ais.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + "".join(r + "\n" for r in rows))
    return path


def _row(minute: float, mmsi: int = 366000001, east_m: float = 0.0, north_m: float = 0.0, sog: str = "5.0",
         cog: str = "90.0", heading: str = "90.0") -> str:
    lat, lon = from_local(np.array([east_m, north_m]), LAT0, LON0)
    stamp = pd.Timestamp("2020-06-30") + pd.Timedelta(minutes=minute)
    return f"{stamp.isoformat()},{float(lon):.7f},{float(lat):.7f},{mmsi},{sog},{cog},{heading},TEST"


def _straight(tmp_path: Path, minutes: int = 5, mmsi: int = 366000001, speed: float = 100.0) -> list[str]:
    return [_row(m, mmsi, east_m=speed * m) for m in range(minutes)]


# ---------------------------------------------------------------------------------------- geodesy


def test_local_frame_round_trip_and_distances() -> None:
    rng = np.random.default_rng(0)
    lat = LAT0 + rng.uniform(-0.2, 0.2, 50)
    lon = LON0 + rng.uniform(-0.2, 0.2, 50)
    back_lat, back_lon = from_local(to_local(lat, lon, LAT0, LON0), LAT0, LON0)
    np.testing.assert_allclose(back_lat, lat, atol=1e-12)
    np.testing.assert_allclose(back_lon, lon, atol=1e-12)
    # one degree of latitude is R * pi / 180 on the sphere; the local frame agrees with haversine to 0.1%
    assert haversine_m(0.0, 0.0, 1.0, 0.0) == pytest.approx(EARTH_RADIUS_M * math.pi / 180, rel=1e-12)
    xy = to_local(lat, lon, LAT0, LON0)
    np.testing.assert_allclose(np.hypot(xy[:, 0], xy[:, 1]), haversine_m(LAT0, LON0, lat, lon), rtol=1e-3)


def test_signed_distance_of_a_square_and_its_gradient_points_out() -> None:
    ring = torch.tensor([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]])
    points = torch.tensor([[5.0, 5.0], [1.0, 5.0], [12.0, 5.0], [13.0, 14.0]], requires_grad=True)
    sd = signed_distance(points, ring)
    np.testing.assert_allclose(sd.detach().numpy(), [-5.0, -1.0, 2.0, 5.0], atol=1e-4)
    (grad,) = torch.autograd.grad(sd[1], points)
    np.testing.assert_allclose(grad[1].numpy(), [-1.0, 0.0], atol=1e-4)  # nearest edge is x = 0: outwards is -x


def test_geojson_polygons_and_errors(tmp_path: Path) -> None:
    square = [[-74.0, 40.0], [-73.9, 40.0], [-73.9, 40.1], [-74.0, 40.1], [-74.0, 40.0]]
    collection = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [square]}},
        {"type": "Feature", "properties": {},
         "geometry": {"type": "MultiPolygon", "coordinates": [[square], [square]]}},
        {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [-74.0, 40.0]}},
    ]}
    path = tmp_path / "zones.geojson"
    path.write_text(json.dumps(collection))
    rings = load_polygons(path)
    assert len(rings) == 3 and rings[0].shape == (4, 2)
    with pytest.raises(ConfigError, match="not found"):
        load_polygons(tmp_path / "missing.geojson")
    (tmp_path / "bad.geojson").write_text("{not json")
    with pytest.raises(DataError, match="bad.geojson: not valid JSON"):
        load_polygons(tmp_path / "bad.geojson")
    with pytest.raises(DataError, match="no Polygon or MultiPolygon"):
        load_polygons({"type": "Point", "coordinates": [0, 0]})
    with pytest.raises(DataError, match=r"\[longitude, latitude\]"):
        load_polygons({"type": "Polygon", "coordinates": [[[40.0, -74.0], [40.0, 100.0], [41.0, -74.0]]]})


# ----------------------------------------------------------------------------------------- loading


@needs_shared
def test_noaa_csv_sample_loads_with_every_anomaly_counted() -> None:
    with pytest.warns(UserWarning) as record:
        episodes = load_ais(HOUR_CSV)
    message = str(record[0].message)
    assert "4463 COG value(s) unavailable" in message and "3606 Heading value(s) unavailable" in message
    assert "5 vessel(s) with a single report" in message
    total = episodes.meta[0]["report"]["file"]
    assert total["rows_read"] == 8689 and total["vessels"] == 295 and total["malformed_rows"] == 0
    assert total["duplicates_removed"] == 2 and total["cog_unavailable"] == 4463
    assert total["vessels_single_report"] == 5
    assert episodes.columns == ["lat", "lon", "sog", "cog"]
    assert len({m["mmsi"] for m in episodes.meta}) + total["vessels_without_track"] == 295
    for meta, seq in zip(episodes.meta, episodes.sequences, strict=True):
        assert (np.diff(meta["times"]) == np.timedelta64(60, "s")).all() and len(meta["times"]) == len(seq)
        assert meta["entity"].split("/")[0] == meta["mmsi"]
    assert sum(m["report"]["reports"] for m in episodes.meta) + total["rows_in_short_tracks"] + \
        total["duplicates_removed"] == total["reports_read"]


@needs_shared
def test_tracktable_traj_sample_loads() -> None:
    episodes = load_ais(DAY_TRAJ, gap="1h")
    total = episodes.meta[0]["report"]["file"]
    assert total["rows_read"] == 9091 and total["vessels"] == 37 and total["malformed_rows"] == 0
    lat, lon = np.concatenate(episodes.sequences)[:, 0], np.concatenate(episodes.sequences)[:, 1]
    assert 40.3 < lat.min() and lat.max() < 41.0 and -74.4 < lon.min() and lon.max() < -73.6


def test_unavailable_values_invalid_positions_duplicates_unsorted_and_jumps_are_counted(tmp_path: Path) -> None:
    rows = [
        _row(0, east_m=0, sog="102.3", heading="511"),
        _row(2, east_m=200, cog="-12.5"),
        _row(1, east_m=100, cog="360.0"),  # unsorted
        _row(2, east_m=200),  # the same stamp again
        _row(3, east_m=300),
        _row(3.5, east_m=90_000),  # a jump of 90 km in 30 s
        _row(4, east_m=400),
        _row(5, east_m=500),
    ]
    rows.append("2020-06-30T00:05:30,-74.05,91.0,366000001,1,1,1,X")  # latitude 91: AIS's 'not available'
    rows.append("2020-06-30T00:06:30,0.0,0.0,366000001,1,1,1,X")  # null island
    with pytest.warns(UserWarning, match="per-vessel counts"):
        episodes = load_ais(_csv(tmp_path, rows))
    report = episodes.meta[0]["report"]
    assert report["sog_unavailable"] == 1 and report["heading_unavailable"] == 1 and report["cog_unavailable"] == 2
    assert report["positions_invalid"] == 2 and report["duplicates_removed"] == 1 and report["jumps_removed"] == 1
    assert report["reports_sorted"] > 0
    seq = episodes.sequences[0]
    assert len(seq) == 6  # minutes 0..5 on the one-minute grid
    east = to_local(seq[:, 0], seq[:, 1], LAT0, LON0)[:, 0]
    np.testing.assert_allclose(east, [0, 100, 200, 300, 400, 500], atol=0.01)
    np.testing.assert_allclose(seq[1:, 2], 100 / 60 / (1852 / 3600), rtol=1e-3)  # derived speed in knots
    np.testing.assert_allclose(seq[1:, 3], 90.0, atol=0.01)  # course due east


def test_tracks_split_at_gaps_and_resample_onto_the_grid(tmp_path: Path) -> None:
    rows = [_row(m + 0.5, east_m=60 * (m + 0.5)) for m in range(5)]  # off-grid stamps, 1 m/s east
    rows += [_row(30 + m, east_m=5000 + 60 * m) for m in range(4)]  # after a 25-minute silence
    episodes = load_ais(_csv(tmp_path, rows), gap="10min")
    assert episodes.ids == ["366000001/1", "366000001/2"]
    assert episodes.lengths == [4, 4]
    assert str(episodes.meta[0]["times"][0]) == "2020-06-30T00:01:00.000000000"
    east = to_local(episodes.sequences[0][:, 0], episodes.sequences[0][:, 1], LAT0, LON0)[:, 0]
    np.testing.assert_allclose(east, [60, 120, 180, 240], atol=0.01)  # linear interpolation in time
    with pytest.warns(UserWarning, match=r"1 earlier track\(s\) left out"):
        last = load_ais(_csv(tmp_path, rows), gap="10min", tracks="last")
    assert last.ids == ["366000001"] and last.meta[0]["report"]["tracks_not_last"] == 1
    held = load_ais(_csv(tmp_path, rows), hold_out=2)
    assert held.lengths == [2, 2] and held.meta[0]["future"].shape == (2, 4)


def test_malformed_rows_are_skipped_counted_and_reported_with_line_numbers(tmp_path: Path) -> None:
    rows = _straight(tmp_path, 4)
    rows.insert(1, "2020-06-30T00:00:30,-74.0,40.6,366000001,1,1")  # too few fields: line 3
    rows.insert(2, "yesterday,-74.0,40.6,366000001,1,1,1,X")  # line 4
    rows.insert(3, "2020-06-30T00:00:40,-74.0,north,366000001,1,1,1,X")  # line 5
    rows.insert(4, "2020-06-30T00:00:50,-74.0,40.6,ABC,1,1,1,X")  # line 6
    path = _csv(tmp_path, rows, "messy.csv")
    with pytest.warns(UserWarning, match="4 malformed row"):
        episodes = load_ais(path)
    total = episodes.meta[0]["report"]["file"]
    assert total["malformed_rows"] == 4
    examples = " | ".join(total["malformed_examples"])
    assert "line 3: 6 fields, the header has 8" in examples
    assert "line 4: column 'BaseDateTime' has an unparsable timestamp ('yesterday')" in examples
    assert "line 5: column 'LAT'" in examples and "line 6: column 'MMSI'" in examples
    with pytest.raises(DataError, match=r"messy.csv: line 3: 6 fields.*bad_rows='skip'"):
        load_ais(path, bad_rows="raise")


def test_missing_columns_name_the_file_and_columns(tmp_path: Path) -> None:
    path = tmp_path / "nolat.csv"
    path.write_text("BaseDateTime,LON,MMSI\n2020-06-30T00:00:00,-74.0,1\n")
    with pytest.raises(DataError) as err:
        load_ais(path)
    message = str(err.value)
    assert "nolat.csv" in message and "missing column(s) ['LAT']" in message and "rename the columns" in message


def test_single_report_per_vessel_is_counted_not_a_crash(tmp_path: Path) -> None:
    rows = [_row(0, mmsi=366000000 + i, east_m=1000 * i) for i in range(1, 4)]
    with pytest.raises(DataError) as err, pytest.warns(UserWarning, match="3 vessel.s. with a single report"):
        load_ais(_csv(tmp_path, rows, "single.csv"))
    message = str(err.value)
    assert "single.csv: no track" in message and "3 vessel(s) with a single report" in message
    with pytest.warns(UserWarning, match="3 vessel.s. with a single report"):
        episodes = load_ais(_csv(tmp_path, rows + _straight(tmp_path, 3, mmsi=366999999), "mixed.csv"))
    assert episodes.ids == ["366999999"]
    total = episodes.meta[0]["report"]["file"]
    assert total["vessels_single_report"] == 3 and total["vessels_without_track"] == 3


def test_file_errors_and_options(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_ais(tmp_path / "nothere.csv")
    (tmp_path / "log.xlsx").write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        load_ais(tmp_path / "log.xlsx")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty.csv: the file is empty"):
        load_ais(tmp_path / "empty.csv")
    path = _csv(tmp_path, _straight(tmp_path))
    with pytest.raises(ConfigError, match="interval='soon' is not a duration"):
        load_ais(path, interval="soon")
    with pytest.raises(ConfigError, match="gap .* must be at least"):
        load_ais(path, interval="10min", gap="1min")
    with pytest.raises(ConfigError, match=r"unknown vessel loader option\(s\) \['colour'\]"):
        VesselDomain().load(path, colour="red")


def test_traj_format_and_malformed_lines(tmp_path: Path) -> None:
    good = "*T*,u1,terrestrial,3,0,*P*,terrestrial,2,1,1,0," + ",".join(
        f"366000001,2020-12-08 00:0{m}:00,{-74.0 + 0.001 * m},40.6" for m in range(3))
    short = "*T*,u2,terrestrial,5,0,*P*,terrestrial,2,1,1,0,366000002,2020-12-08 00:00:00,-74.0,40.6"
    path = tmp_path / "log.traj"
    path.write_text(good + "\nnot a trajectory\n" + short + "\n")
    with pytest.warns(UserWarning, match="2 malformed"):
        episodes = load_ais(path)
    assert episodes.ids == ["366000001"] and episodes.lengths == [3]
    examples = episodes.meta[0]["report"]["file"]["malformed_examples"]
    assert examples[0].startswith("line 2: not a tracktable trajectory")
    assert examples[1].startswith("line 3: the header announces 5 points of 4 fields but the line holds 4")
    with pytest.raises(DataError, match="log.traj: line 2"):
        load_ais(path, bad_rows="raise")


def test_dataframe_input() -> None:
    frame = pd.DataFrame({"basedatetime": pd.date_range("2020-06-30", periods=4, freq="1min"), "mmsi": 1,
                          "lat": LAT0, "lon": LON0 + np.arange(4) * 1e-3})
    episodes = load_ais(frame)
    assert episodes.ids == ["1"] and episodes.lengths == [4] and episodes.meta[0]["source"] == "DataFrame"


# ----------------------------------------------------------------------------------------- encoder


def _episodes_on_circles(n: int = 12, length: int = 40, seed: int = 0) -> pd.DataFrame:
    """Vessels turning at constant rates (3 to 6 degrees per minute) at 4 to 8 m/s, one report a minute."""
    rng = np.random.default_rng(seed)
    frames = []
    for v in range(n):
        speed, rate = rng.uniform(240, 480), math.radians(rng.uniform(3, 6)) * rng.choice([-1, 1])
        course = rng.uniform(0, 2 * math.pi) + rate * np.arange(length)
        xy = np.cumsum(speed * np.column_stack([np.cos(course), np.sin(course)]), axis=0)
        lat, lon = from_local(xy, LAT0 + 0.05 * (v % 4), LON0 + 0.05 * (v // 4))
        frames.append(pd.DataFrame({"BaseDateTime": pd.date_range("2020-06-30", periods=length, freq="1min"),
                                    "MMSI": 366000000 + v, "LAT": lat, "LON": lon}))
    return pd.concat(frames, ignore_index=True)


def test_encoder_round_trip_and_constant_velocity_is_zero_residual() -> None:
    episodes = load_ais(_episodes_on_circles())
    encoder = VesselEncoder(10, 10, patch=5).fit(episodes)
    window = episodes.sequences[0][:20]
    tokens, frame = encoder.encode(window, 10)
    assert tokens.shape == (4, 10) and encoder.dim == 10
    back = encoder.decode(tokens, frame)
    np.testing.assert_allclose(back[:, :2], window[:, :2], atol=1e-7)  # degrees: about 1 cm
    np.testing.assert_allclose(back[1:, 2:], window[1:, 2:], atol=1e-3)
    # a straight line at constant speed: the future is exactly the constant-velocity forecast
    xy = np.column_stack([np.arange(20) * 300.0, np.arange(20) * 100.0])
    lat, lon = from_local(xy, LAT0, LON0)
    line = np.column_stack([lat, lon, np.zeros(20), np.zeros(20)])
    tokens, frame = encoder.encode(line, 10)
    feats = encoder._rows(tokens) * encoder.std + encoder.mean
    np.testing.assert_allclose(feats[10:], 0.0, atol=1e-3)
    assert frame["theta"] == pytest.approx(math.atan2(100, 300), abs=1e-4)
    assert frame["velocity"][0] == pytest.approx(math.hypot(300, 100), rel=1e-3)
    state = json.loads(json.dumps(encoder.state_dict(), default=float))
    again = VesselDomain().encoder_from_state(state)
    np.testing.assert_allclose(again.encode(window, 10)[0], encoder.encode(window, 10)[0])
    with pytest.raises(ShapeError, match="10 observed \\+ 10 future rows"):
        encoder.encode(window[:15], 10)
    with pytest.raises(ConfigError, match="not a VesselEncoder state"):
        VesselEncoder.from_state({"kind": "other"})
    with pytest.raises(ConfigError, match="multiples of patch"):
        VesselEncoder(10, 12, patch=5)


def test_place_features_carry_position_and_course_and_decode_ignores_them() -> None:
    episodes = load_ais(_episodes_on_circles())
    encoder = VesselEncoder(10, 10, patch=5, place=True).fit(episodes)
    window = episodes.sequences[2][:20]
    tokens, frame = encoder.encode(window, 10)
    assert tokens.shape == (4, 14) and encoder.dim == 14
    rows = np.concatenate(episodes.sequences)
    expected = [(window[9, 0] - rows[:, 0].mean()) / rows[:, 0].std(), (window[9, 1] - rows[:, 1].mean())
                / rows[:, 1].std(), math.cos(frame["theta"]), math.sin(frame["theta"])]
    np.testing.assert_allclose(tokens[:, 10:], np.tile(expected, (4, 1)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(encoder.decode(tokens, frame)[:, :2], window[:, :2], atol=1e-7)
    again = VesselEncoder.from_state(json.loads(json.dumps(encoder.state_dict())))
    np.testing.assert_allclose(again.encode(window, 10)[0], tokens)
    guides = vessel_guides(encoder, waypoint=(LAT0, LON0))
    moved = guides(frames=[frame], samples=1)[0].steer(torch.as_tensor(tokens)[None], torch.ones(1, 4, dtype=bool))
    np.testing.assert_allclose(moved[0, :, 10:].numpy(), tokens[:, 10:])  # place features are kept as they are


def test_turned_frame_makes_the_encoding_independent_of_heading() -> None:
    episodes = load_ais(_episodes_on_circles())
    encoder = VesselEncoder(10, 10).fit(episodes)
    t = np.arange(20.0)
    path = np.column_stack([200 * t, 3 * t ** 2])  # accelerating sideways
    codes = []
    for angle in (0.0, 1.0, 2.5):
        c, s = math.cos(angle), math.sin(angle)
        xy = path @ np.array([[c, s], [-s, c]])
        lat, lon = from_local(xy, LAT0, LON0)
        codes.append(encoder.encode(np.column_stack([lat, lon, 0 * t, 0 * t]), 10)[0])
    # equal up to the projection's error between frames (under 0.1% of the distance from the origin)
    np.testing.assert_allclose(codes[1], codes[0], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(codes[2], codes[0], rtol=1e-3, atol=1e-3)


def test_torch_view_matches_numpy_and_inverts() -> None:
    episodes = load_ais(_episodes_on_circles())
    encoder = VesselEncoder(10, 10, patch=5).fit(episodes)
    tokens, frame = encoder.encode(episodes.sequences[3][5:25], 10)
    x = torch.as_tensor(tokens, dtype=torch.float64)[None]
    theta = torch.tensor([frame["theta"]], dtype=torch.float64)
    velocity = torch.tensor([frame["velocity"]], dtype=torch.float64)
    local = encoder.torch_local(x, theta, velocity)
    np.testing.assert_allclose(local[0].numpy(), encoder.local_metres(tokens, frame), atol=1e-6)
    np.testing.assert_allclose(encoder.torch_tokens(local, theta, velocity).numpy(), x.numpy(), atol=1e-9)


# -------------------------------------------------------------------------------- baselines, metrics


def test_dead_reckoning_agrees_with_the_flat_frame_over_a_few_kilometres() -> None:
    """Great-circle CV and CTR (exact on the sphere: tests/test_baselines.py) against tracks drawn in the flat
    local frame: within a metre or a few over 4.5 / 6 km, the flat frame's own bending."""
    t = np.arange(30.0)
    line = np.column_stack(from_local(np.column_stack([150 * t, -40 * t]), LAT0, LON0))
    cv = constant_velocity(line[:10], 20)
    assert haversine_m(cv[:, 0], cv[:, 1], line[10:, 0], line[10:, 1]).max() < 1.0
    course = 0.3 + math.radians(4) * t
    circle_xy = np.cumsum(300 * np.column_stack([np.cos(course), np.sin(course)]), axis=0)
    circle = np.column_stack(from_local(circle_xy, LAT0, LON0))
    ctr = constant_turn_rate(circle[:10], 20)
    assert haversine_m(ctr[:, 0], ctr[:, 1], circle[10:, 0], circle[10:, 1]).max() < 5.0
    cv = constant_velocity(circle[:10], 20)
    assert haversine_m(cv[-1, 0], cv[-1, 1], circle[-1, 0], circle[-1, 1]) > 1000


def test_metrics_in_metres() -> None:
    truth = np.zeros((1, 2, 4))
    truth[..., 0], truth[..., 1] = LAT0, LON0
    metre = 180 / (math.pi * EARTH_RADIUS_M)  # one metre of latitude in degrees
    samples = np.repeat(truth[None], 2, axis=0).copy()
    samples[0, 0, :, 0] += np.array([10, 30]) * metre
    samples[1, 0, :, 0] -= np.array([20, 10]) * metre
    assert min_ade_m(samples, truth) == pytest.approx(15.0, rel=1e-6)  # sample 1: (20 + 10) / 2
    assert min_fde_m(samples, truth) == pytest.approx(10.0, rel=1e-6)
    assert ade_m(samples, truth) == pytest.approx((5 + 10) / 2, rel=1e-6)  # mean: (-5, +10)
    assert fde_m(samples, truth) == pytest.approx(10.0, rel=1e-6)
    with pytest.raises(ShapeError, match="lat, lon first"):
        ade_m(samples[0], truth)


# ------------------------------------------------------------------------------------------ guides


def _guided_setup(history: int = 10, horizon: int = 10) -> tuple[VesselEncoder, np.ndarray, dict]:
    episodes = load_ais(_episodes_on_circles())
    encoder = VesselEncoder(history, horizon).fit(episodes)
    t = np.arange(history + horizon, dtype=float) - (history - 1)
    lat, lon = from_local(np.column_stack([300 * t, 0 * t]), LAT0, LON0)  # due east at 5 m/s
    window = np.column_stack([lat, lon, 0 * t, 0 * t])
    tokens, frame = encoder.encode(window, history)
    return encoder, tokens, frame


def _positions(guides, tokens: np.ndarray, frame: dict) -> np.ndarray:  # noqa: ANN001
    b = guides.batch([frame], 1)
    return guides.to_common(torch.as_tensor(tokens)[None], b)[0].numpy(), b


def test_keep_out_step_moves_points_out_of_the_polygon() -> None:
    encoder, tokens, frame = _guided_setup()
    box = np.array([[1000, -500], [2000, -500], [2000, 500], [1000, 500]], dtype=float)  # metres east of origin
    lat, lon = from_local(box, LAT0, LON0)
    ring = np.column_stack([lon, lat])
    guides = vessel_guides(encoder, keep_out=[ring], margin_m=0.0, inner_steps=1)
    before = encoder.decode(tokens, frame)[10:, :2]
    assert violations(before, [ring]).sum() == 3  # 1200, 1500 and 1800 m east
    active = torch.zeros(1, 20, dtype=torch.bool)
    active[:, 10:] = True
    steered = guides(frames=[frame], samples=1)[0].steer(torch.as_tensor(tokens)[None], active)[0].numpy()
    after = encoder.decode(steered, frame)[10:, :2]
    assert violations(after, [ring], margin_m=-1.0).sum() == 0  # one unit step lands on the boundary
    np.testing.assert_allclose(steered[:10], tokens[:10])  # history untouched


def test_speed_turn_and_waypoint_costs_pull_the_right_way() -> None:
    encoder, tokens, frame = _guided_setup()
    guides = vessel_guides(encoder, max_speed_knots=5.0, waypoint=(LAT0 + 0.02, LON0), waypoint_weight=0.5)
    p, b = _positions(guides, tokens, frame)
    leaf = torch.as_tensor(p)[None].requires_grad_(True)
    (grad,) = torch.autograd.grad(guides.cost(leaf, b).sum(), leaf)
    grad = grad[0]
    assert (grad[10:, 0] > 0).all()  # 5 m/s = 9.7 knots is too fast: pull back (against +x)
    assert (grad[10:, 1] < 0).all()  # the waypoint lies north: descending the cost moves north
    assert grad[:9].abs().max() == 0  # observed rows carry no gradient
    turny = vessel_guides(encoder, max_turn_deg_per_min=1.0)
    bent = p.copy()
    bent[12:, 1] += 200.0 * np.arange(1, 9)  # a sharp turn to the north after step 2
    leaf = torch.as_tensor(bent)[None].requires_grad_(True)
    (grad,) = torch.autograd.grad(turny.cost(leaf, b).sum(), leaf)
    grad = grad[0]
    assert turny.cost(torch.as_tensor(p)[None], b).item() == pytest.approx(0.0, abs=1e-6)
    assert grad[12, 1] > 0  # descending pulls the point after the corner back south (toward the straight line)


def test_bound_cost_through_cost_gradient_moves_positions_by_the_metric_gradient() -> None:
    encoder, tokens, frame = _guided_setup()
    target = (LAT0 + 0.01, LON0)
    guides = vessel_guides(encoder, waypoint=target, waypoint_weight=0.5)
    cost = guides.bound_cost([frame], 1)
    x = torch.as_tensor(tokens)[None]
    grad = CostGradient(cost, scale=1.0)._cost_gradient(x)
    p, b = _positions(guides, tokens, frame)
    moved = guides.to_common(x - grad, b)[0].numpy()
    north = to_local(*target, b.lat_ref, b.lon_ref)[1]
    # the last point moves half-way to the waypoint's latitude, as the metric step would
    assert moved[-1, 1] - p[-1, 1] == pytest.approx(0.5 * (north - p[-1, 1]), rel=0.02)


def test_guide_options_are_checked() -> None:
    encoder, _, frame = _guided_setup()
    with pytest.raises(ConfigError, match="waypoint must be 'LAT,LON'"):
        vessel_guides(encoder, waypoint="north")
    with pytest.raises(ConfigError, match="latitude first"):
        vessel_guides(encoder, waypoint="140.6,-74.0")
    with pytest.raises(ConfigError, match="max_speed_knots must be greater than 0"):
        vessel_guides(encoder, max_speed_knots=-3)
    with pytest.raises(ConfigError, match="no guide given"):
        vessel_guides(encoder)
    with pytest.raises(ConfigError, match=r"unknown vessel guide option\(s\) \['fence'\]"):
        VesselDomain().make_guides(encoder, fence=1)
    with pytest.raises(ConfigError, match="--load-option keep_out=zones.geojson"):
        BindableCost("keep_out").bind([frame], [{}], 2)
    with pytest.raises(ConfigError, match="depends on each forecast"):
        BindableCost("waypoint")(torch.zeros(1, 20, 2))
    assert vessel_guides(encoder, waypoint="40.62,-74.05").waypoint == (40.62, -74.05)


# ------------------------------------------------------------------------------------------ plugin


def test_plugin_registers_the_domain_costs_and_cards() -> None:
    registry = Plugins(autoload=False)
    domain = registry.domain("vessel")
    assert isinstance(domain, VesselDomain) and registry.domain_plugin("vessel") == "vessel"
    assert {"keep_out", "max_speed", "max_turn", "waypoint"} <= set(registry.costs(domain))
    cards = registry.datasets()
    assert {"ais-nyharbor-hour", "ais-nyharbor-day", "ais-nyharbor-week"} <= set(cards)
    for card in plugin.trajdiff_datasets():
        assert isinstance(card, DatasetCard) and card.domain == "vessel" and card.licence == "BSD-2-Clause"
        assert "tracktable-data 1.7.3.1" in card.source and card.sha256 and card.columns
    assert domain.defaults().history == 30 and domain.defaults().horizon == 30


@needs_shared
def test_card_checksums_match_the_shared_files() -> None:
    for file, sha, _, columns in AIS_FILES.values():
        path = AIS / file
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha, file
        if file.endswith(".csv"):
            assert path.read_text().splitlines()[0].split(",") == columns


def test_endpoints_are_final_positions_in_metres() -> None:
    """Representative samples are chosen on where vessels end, in metres: at 60 degrees north 0.01 degrees of
    longitude is about half as far as 0.01 degrees of latitude, which k-means on raw degrees would miss."""
    futures = np.zeros((3, 5, 4))
    futures[..., 0], futures[..., 1] = 60.0, 10.0
    futures[1, -1, 1] += 0.01  # east
    futures[2, -1, 0] += 0.01  # north
    ends = VesselDomain().endpoints(futures, ["lat", "lon", "sog", "cog"])
    assert ends.shape == (3, 2)
    east, north = np.linalg.norm(ends[1] - ends[0]), np.linalg.norm(ends[2] - ends[0])
    assert east == pytest.approx(haversine_m(60.0, 10.0, 60.0, 10.01), rel=0.01)
    assert north == pytest.approx(haversine_m(60.0, 10.0, 60.01, 10.0), rel=0.01)
    assert east == pytest.approx(0.5 * north, rel=0.02)
