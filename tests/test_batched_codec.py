"""Encoding and decoding many windows in one pass gives what one window at a time gives: the vessel and traffic
encoders' `encode_histories` / `decode_windows` against `encode_history` / `decode`, and the contract's defaults."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trajdiff.errors import ShapeError
from trajdiff.plugins.traffic.encoder import TrackEncoder
from trajdiff.plugins.traffic.loader import load_tracks
from trajdiff.plugins.vessel.encoder import VesselEncoder
from trajdiff.plugins.vessel.geo import from_local
from trajdiff.plugins.vessel.loader import derive_motion, load_ais


def _vessels(n: int = 10, length: int = 40) -> pd.DataFrame:
    """Vessels on arcs (one moored: its frame is not turned), one report a minute."""
    rng = np.random.default_rng(1)
    frames = []
    for v in range(n):
        speed = 0.0 if v == 0 else rng.uniform(100, 480)
        course = rng.uniform(0, 2 * math.pi) + math.radians(rng.uniform(-6, 6)) * np.arange(length)
        xy = np.cumsum(speed * np.column_stack([np.cos(course), np.sin(course)]), axis=0)
        lat, lon = from_local(xy, 40.6 + 0.05 * v, -74.0 - 0.03 * v)
        frames.append(pd.DataFrame({"BaseDateTime": pd.date_range("2020-06-30", periods=length, freq="1min"),
                                    "MMSI": 366000000 + v, "LAT": lat, "LON": lon}))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("options", [{"patch": 5}, {"patch": 5, "place": True}, {"velocity_steps": 3},
                                     {"rotate": False, "residual": False}])
def test_vessel_windows_in_one_pass_equal_one_at_a_time(options: dict) -> None:
    episodes = load_ais(_vessels())
    encoder = VesselEncoder(10, 10, **options).fit(episodes)
    histories = [sequence[5:15] for sequence in episodes.sequences]
    tokens, frames = encoder.encode_histories(histories, 10)
    for j, history in enumerate(histories):
        one, frame = encoder.encode_history(history, 10)
        np.testing.assert_allclose(tokens[j], one, rtol=1e-6, atol=1e-6)
        assert frames[j]["lat0"] == frame["lat0"] and frames[j]["lon0"] == frame["lon0"]
        assert frames[j]["theta"] == pytest.approx(frame["theta"], abs=1e-12)
        np.testing.assert_allclose(frames[j]["velocity"], frame["velocity"], atol=1e-9)
    assert frames[0]["theta"] == 0.0  # the moored vessel
    drawn = np.random.default_rng(0).normal(size=(3, len(frames), *tokens.shape[1:])).astype(np.float32)
    alone = np.stack([encoder.decode(drawn[:, j], frames[j]) for j in range(len(frames))], axis=1)
    for start in (0, 1, 9, 10, 15):  # the future only (from row 10), or from any row
        np.testing.assert_allclose(encoder.decode_windows(drawn, frames, start=start), alone[:, :, start:], rtol=0,
                                   atol=1e-9)
    with pytest.raises(ShapeError, match="decode_windows expects"):
        encoder.decode_windows(drawn[:, :2], frames)


def test_vessel_histories_of_other_lengths_go_one_by_one() -> None:
    episodes = load_ais(_vessels(3))
    encoder = VesselEncoder(10, 10).fit(episodes)
    with pytest.raises(ShapeError, match="10 observed"):  # what encode_history says of a short history
        encoder.encode_histories([episodes.sequences[0][:10], episodes.sequences[1][:8]], 10)


def test_derived_speed_and_course_of_a_known_track() -> None:
    """Due north at 10 knots, then due east at 5 knots, one row a minute."""
    north = 10 * 1852 / 60  # metres a minute
    xy = np.array([[0.0, 0.0], [0.0, north], [0.0, 2 * north], [north / 2, 2 * north]])
    lat, lon = from_local(xy, 40.0, -74.0)
    speed, course = derive_motion(lat, lon, 60.0)
    np.testing.assert_allclose(speed, [10, 10, 10, 5], rtol=2e-3)
    np.testing.assert_allclose(course, [0, 0, 0, 90], atol=0.05)
    assert (course >= 0).all() and not np.signbit(course).any()


def test_traffic_windows_decode_in_one_pass(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    lines = [f"{i * 10}\t{a}\t{x + 0.4 * i * math.cos(h):.5f}\t{y + 0.4 * i * math.sin(h):.5f}"
             for a, (x, y, h) in enumerate(rng.uniform(-5, 5, (4, 3))) for i in range(24)]
    (tmp_path / "scene.txt").write_text("\n".join(sorted(lines, key=lambda s: int(s.split()[0]))) + "\n")
    episodes = load_tracks(tmp_path / "scene.txt", neighbours=2)
    encoder = TrackEncoder(history=8, horizon=12).fit(episodes)
    histories = [sequence[:8] for sequence in episodes.sequences]
    tokens, frames = encoder.encode_histories(histories, 12)  # the contract's default: one by one
    assert tokens.shape == (len(histories), 20, encoder.dim)
    drawn = rng.normal(size=(2, len(frames), 20, encoder.dim))
    together = encoder.decode_windows(drawn, frames)
    alone = np.stack([encoder.decode(drawn[:, j], frames[j]) for j in range(len(frames))], axis=1)
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-9)
    assert np.isnan(together[:, :, 8:, 2:]).all()
    for start in (3, 8, 12):
        np.testing.assert_allclose(encoder.decode_windows(drawn, frames, start=start), alone[:, :, start:], rtol=0,
                                   atol=1e-9)
    default = super(TrackEncoder, encoder).decode_windows(drawn, frames, start=8)  # the contract's own version
    np.testing.assert_allclose(default, alone[:, :, 8:], rtol=0, atol=1e-9)
    with pytest.raises(ShapeError, match="expected tokens"):
        encoder.decode_windows(drawn[..., :3], frames)
