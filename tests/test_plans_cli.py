"""Plans and long horizons from the command line: `--plan` picks how a window's unknown tokens are
denoised, and a `--horizon` longer than the trained one rolls the trained window forward."""

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

TINY = {"kind": "transformer", "width": 32, "depth": 2, "heads": 2}
HISTORY, HORIZON = 48, 24


def _series(path: Path, start: int, rows: int) -> Path:
    rng = np.random.default_rng(start)
    t = np.arange(start, start + rows)
    values = np.stack([np.sin(2 * np.pi * t / 24), 0.5 * np.cos(2 * np.pi * t / 12)], axis=1)
    frame = pd.DataFrame(values + 0.1 * rng.standard_normal(values.shape), columns=["a", "b"])
    frame.insert(0, "time", pd.date_range("2020-01-01", periods=rows, freq="h") + pd.Timedelta(hours=start))
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("plans")
    api.train("timeseries", _series(root / "train.csv", 0, 800), root / "model", steps=60, history=HISTORY,
              horizon=HORIZON, batch_size=64, progress=False, network=TINY, encoder={"patch": 8})
    return root / "model", _series(root / "test.csv", 800, 200)


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_forecast_past_the_trained_horizon_rolls_the_window(model, tmp_path: Path) -> None:
    model_dir, data = model
    short, long = tmp_path / "short.csv", tmp_path / "long.csv"
    code, output = _run("forecast", "--model", model_dir, "--data", data, "--out", short, "--samples", "4",
                        "--nfe", "6")
    assert code == 0, output
    code, output = _run("forecast", "--model", model_dir, "--data", data, "--out", long, "--samples", "4",
                        "--nfe", "6", "--horizon", "70")
    assert code == 0, output
    a, b = pd.read_csv(short), pd.read_csv(long)
    assert sorted(b["step"].unique()) == list(range(1, 71)) and len(b) == 4 * 70
    times = pd.to_datetime(b[b["sample"] == 0]["time"])
    assert (times.diff().dropna() == pd.Timedelta(hours=1)).all()  # time stamps continue hour by hour
    # the first window is the same draw; later rows continue each sample from its own past
    first = b[b["step"] <= HORIZON].reset_index(drop=True)
    np.testing.assert_allclose(first[["a", "b"]].to_numpy(), a[["a", "b"]].to_numpy(), rtol=1e-5, atol=1e-6)
    spread = b.groupby("step")[["a", "b"]].std().to_numpy()
    assert np.all(np.isfinite(b[["a", "b"]].to_numpy())) and spread[HORIZON:].mean() > 0


def test_evaluate_with_a_longer_horizon_and_named_plans(model, tmp_path: Path) -> None:
    model_dir, data = model
    out = tmp_path / "eval.json"
    code, output = _run("evaluate", "--model", model_dir, "--data", data, "--samples", "4", "--nfe", "6",
                        "--horizon", "48", "--plan", "pyramid", "--out", out)
    assert code == 0, output
    written = json.loads(out.read_text())
    assert written["horizon"] == 48 and written["trained_horizon"] == HORIZON and written["plan"] == "pyramid"
    assert written["windows"] == len(range(0, 200 - HISTORY - 48 + 1, 48))
    assert "rolled forward" in output and "plan pyramid" in output
    for plan, options in (("autoregressive", ["--plan-option", "chunk=1"]), ("rolling", ["--plan-option", "window=2"]),
                          ("full", [])):
        code, output = _run("evaluate", "--model", model_dir, "--data", data, "--samples", "2", "--nfe", "8",
                            "--plan", plan, *options, "--out", out)
        assert code == 0, (plan, output)
        assert json.loads(out.read_text())["plan"] == plan


@pytest.mark.parametrize(("args", "message"), [
    (["--plan", "zigzag"], "unknown plan 'zigzag'"),
    (["--plan", "full", "--plan-option", "window=3"], "does not take the options ['window']"),
    (["--plan", "autoregressive", "--nfe", "2"], "needs at least"),
    (["--plan-option", "chunk"], "--plan-option 'chunk': write KEY=VALUE"),
])
def test_plan_mistakes_are_one_line_errors(model, tmp_path: Path, args: list[str], message: str) -> None:
    model_dir, data = model
    code, output = _run("forecast", "--model", model_dir, "--data", data, "--out", tmp_path / "f.csv",
                        "--samples", "2", *args)
    assert code == 2 and message in output and "Traceback" not in output, output
