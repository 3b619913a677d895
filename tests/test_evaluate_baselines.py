"""`trajdiff evaluate` prints each domain's baselines beside the model on the windows the model was scored on:
the numbers equal an independent computation on those windows, ratios and warnings follow from them, and a
domain without baselines prints no table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from trajdiff import api
from trajdiff.cli import app
from trajdiff.plugins.timeseries.domain import TimeSeriesDomain

TINY = {"kind": "transformer", "width": 32, "depth": 2, "heads": 2}
HISTORY, HORIZON = 48, 24  # hourly rows: two days observed, one ahead; the season (24) fits the history


def _series(path: Path, start: int, rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(start)
    t = np.arange(start, start + rows)
    values = np.stack([np.sin(2 * np.pi * t / 24), 0.5 * np.cos(2 * np.pi * t / 12) + 0.002 * t], axis=1)
    frame = pd.DataFrame(values + 0.2 * rng.standard_normal(values.shape), columns=["a", "b"])
    frame.insert(0, "time", pd.date_range("2020-01-01", periods=rows, freq="h") + pd.Timedelta(hours=start))
    frame.to_csv(path, index=False)
    return frame


@pytest.fixture(scope="module")
def series_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, pd.DataFrame]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("series")
    _series(root / "train.csv", 0, 1000)
    held_out = _series(root / "test.csv", 1000, 300)
    api.train("timeseries", root / "train.csv", root / "model", steps=40, history=HISTORY, horizon=HORIZON,
              batch_size=64, progress=False, network=TINY, encoder={"patch": 8})  # residual over the linear base
    return root / "model", root / "test.csv", held_out


def _row(output: str, name: str) -> list[str]:
    return next(line.split() for line in output.splitlines() if line.split()[:1] == [name])


def test_timeseries_baselines_are_scored_on_the_models_windows(series_model, tmp_path: Path) -> None:
    model, data, held_out = series_model
    scores = tmp_path / "scores.json"
    result = CliRunner().invoke(app, ["evaluate", "--model", str(model), "--data", str(data), "--samples", "4",
                                      "--nfe", "4", "--out", str(scores)])
    assert result.exit_code == 0, result.output
    written = json.loads(scores.read_text())
    values = held_out[["a", "b"]].to_numpy()
    starts = range(0, len(values) - HISTORY - HORIZON + 1, HORIZON)  # evaluate's windows: stride = horizon
    assert written["windows"] == len(starts) == 10
    truth = np.stack([values[s + HISTORY:s + HISTORY + HORIZON] for s in starts])
    encoder = api.load_model(model).encoder
    expected = {
        "last_value": np.stack([np.repeat(values[s + HISTORY - 1:s + HISTORY], HORIZON, axis=0) for s in starts]),
        "seasonal_naive": np.stack([values[s + HISTORY - 24:s + HISTORY] for s in starts]),  # horizon = season
        "linear_base": np.stack([encoder.base(encoder.encode(values[s:s + HISTORY + HORIZON], HISTORY)[1])
                                 for s in starts]),
    }
    header = result.output.splitlines()[1].split()
    assert header[:5] == ["mse_median", "mae_median", "crps", "coverage_50", "coverage_90"]
    assert header[5:] == ["model/baseline", "mse_median"]
    assert _row(result.output, "model")[1:] == [f"{written['metrics'][m]:.4f}" for m in header[:5]]
    for name, forecast in expected.items():
        mse, mae = float(np.mean((forecast - truth) ** 2)), float(np.mean(np.abs(forecast - truth)))
        got = written["baselines"][name]
        assert got["mse_median"] == pytest.approx(mse, rel=1e-9) and got["mae_median"] == pytest.approx(mae, rel=1e-9)
        assert got["crps"] == pytest.approx(mae, rel=1e-9)  # the CRPS of one forecast is its absolute error
        assert got["coverage_90"] == 0.0  # a point forecast covers nothing
        ratio = written["metrics"]["mse_median"] / mse
        assert written["ratios"][name]["mse_median"] == pytest.approx(ratio, rel=1e-9)
        assert _row(result.output, name)[1:] == [f"{mse:.4f}", f"{mae:.4f}", f"{mae:.4f}", "0.0000", "0.0000",
                                                 f"{ratio:.3f}"]
        for metric in ("mse_median", "mae_median"):
            warned = any(line.startswith("warning: ") and f"than {name} on {metric}" in line
                         for line in result.output.splitlines())
            assert warned == (written["ratios"][name][metric] > 1.0), (name, metric, result.output)
    assert written["main_metric"] == "mse_median" and written["baselines_skipped"] == {}


def test_a_domain_without_baselines_prints_no_table(series_model, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TimeSeriesDomain, "baselines", lambda self: {})
    model, data, _ = series_model
    scores = tmp_path / "scores.json"
    result = CliRunner().invoke(app, ["evaluate", "--model", str(model), "--data", str(data), "--samples", "2",
                                      "--nfe", "2", "--max-windows", "3", "--out", str(scores)])
    assert result.exit_code == 0, result.output
    assert "model/baseline" not in result.output and "single sample" not in result.output
    assert not any(line.startswith("warning") for line in result.output.splitlines())
    written = json.loads(scores.read_text())
    assert written["baselines"] == {} and written["ratios"] == {} and written["warnings"] == []
    # stdout: the table; what was read is said on stderr after it
    assert [line.split()[0] for line in result.stdout.splitlines()[1:-1]] == list(written["metrics"])


def _arcs(agents: int, frames: int, seed: int) -> tuple[str, np.ndarray]:
    """Pedestrians on arcs (constant speed and turn rate), as a track file and positions ``[agents, frames, 2]``."""
    rng = np.random.default_rng(seed)
    xy = np.zeros((agents, frames, 2))
    lines = []
    for a in range(agents):
        heading, rate, speed = rng.uniform(-math.pi, math.pi), rng.normal(0, 0.2), rng.uniform(0.3, 0.6)
        x, y = rng.uniform(-10, 10, 2)
        for i in range(frames):
            xy[a, i] = round(x, 5), round(y, 5)
            lines.append((i, f"{i * 10}\t{a}\t{x:.5f}\t{y:.5f}"))
            heading += rate
            x, y = x + speed * math.cos(heading), y + speed * math.sin(heading)
    return "\n".join(line for _, line in sorted(lines, key=lambda t: t[0])) + "\n", xy


def test_traffic_constant_velocity_is_scored_on_the_models_windows(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    text, _ = _arcs(16, 40, seed=1)
    (tmp_path / "train.txt").write_text(text)
    text, xy = _arcs(6, 40, seed=2)
    (tmp_path / "test.txt").write_text(text)
    model = tmp_path / "model"
    api.train("traffic", tmp_path / "train.txt", model, steps=20, batch_size=16, progress=False, network=TINY,
              load_options={"neighbours": 0})
    scores = tmp_path / "scores.json"
    result = CliRunner().invoke(app, ["evaluate", "--model", str(model), "--data", str(tmp_path / "test.txt"),
                                      "--samples", "3", "--nfe", "4", "--out", str(scores),
                                      "--load-option", "neighbours=0"])
    assert result.exit_code == 0, result.output
    written = json.loads(scores.read_text())
    starts = (0, 12)  # 8 observed + 12 ahead, stride 12, in tracks of 40 rows
    assert written["windows"] == 6 * len(starts)
    errors = np.concatenate([  # constant velocity from the last two observed positions, by hand
        np.linalg.norm(xy[:, s + 7:s + 8] + np.arange(1, 13)[None, :, None] * (xy[:, s + 7:s + 8] - xy[:, s + 6:s + 7])
                       - xy[:, s + 8:s + 20], axis=-1) for s in starts])
    ade, fde = float(errors.mean()), float(errors[:, -1].mean())
    cv = written["baselines"]["constant_velocity"]
    for metric, value in (("min_ade", ade), ("min_fde", fde), ("ade_mean", ade), ("fde_mean", fde)):
        assert cv[metric] == pytest.approx(value, rel=1e-9), metric  # one forecast: best-of-1 is its error
    assert written["ratios"]["constant_velocity"]["ade_mean"] == pytest.approx(written["metrics"]["ade_mean"] / ade)
    header = result.output.splitlines()[1].split()
    assert header == ["min_ade", "min_fde", "ade_mean", "fde_mean", "model/baseline", "ade_mean"]
    assert _row(result.output, "constant_velocity")[1:] == [f"{ade:.4f}", f"{fde:.4f}", f"{ade:.4f}", f"{fde:.4f}",
                                                            f"{written['metrics']['ade_mean'] / ade:.3f}"]
    assert "single sample" in result.output
