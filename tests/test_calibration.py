"""Calibration on held-out windows: closed-form cases for the two numbers it fits, the stored file, and
the command line round trip (calibrate, then forecast and evaluate apply it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from trajdiff import api
from trajdiff.cli import app
from trajdiff.core.calibration import Calibration, coverage, fit_calibration
from trajdiff.errors import CheckpointError, ConfigError, ShapeError


def _case(seed: int = 0, windows: int = 400, samples: int = 200):
    """Truth = base + N(0, 1); the model's samples are centred on base + bias with spread 0.5."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((windows, 8, 2))
    truth = base + rng.standard_normal(base.shape)
    bias = 0.8 * rng.standard_normal(base.shape)  # a learned residual that does not carry over
    samples_ = base + bias + 0.5 * rng.standard_normal((samples, *base.shape))
    return samples_, truth, base


def test_a_centre_that_does_not_help_is_pulled_to_the_base_and_the_spread_widened() -> None:
    samples, truth, base = _case()
    fitted = fit_calibration(samples, truth, base, level=0.9)
    assert fitted.median_weight == 0.0
    # truth - base ~ N(0, 1), samples around base with sd 0.5: the 90% interval needs twice the spread
    assert 1.85 < fitted.spread_factor < 2.15
    fresh, fresh_truth, fresh_base = _case(seed=1)
    calibrated = fitted.apply(fresh, fresh_base)
    assert np.allclose(np.median(calibrated, axis=0), fresh_base)
    assert abs(coverage(calibrated, fresh_truth, 0.9) - 0.9) < 0.02
    assert coverage(fresh, fresh_truth, 0.9) < 0.6
    # a centre that is right is kept
    good = truth + 0.0 * base + 0.3 * np.random.default_rng(2).standard_normal((50, *truth.shape))
    assert fit_calibration(good, truth, base).median_weight == 1.0
    assert fit_calibration(samples, truth, base, spread=False).spread_factor == 1.0
    assert fit_calibration(samples, truth).median_weight == 1.0  # no base: only the spread


def test_calibration_errors_and_files(tmp_path: Path) -> None:
    samples, truth, base = _case(windows=20, samples=10)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        fit_calibration(samples, truth, base, level=90)
    with pytest.raises(ShapeError, match="do not match"):
        fit_calibration(samples, truth[:5], base)
    with pytest.raises(ConfigError, match="at least 2 samples"):
        fit_calibration(samples[:1], truth, base)
    with pytest.raises(ShapeError, match="needs the base forecast"):
        Calibration(median_weight=0.5).apply(samples)
    assert Calibration.load(tmp_path) is None
    Calibration(0.3, 1.5, 0.8, 20, "val.csv").save(tmp_path)
    assert Calibration.load(tmp_path) == Calibration(0.3, 1.5, 0.8, 20, "val.csv")
    (tmp_path / "calibration.json").write_text('{"weight": 1}')
    with pytest.raises(CheckpointError, match="calibrate again"):
        Calibration.load(tmp_path)


def _series(path: Path, start: int, rows: int) -> Path:
    rng = np.random.default_rng(start)
    t = np.arange(start, start + rows)
    values = np.stack([np.sin(2 * np.pi * t / 24), np.cos(2 * np.pi * t / 48)], axis=1)
    frame = pd.DataFrame(values + 0.3 * rng.standard_normal(values.shape), columns=["a", "b"])
    frame.insert(0, "time", pd.date_range("2020-01-01", periods=rows, freq="h") + pd.Timedelta(hours=int(start)))
    frame.to_csv(path, index=False)
    return path


def test_calibrate_then_forecast_and_evaluate_apply_it(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    train, held_out = _series(tmp_path / "train.csv", 0, 1000), _series(tmp_path / "val.csv", 1000, 400)
    model = tmp_path / "model"
    api.train("timeseries", train, model, steps=60, history=16, horizon=16, batch_size=64, progress=False,
              network={"kind": "transformer", "width": 32, "depth": 2, "heads": 2}, encoder={"patch": 4})
    runner = CliRunner()
    result = runner.invoke(app, ["calibrate", "--model", str(model), "--data", str(held_out), "--samples", "8",
                                 "--nfe", "4", "--stride", "4", "--level", "0.8"])
    assert result.exit_code == 0, result.output
    stored = json.loads((model / "calibration.json").read_text())
    assert stored["level"] == 0.8 and stored["windows"] == (400 - 32) // 4 + 1
    assert "interval coverage" in result.output and "median weight" in result.output
    line = next(x for x in result.output.splitlines() if "coverage" in x)
    assert abs(float(line.split("->")[1]) - 0.8) < 0.03  # the fitted spread covers 80% of the held-out values

    loaded = api.load_model(model)
    assert loaded.calibration is not None and loaded.calibration.spread_factor == stored["spread_factor"]
    calibrated = api.forecast(model, held_out, samples=8, nfe=4, seed=3)
    raw = api.forecast(model, held_out, samples=8, nfe=4, seed=3, calibrated=False)
    entity = next(iter(raw.samples))
    expected = loaded.calibration.apply(raw.samples[entity][:, None], _base_of(loaded, held_out))[:, 0]
    np.testing.assert_allclose(calibrated.samples[entity], expected, atol=1e-6)
    assert not np.allclose(calibrated.samples[entity], raw.samples[entity], atol=1e-3)

    scores = tmp_path / "scores.json"
    result = runner.invoke(app, ["evaluate", "--model", str(model), "--data", str(held_out), "--samples", "8",
                                 "--nfe", "4", "--out", str(scores)])
    assert result.exit_code == 0 and "calibrated (median weight" in result.output, result.output
    assert json.loads(scores.read_text())["calibration"]["level"] == 0.8
    result = runner.invoke(app, ["evaluate", "--model", str(model), "--data", str(held_out), "--samples", "8",
                                 "--nfe", "4", "--out", str(scores), "--uncalibrated"])
    assert result.exit_code == 0 and "calibrated" not in result.output
    assert json.loads(scores.read_text())["calibration"] is None

    short = _series(tmp_path / "short.csv", 0, 40)
    result = runner.invoke(app, ["calibrate", "--model", str(model), "--data", str(short)])
    assert result.exit_code != 0 and "at least 10 held-out windows" in result.output


def _base_of(loaded, data: Path) -> np.ndarray:
    """The encoder's base forecast for the last window of ``data`` (what `forecast` forecasts): [1, H, F]."""
    episodes = loaded.domain.load(data)
    rows = episodes.sequences[0][-16:]
    window = np.concatenate([rows, np.repeat(rows[-1:], 16, axis=0)])
    _, frame = loaded.encoder.encode(window, 16)
    return loaded.encoder.base(frame)[None]
