"""Antithetic sampling through the public API and the command line, on a trained time-series model:
mirrored noise pairs keep each sample a draw from the model while making the median far steadier."""

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
from trajdiff.errors import ConfigError


def _noisy_waves(path: Path) -> Path:
    """Two noisy sine columns, hourly: a future that is predictable in its mean and noisy around it."""
    rng = np.random.default_rng(0)
    t = np.arange(1200)
    values = np.stack([np.sin(2 * np.pi * t / 24), np.cos(2 * np.pi * t / 48)], axis=1)
    values = values + 0.4 * rng.standard_normal(values.shape)
    frame = pd.DataFrame(values, columns=["a", "b"])
    frame.insert(0, "time", pd.date_range("2020-01-01", periods=len(t), freq="h"))
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("antithetic")
    data = _noisy_waves(folder / "waves.csv")
    api.train("timeseries", data, folder / "model", steps=150, history=16, horizon=16, batch_size=64, progress=False,
              network={"kind": "transformer", "width": 32, "depth": 2, "heads": 2}, encoder={"patch": 4})
    return folder / "model", data


def test_antithetic_medians_vary_far_less_across_seeds(trained) -> None:
    model, data = trained
    loaded = api.load_model(model)
    episodes = loaded.domain.load(data)
    rows = episodes.sequences[0]
    windows = [np.concatenate([rows[s:s + 16], np.repeat(rows[s + 15:s + 16], 16, axis=0)]) for s in (100, 500, 900)]
    contexts = np.stack([loaded.encoder.encode(w, 16)[0] for w in windows]).astype(np.float32)

    def median_spread(antithetic: bool) -> float:
        medians = [np.median(api.sample_futures(loaded, contexts, samples=8, nfe=8, seed=seed,
                                                antithetic=antithetic)[:, :, 4:], axis=0) for seed in range(8)]
        return float(np.std(medians, axis=0).mean())

    iid, mirrored = median_spread(False), median_spread(True)
    print(f"median spread across seeds: iid {iid:.4f}, antithetic {mirrored:.4f}")  # shown with pytest -s
    assert mirrored < 0.5 * iid, (mirrored, iid)
    drawn = api.sample_futures(loaded, contexts, samples=8, nfe=8, seed=0, antithetic=True)
    assert np.std(drawn[:, :, 4:], axis=0).mean() > 0.5 * np.std(  # the samples themselves still spread
        api.sample_futures(loaded, contexts, samples=8, nfe=8, seed=0)[:, :, 4:], axis=0).mean()
    with pytest.raises(ConfigError, match="samples must be even, got 3"):
        api.sample_futures(loaded, contexts, samples=3, antithetic=True)


def test_antithetic_from_the_command_line(trained, tmp_path: Path) -> None:
    model, data = trained
    runner = CliRunner()
    out = tmp_path / "forecast.csv"
    result = runner.invoke(app, ["forecast", "--model", str(model), "--data", str(data), "--out", str(out),
                                 "--samples", "4", "--antithetic", "--nfe", "4"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert sorted(set(table["sample"])) == [0, 1, 2, 3] and len(table) == 4 * 16
    result = runner.invoke(app, ["forecast", "--model", str(model), "--data", str(data), "--out", str(out),
                                 "--samples", "3", "--antithetic"])
    assert result.exit_code != 0 and "samples must be even, got 3" in result.output
    scores = tmp_path / "scores.json"
    result = runner.invoke(app, ["evaluate", "--model", str(model), "--data", str(data), "--samples", "4",
                                 "--antithetic", "--nfe", "4", "--max-windows", "10", "--out", str(scores)])
    assert result.exit_code == 0 and "4 samples, antithetic pairs" in result.output, result.output
    written = json.loads(scores.read_text())
    assert written["antithetic"] is True and written["windows"] == 10
