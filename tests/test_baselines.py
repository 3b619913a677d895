"""Each domain's baselines on motion they forecast exactly (closed form), and how `evaluate` compares a model
with them (scores, ratios, warnings, skipped baselines, the printed table)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from trajdiff.api.baselines import compare_baselines, comparison_table
from trajdiff.core.data import Episodes
from trajdiff.plugins.motion.baselines import constant_velocity as motion_cv
from trajdiff.plugins.motion.baselines import zero_velocity
from trajdiff.plugins.spec import BaselineContext, Domain, Encoder, ModelDefaults
from trajdiff.plugins.timeseries.baselines import SeasonalNaive, infer_season, last_value, linear_base
from trajdiff.plugins.timeseries.encoder import SeriesEncoder
from trajdiff.plugins.traffic.baselines import constant_velocity as traffic_cv
from trajdiff.plugins.vessel.baselines import constant_turn_rate, constant_velocity, ctr_baseline, cv_baseline
from trajdiff.plugins.vessel.geo import EARTH_RADIUS_M, from_local, from_unit, haversine_m, to_local, to_unit

NONE = BaselineContext()

# ------------------------------------------------------------------------------------------ timeseries


def _hourly(rows: int) -> np.ndarray:
    return pd.date_range("2021-03-01", periods=rows, freq="h").to_numpy()


def test_last_value_and_seasonal_naive_are_exact_on_constant_and_periodic_series() -> None:
    t = np.arange(48 + 30)
    periodic = np.stack([np.sin(2 * np.pi * t / 24), np.cos(2 * np.pi * t / 8) + 3.0], axis=1)  # period 24 rows
    history, future = periodic[None, :48], periodic[None, 48:]
    context = BaselineContext(columns=["a", "b"], times=[_hourly(48)])
    np.testing.assert_allclose(SeasonalNaive()(history, 30, context), future, atol=1e-12)  # horizon > season
    assert not np.allclose(SeasonalNaive(season=12)(history, 30, NONE), future, atol=0.1)
    flat = np.full((2, 10, 3), 7.5)
    np.testing.assert_array_equal(last_value(flat, 4, NONE), np.full((2, 4, 3), 7.5))
    assert last_value(np.zeros((2, 0, 3)), 4, NONE) is None
    # the season comes from the time stamps; without them, or longer than the history, it does not apply
    assert SeasonalNaive()(history, 30, NONE) is None
    assert SeasonalNaive()(history[:, -20:], 30, BaselineContext(times=[_hourly(20)])) is None


def test_the_season_is_read_from_the_time_step() -> None:
    stamps = {"h": 24, "15min": 96, "D": 7, "W": 52, "MS": 12, "QS": 4}
    for freq, season in stamps.items():
        assert infer_season(pd.date_range("2020-01-01", periods=6, freq=freq).to_numpy()) == season, freq
    assert infer_season(pd.date_range("2020-01-01", periods=6, freq="7h").to_numpy()) is None  # 24 / 7
    assert infer_season(np.arange(6.0)) is None and infer_season(_hourly(1)) is None


def test_linear_base_is_the_encoders_own_forecast() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(600)
    values = np.stack([np.sin(t / 5.0), 0.01 * t], axis=1) + 0.1 * rng.standard_normal((600, 2))
    episodes = Episodes(sequences=[values], columns=["a", "b"], ids=["s"], meta=[{}])
    encoder = SeriesEncoder(residual="linear", history=24, horizon=12).fit(episodes)
    windows = [values[s:s + 36] for s in (100, 300)]
    frames = [encoder.encode(w, 24)[1] for w in windows]
    context = BaselineContext(columns=["a", "b"], encoder=encoder, frames=frames)
    forecast = linear_base(np.stack([w[:24] for w in windows]), 12, context)
    assert forecast is not None and forecast.shape == (2, 12, 2)
    for j, frame in enumerate(frames):
        np.testing.assert_allclose(forecast[j], encoder.base(frame))
        # the base is a ridge forecast of the standardized history: close to the truth on this smooth series
        assert np.abs(forecast[j] - windows[j][24:]).mean() < 0.3
    plain = SeriesEncoder().fit(episodes)
    assert linear_base(np.stack([w[:24] for w in windows]), 12,
                       BaselineContext(encoder=plain, frames=[plain.encode(w, 24)[1] for w in windows])) is None
    assert linear_base(np.stack([w[:24] for w in windows]), 12, NONE) is None


# ------------------------------------------------------------------------------------------ vessel


def _tangent(lat: float, lon: float, course: float) -> np.ndarray:
    """Unit vector along the surface at (lat, lon) pointing to bearing ``course`` (radians from north)."""
    p, la = math.radians(lat), math.radians(lon)
    east = np.array([-math.sin(la), math.cos(la), 0.0])
    north = np.array([-math.sin(p) * math.cos(la), -math.sin(p) * math.sin(la), math.cos(p)])
    return math.sin(course) * east + math.cos(course) * north


def _great_circle(lat: float, lon: float, course: float, step_m: float, rows: int) -> np.ndarray:
    """Rows of (lat, lon) equally spaced along the great circle leaving (lat, lon) with ``course``."""
    angle = step_m / EARTH_RADIUS_M * np.arange(rows)[:, None]
    points = to_unit(lat, lon) * np.cos(angle) + _tangent(lat, lon, course) * np.sin(angle)
    return np.column_stack(from_unit(points))


def _small_circle(lat: float, lon: float, radius_m: float, step_deg: float, rows: int) -> np.ndarray:
    """Rows of (lat, lon) equally spaced on the circle of geodesic radius ``radius_m`` around (lat, lon): a
    vessel turning at a constant rate (the start point rotated about the centre's axis, Rodrigues' formula)."""
    centre, rho = to_unit(lat, lon), radius_m / EARTH_RADIUS_M
    start = centre * math.cos(rho) + _tangent(lat, lon, 0.7) * math.sin(rho)
    theta = np.radians(step_deg) * np.arange(rows)[:, None]
    points = (start * np.cos(theta) + np.cross(centre, start) * np.sin(theta)
              + centre * (centre @ start) * (1 - np.cos(theta)))
    return np.column_stack(from_unit(points))


@pytest.mark.parametrize("lat", [40.6, 71.0, -55.0])
def test_constant_velocity_continues_a_great_circle_exactly(lat: float) -> None:
    track = _great_circle(lat, -74.05, 0.9, 600.0, 40)  # 600 m a step (about 20 knots a minute), 18 km ahead
    cv = constant_velocity(track[:10], 30)
    assert haversine_m(cv[:, 0], cv[:, 1], track[10:, 0], track[10:, 1]).max() < 1e-3
    straight = constant_turn_rate(track[:10], 30)  # no course change: CTR is CV
    assert haversine_m(straight[:, 0], straight[:, 1], track[10:, 0], track[10:, 1]).max() < 1e-3
    if lat > 70:  # what a flat frame around the last position makes of it: a straight line that is not one
        xy = to_local(track[:10, 0], track[:10, 1], track[9, 0], track[9, 1])
        flat = np.column_stack(from_local(np.arange(1, 31)[:, None] * (xy[-1] - xy[-2]), track[9, 0], track[9, 1]))
        assert haversine_m(flat[-1, 0], flat[-1, 1], track[-1, 0], track[-1, 1]) > 50


@pytest.mark.parametrize("lat, step", [(40.6, 4.0), (68.0, -7.0)])
def test_constant_turn_rate_continues_a_circle_exactly(lat: float, step: float) -> None:
    circle = _small_circle(lat, 12.0, 4000.0, step, 40)
    ctr = constant_turn_rate(circle[:10], 30)
    assert haversine_m(ctr[:, 0], ctr[:, 1], circle[10:, 0], circle[10:, 1]).max() < 1e-3
    cv = constant_velocity(circle[:10], 30)
    assert haversine_m(cv[-1, 0], cv[-1, 1], circle[-1, 0], circle[-1, 1]) > 1000
    batch = ctr_baseline(np.stack([np.column_stack([circle[:10], np.zeros((10, 2))])] * 2), 30,
                         BaselineContext(columns=["lat", "lon", "sog", "cog"]))
    assert batch is not None and batch.shape == (2, 30, 4)
    np.testing.assert_allclose(batch[1, :, :2], ctr, atol=1e-12)


def test_vessel_baselines_fill_speed_and_course_and_need_two_rows() -> None:
    track = _great_circle(40.6, -74.05, math.pi / 2, 300.0, 12)  # due east, 300 m a minute
    rows = np.column_stack([track, np.zeros((12, 2))])[None, :10]
    times = [pd.date_range("2020-06-30", periods=10, freq="1min").to_numpy()]
    out = cv_baseline(rows, 2, BaselineContext(columns=["lat", "lon", "sog", "cog"], times=times))
    assert out is not None
    np.testing.assert_allclose(out[0, :, 2], 300.0 / 60.0 / (1852.0 / 3600.0), rtol=1e-3)  # knots
    np.testing.assert_allclose(out[0, :, 3], 90.0, atol=0.05)  # degrees, due east
    assert cv_baseline(rows[:, :1], 2, NONE) is None and ctr_baseline(rows[:, :1], 2, NONE) is None


# ------------------------------------------------------------------------------------ traffic, motion


def test_traffic_constant_velocity_is_exact_on_a_straight_walk() -> None:
    t = np.arange(20.0)[:, None]
    walk = np.concatenate([np.hstack([1.0 + 0.4 * t, -2.0 + 0.1 * t]), np.ones((20, 5))], axis=1)
    forecast = traffic_cv(np.stack([walk[:8], walk[:8] * 2]), 12, NONE)
    assert forecast is not None and forecast.shape == (2, 12, 7)
    np.testing.assert_allclose(forecast[0, :, :2], walk[8:, :2], atol=1e-12)
    np.testing.assert_allclose(forecast[1, :, :2], 2 * walk[8:, :2], atol=1e-12)
    assert np.isnan(forecast[..., 2:]).all()  # neighbour columns are not forecast
    assert traffic_cv(walk[None, :1], 12, NONE) is None


def test_motion_zero_and_constant_velocity_are_exact_on_their_own_motion() -> None:
    rng = np.random.default_rng(1)
    pose, velocity = rng.standard_normal(9), 0.01 * rng.standard_normal(9)  # 3 joints
    t = np.arange(40.0)[:, None]
    moving, still = pose + velocity * t, np.repeat(pose[None], 40, axis=0)
    np.testing.assert_allclose(motion_cv(moving[None, :30], 10, NONE)[0], moving[30:], atol=1e-12)
    np.testing.assert_array_equal(zero_velocity(still[None, :30], 10, NONE)[0], still[30:])
    assert not np.allclose(zero_velocity(moving[None, :30], 10, NONE)[0], moving[30:])
    assert motion_cv(moving[None, :1], 10, NONE) is None


# ------------------------------------------------------------------------------- evaluate's comparison


class _Toy(Domain):
    """A domain with one error metric, one best-of metric and baselines that work, fail or do not apply."""

    name = "toy"

    def __init__(self, baselines: dict[str, Any], point: list[str]) -> None:
        self._baselines, self._point = baselines, point

    def load(self, source: Any, **options: Any) -> Episodes:
        raise NotImplementedError

    def make_encoder(self, **options: Any) -> Encoder:
        raise NotImplementedError

    def encoder_from_state(self, state: dict[str, Any]) -> Encoder:
        raise NotImplementedError

    def defaults(self) -> ModelDefaults:
        return ModelDefaults(history=2, horizon=2, network={})

    def metrics(self) -> dict[str, Any]:
        return {"mae": lambda s, t: float(np.abs(s.mean(0) - t).mean()),
                "best": lambda s, t: float(np.abs(s - t[None]).mean(axis=(2, 3)).min(0).mean()),
                "spread": lambda s, t: float(s.std(0, ddof=1).mean())}  # NaN (and a warning) for one sample

    def baselines(self) -> dict[str, Any]:
        return self._baselines

    def point_metrics(self) -> list[str]:
        return self._point


def _fails(history: np.ndarray, horizon: int, context: BaselineContext) -> np.ndarray:
    raise RuntimeError("boom")


def test_compare_baselines_scores_ratios_warnings_and_skips() -> None:
    history, truth = np.zeros((3, 2, 1)), np.ones((3, 2, 1))
    baselines = {"zero": lambda h, n, c: np.zeros((len(h), n, 1)),  # error 1
                 "near": lambda h, n, c: np.full((len(h), n, 1), 0.9),  # error 0.1
                 "absent": lambda h, n, c: None, "broken": _fails, "wrong": lambda h, n, c: np.zeros((3, 2))}
    model = {"mae": 0.2, "best": 0.05, "spread": 0.3}
    out = compare_baselines(_Toy(baselines, ["mae"]), history, truth, NONE, model)
    assert set(out["baselines"]) == {"zero", "near"}
    assert out["baselines"]["zero"] == {"mae": 1.0, "best": 1.0, "spread": None}  # NaN is reported as None
    assert out["ratios"]["zero"] == {"mae": pytest.approx(0.2)} and out["ratios"]["near"]["mae"] == pytest.approx(2.0)
    assert out["main_metric"] == "mae" and out["point_metrics"] == ["mae"]
    assert out["warnings"] == ["the model is 100% worse than near on mae"]
    assert out["baselines_skipped"]["absent"] == "does not apply to these windows"
    assert "RuntimeError: boom" in out["baselines_skipped"]["broken"]
    assert "expected (3, 2, 1)" in out["baselines_skipped"]["wrong"]
    # a domain without point metrics: ratios on every metric, main = the first, and no warnings
    plain = compare_baselines(_Toy(baselines, []), history, truth, NONE, model)
    assert plain["main_metric"] == "mae" and set(plain["ratios"]["near"]) == {"mae", "best", "spread"}
    assert plain["warnings"] == [] and plain["ratios"]["near"]["spread"] is None


def test_the_table_has_a_row_per_baseline_and_nothing_without_baselines() -> None:
    history, truth = np.zeros((3, 2, 1)), np.ones((3, 2, 1))
    model = {"mae": 0.2, "best": 0.05, "spread": 0.3}
    compared = compare_baselines(_Toy({"near": lambda h, n, c: np.full((len(h), n, 1), 0.9)}, ["mae"]),
                                 history, truth, NONE, model)
    lines = comparison_table({"metrics": model, **compared})
    assert lines[0].split() == ["mae", "best", "spread", "model/baseline", "mae"]
    assert lines[1].split() == ["model", "0.2000", "0.0500", "0.3000"]
    assert lines[2].split() == ["near", "0.1000", "0.1000", "-", "2.000"]
    assert lines[-1] == "warning: the model is 100% worse than near on mae"
    empty = compare_baselines(_Toy({}, ["mae"]), history, truth, NONE, model)
    assert empty["baselines"] == {} and comparison_table({"metrics": model, **empty}) == []


def test_every_builtin_domain_declares_point_metrics_it_has() -> None:
    from trajdiff.plugins.manager import Plugins

    plugins = Plugins(autoload=False)
    expected = {"timeseries": {"last_value", "seasonal_naive", "linear_base"},
                "vessel": {"constant_velocity", "constant_turn_rate"}, "traffic": {"constant_velocity"},
                "motion": {"zero_velocity", "constant_velocity"}, "rl": set()}
    for name, baselines in expected.items():
        try:
            domain = plugins.domain(name)
        except Exception:  # an optional domain whose extra is not installed
            assert name in ("motion", "rl"), name
            continue
        assert set(domain.baselines()) == baselines, name
        assert set(domain.point_metrics()) <= set(domain.metrics()), name
        assert bool(domain.point_metrics()) == bool(baselines), name
