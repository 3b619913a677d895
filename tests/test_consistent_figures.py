"""Consistent figures: `calibrate` reports the median's MSE in the data's units, the number `evaluate` scores as
mse_median for the same model, data, windows, samples and seed (uncalibrated), and both commands say so."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from trajdiff import api
from trajdiff.cli import app


def _series(path: Path, start: int, rows: int) -> Path:
    """Two columns in very different units (a few units, a few thousand), so that a per-column rescaling shows."""
    rng = np.random.default_rng(start)
    t = np.arange(start, start + rows)
    frame = pd.DataFrame({"time": pd.date_range("2020-01-01", periods=rows, freq="h") + pd.Timedelta(hours=start),
                          "small": np.sin(2 * np.pi * t / 24) + 0.1 * rng.standard_normal(rows),
                          "large": 3000 * np.cos(2 * np.pi * t / 12) + 200 * rng.standard_normal(rows)})
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("figures")
    api.train("timeseries", _series(root / "train.csv", 0, 400), root / "model", steps=20, history=16, horizon=8,
              batch_size=32, progress=False, encoder={"patch": 4},
              network={"kind": "transformer", "width": 16, "depth": 1, "heads": 2})
    return root / "model", _series(root / "valid.csv", 400, 200)


def test_calibrate_reports_evaluates_mse_in_the_datas_units(trained: tuple[Path, Path]) -> None:
    model, data = trained
    options = {"samples": 4, "nfe": 2, "seed": 3}
    result = CliRunner().invoke(app, ["calibrate", "--model", str(model), "--data", str(data), "--samples", "4",
                                      "--nfe", "2", "--seed", "3"])
    assert result.exit_code == 0, result.output
    printed = re.search(r"MSE of the median in the data's units (\S+) -> (\S+)", result.output)
    assert printed, result.output

    evaluated = api.evaluate(model, data, calibrated=False, **options)
    assert "data's own" in evaluated["units"]
    calibrated = api.calibrate(model, data, **options)  # the same windows, samples and seed: the same forecasts
    assert calibrated["mse_before"] == evaluated["metrics"]["mse_median"]
    assert printed.group(1) == f"{evaluated['metrics']['mse_median']:.4f}"
    assert calibrated["mse_before"] > 1000  # the large column's squared errors, not unit-free ones (about 1)

    after = api.evaluate(model, data, calibrated=True, **options)  # the stored calibration, applied by evaluate
    assert calibrated["mse_after"] == pytest.approx(after["metrics"]["mse_median"], rel=1e-9)
    assert printed.group(2) == f"{after['metrics']['mse_median']:.4f}"

    shown = CliRunner().invoke(app, ["evaluate", "--model", str(model), "--data", str(data), "--samples", "4",
                                     "--nfe", "1", "--max-windows", "1", "--out", str(model.parent / "e.json")])
    assert shown.exit_code == 0 and "scores in the data's units" in shown.output, shown.output
