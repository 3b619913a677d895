"""Sampling in bfloat16 (``precision="bfloat16"``): the network's matrix products in bfloat16 under CPU autocast, the
solver in float32. The samples stay close to float32's from the same noise, and a wrong precision is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from trajdiff import api
from trajdiff.api.sampling import precision_context
from trajdiff.cli import app
from trajdiff.errors import ConfigError


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("precision")
    t = np.arange(800)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"time": pd.date_range("2020-01-01", periods=len(t), freq="h"),
                          "a": np.sin(2 * np.pi * t / 24) + 0.2 * rng.standard_normal(len(t)),
                          "b": np.cos(2 * np.pi * t / 48) + 0.2 * rng.standard_normal(len(t))})
    frame.to_csv(folder / "waves.csv", index=False)
    api.train("timeseries", folder / "waves.csv", folder / "model", steps=80, history=16, horizon=16, batch_size=64,
              progress=False, network={"kind": "window_mlp", "dim": None, "length": None, "width": 64, "depth": 2})
    return folder / "model", folder / "waves.csv"


def test_bfloat16_samples_are_close_to_float32_from_the_same_noise(trained) -> None:
    model, data = trained
    loaded = api.load_model(model)
    full = api.forecast(loaded, data, samples=8, nfe=4, seed=3)
    half = api.forecast(loaded, data, samples=8, nfe=4, seed=3, precision="bfloat16")
    a, b = (np.stack(list(result.samples.values())) for result in (full, half))
    assert a.dtype == b.dtype == np.float64 and a.shape == b.shape
    scale = np.std(a)
    assert 0 < np.abs(a - b).max() < 0.05 * scale, (np.abs(a - b).max(), scale)  # rounded, not another draw
    other = np.stack(list(api.forecast(loaded, data, samples=8, nfe=4, seed=4).samples.values()))
    assert np.abs(a - other).mean() > 10 * np.abs(a - b).mean()  # a different draw differs far more


def test_precision_context_turns_linear_layers_to_bfloat16() -> None:
    layer = torch.nn.Linear(4, 3)
    with precision_context("bfloat16"):
        assert layer(torch.ones(2, 4)).dtype == torch.bfloat16
    with precision_context("float32"):
        assert layer(torch.ones(2, 4)).dtype == torch.float32


def test_unknown_precision_is_refused_in_one_line(trained) -> None:
    model, data = trained
    with pytest.raises(ConfigError, match="precision must be one of float32, bfloat16, got 'float16'"):
        api.forecast(model, data, samples=2, precision="float16")
    result = CliRunner().invoke(app, ["forecast", "--model", str(model), "--data", str(data), "--out",
                                      str(model.parent / "f.csv"), "--precision", "half"])
    assert result.exit_code != 0
    assert "precision must be one of float32, bfloat16, got 'half'" in result.output
    assert "Traceback" not in result.output and not (model.parent / "f.csv").exists()
