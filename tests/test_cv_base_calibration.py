"""Constant velocity as the declared base of the vessel and pedestrian encoders, and calibration against it:
the base is what the model's zero residual decodes to, columns the base leaves NaN are left as drawn, and
`trajdiff calibrate` on a port where vessels sail straight learns to trust constant velocity over a model
trained on turning vessels."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from trajdiff import api
from trajdiff.cli import app
from trajdiff.core.calibration import Calibration, fit_calibration
from trajdiff.plugins.traffic.encoder import TrackEncoder
from trajdiff.plugins.vessel import VesselDomain, constant_velocity
from trajdiff.plugins.vessel.geo import from_local, haversine_m
from trajdiff.plugins.vessel.metrics import fde_m, geometric_median

SMALL = {"kind": "transformer", "dim": None, "width": 16, "depth": 1, "heads": 2}


def _vessels(n: int, length: int, seed: int, turn_deg: float) -> pd.DataFrame:
    """Vessels at 4 to 8 m/s turning ``turn_deg`` degrees a minute (either way; 0: straight lines)."""
    rng = np.random.default_rng(seed)
    frames = []
    for v in range(n):
        speed, rate = rng.uniform(240, 480), math.radians(turn_deg) * rng.choice([-1, 1])
        course = rng.uniform(0, 2 * math.pi) + rate * np.arange(length)
        xy = np.cumsum(speed * np.column_stack([np.cos(course), np.sin(course)]), axis=0)
        lat, lon = from_local(xy, 40.6 + 0.1 * (v % 5), -74.0 + 0.1 * (v // 5))
        frames.append(pd.DataFrame({"BaseDateTime": pd.date_range("2020-06-30", periods=length, freq="1min"),
                                    "MMSI": 366000000 + 1000 * seed + v, "LAT": lat, "LON": lon}))
    return pd.concat(frames, ignore_index=True)


def test_vessel_base_is_the_decoded_zero_residual_and_constant_velocity() -> None:
    domain = VesselDomain()
    episodes = domain.load(_vessels(6, 40, seed=0, turn_deg=5))
    encoder = domain.make_encoder(history=10, horizon=10, patch=5).fit(episodes)
    window = episodes.sequences[0][:20]
    tokens, frame = encoder.encode(window, 10)
    base = encoder.base(frame)
    assert base.shape == (10, 4) and np.isnan(base[:, 2:]).all()
    zero = tokens.copy()
    zero[2:] = encoder._tokens(-encoder.mean[10:] / encoder.std[10:])  # future residual 0 in token units
    decoded = encoder.decode(zero, frame)[10:, :2]
    assert haversine_m(base[:, 0], base[:, 1], decoded[:, 0], decoded[:, 1]).max() < 1e-3
    great_circle = constant_velocity(window[:10], 10)
    assert haversine_m(base[:, 0], base[:, 1], great_circle[:, 0], great_circle[:, 1]).max() < 5.0  # m in 3 km
    assert domain.make_encoder(history=10, horizon=10, residual=False).fit(episodes).base(frame) is None


def test_pedestrian_base_is_the_decoded_zero_residual() -> None:
    encoder = TrackEncoder(history=4, horizon=3)
    encoder.neighbours, encoder.scales = 0, {"history": [1.5, 0.5], "future": [0.7, 0.2], "neighbour": []}
    t = np.arange(7.0)
    window = np.column_stack([2.0 + 0.3 * t + 0.02 * t**2, -1.0 + 0.4 * t])
    tokens, frame = encoder.encode(window, 4)
    zero = tokens.copy()
    zero[4:] = 0.0
    assert np.allclose(encoder.base(frame), encoder.decode(zero, frame)[4:])
    # the last observed step, carried on
    assert np.allclose(encoder.base(frame)[0], window[3] + (window[3] - window[2]))
    assert TrackEncoder(history=4, horizon=3, residual="none").base({**frame, "cv": False}) is None


def test_columns_without_a_base_are_left_as_drawn_and_not_fitted_on() -> None:
    rng = np.random.default_rng(0)
    base = np.zeros((200, 5, 2))
    truth = base + rng.standard_normal(base.shape)
    samples = base + 2.0 + 0.5 * rng.standard_normal((30, *base.shape))  # a centre 2 off: trust the base
    samples[..., 1] = truth[..., 1] + 0.01 * rng.standard_normal((30, *base.shape[:-1]))  # a column right as drawn
    partial = base.copy()
    partial[..., 1] = np.nan
    fitted = fit_calibration(samples, truth, partial)
    assert fitted.median_weight == 0.0
    only_first = fit_calibration(samples[..., :1], truth[..., :1], base[..., :1])
    assert math.isclose(fitted.spread_factor, only_first.spread_factor)  # column 1 does not enter the fit
    assert fitted.windows == 200
    out = fitted.apply(samples, partial)
    assert np.array_equal(out[..., 1], samples[..., 1])
    assert np.allclose(np.median(out[..., 0], axis=0), 0.0)
    assert np.array_equal(Calibration(0.5, 2.0).apply(samples, np.full(base.shape, np.nan)), samples)


def test_calibrate_trusts_constant_velocity_where_vessels_sail_straight(tmp_path: Path) -> None:
    model = tmp_path / "turning"
    api.train("vessel", _vessels(12, 40, seed=1, turn_deg=8), model, steps=60, history=10, horizon=10,
              batch_size=32, network=SMALL, encoder={"patch": 5}, progress=False)
    straight = tmp_path / "straight.csv"
    _vessels(12, 40, seed=2, turn_deg=0).to_csv(straight, index=False)
    result = CliRunner().invoke(app, ["calibrate", "--model", str(model), "--data", str(straight), "--samples", "8",
                                      "--stride", "10", "--nfe", "4"])
    assert result.exit_code == 0, result.output
    stored = json.loads((model / "calibration.json").read_text())
    assert stored["median_weight"] == 0.0  # constant velocity is exact here; the turning model is not
    scores = api.evaluate(model, straight, samples=8, stride=10, nfe=4)
    raw = api.evaluate(model, straight, samples=8, stride=10, nfe=4, calibrated=False)
    assert scores["metrics"]["fde_m"] < 0.5 * raw["metrics"]["fde_m"]
    assert scores["baselines"]["constant_velocity"]["fde_m"] < 1.0  # evaluate scores the baseline beside it


def test_vessel_point_forecast_is_the_geometric_median() -> None:
    metre = 180 / (math.pi * 6_371_008.8)  # one metre of latitude in degrees
    truth = np.zeros((1, 1, 4))
    truth[..., 0], truth[..., 1] = 40.6, -74.0
    samples = np.repeat(truth[None], 3, axis=0)
    samples[:, 0, 0, 0] += np.array([0.0, 10.0, 100.0]) * metre  # on a line: the median is the middle one
    assert np.allclose(geometric_median(samples), samples[1, :, :, :2], atol=1e-3 * metre)
    assert fde_m(samples, truth) == pytest.approx(10.0, abs=0.01)  # the mean would be 36.7 m off
    triangle = np.repeat(truth[None], 3, axis=0)  # an equilateral triangle of side 1 km: its centre
    for k, angle in enumerate((90.0, 210.0, 330.0)):
        xy = np.array([[577.35 * math.cos(math.radians(angle)), 577.35 * math.sin(math.radians(angle))]])
        triangle[k, 0, 0, :2] = np.concatenate(from_local(xy, 40.6, -74.0))
    centre = geometric_median(triangle)[0, 0]
    assert haversine_m(centre[0], centre[1], 40.6, -74.0) < 0.5


def _walkers(agents: int, frames: int, seed: int, turn: float) -> str:
    """Pedestrians at constant speed turning ``turn`` radians a frame (either way), as a track file."""
    rng = np.random.default_rng(seed)
    lines = []
    for a in range(agents):
        heading, rate, speed = rng.uniform(-math.pi, math.pi), turn * rng.choice([-1, 1]), rng.uniform(0.3, 0.6)
        x, y = rng.uniform(-10, 10, 2)
        for i in range(frames):
            lines.append((i, f"{i * 10}\t{a}\t{x:.5f}\t{y:.5f}"))
            heading += rate
            x, y = x + speed * math.cos(heading), y + speed * math.sin(heading)
    return "\n".join(line for _, line in sorted(lines)) + "\n"


def test_calibrate_pedestrians_against_constant_velocity(tmp_path: Path) -> None:
    (tmp_path / "turning.txt").write_text(_walkers(16, 40, seed=1, turn=0.2))
    (tmp_path / "straight.txt").write_text(_walkers(8, 40, seed=2, turn=0.0))
    model = tmp_path / "model"
    api.train("traffic", tmp_path / "turning.txt", model, steps=60, batch_size=16, progress=False,
              network=SMALL, load_options={"neighbours": 0})
    result = CliRunner().invoke(app, ["calibrate", "--model", str(model), "--data", str(tmp_path / "straight.txt"),
                                      "--samples", "6", "--nfe", "4", "--stride", "4", "--load-option", "neighbours=0"])
    assert result.exit_code == 0, result.output
    assert json.loads((model / "calibration.json").read_text())["median_weight"] == 0.0
    options = {"samples": 6, "nfe": 4, "stride": 4, "load_options": {"neighbours": 0}}
    calibrated = api.evaluate(model, tmp_path / "straight.txt", **options)
    raw = api.evaluate(model, tmp_path / "straight.txt", calibrated=False, **options)
    assert calibrated["metrics"]["fde_mean"] < 0.5 * raw["metrics"]["fde_mean"]
