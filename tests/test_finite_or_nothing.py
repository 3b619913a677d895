"""Finite or nothing (issue 15): every bad input is generated here and must end in one error line (CLI: a
non-zero exit, no traceback) or the specific exception (API) that names the option, file or field, with
nothing written; samples that are not finite (or absurdly far out) are refused before they are written or
scored."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from trajdiff import api
from trajdiff.api import checks
from trajdiff.api.checks import DEFAULTS_RULES, SAMPLE_LIMIT, check_samples
from trajdiff.api.sampling import forecast_histories
from trajdiff.cli import app
from trajdiff.core.calibration import Calibration
from trajdiff.core.checkpoint import attach_file
from trajdiff.core.model import DiffusionModel
from trajdiff.errors import CalibrationError, CheckpointError, ConfigError, SampleError
from trajdiff.plugins.spec import ModelDefaults

HISTORY, HORIZON = 16, 8


def _series(path: Path, start: int, rows: int) -> Path:
    rng = np.random.default_rng(start)
    t = np.arange(start, start + rows)
    values = np.stack([np.sin(2 * np.pi * t / 24), 0.5 * np.cos(2 * np.pi * t / 12)], axis=1)
    frame = pd.DataFrame(values + 0.1 * rng.standard_normal(values.shape), columns=["a", "b"])
    frame.insert(0, "time", pd.date_range("2020-01-01", periods=rows, freq="h") + pd.Timedelta(hours=start))
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A tiny timeseries model, held-out data, and a copy of the model whose weights are all NaN."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("finite")
    api.train("timeseries", _series(root / "train.csv", 0, 400), root / "model", steps=30, history=HISTORY,
              horizon=HORIZON, batch_size=32, progress=False, encoder={"patch": 4},
              network={"kind": "transformer", "width": 16, "depth": 1, "heads": 2})
    broken = DiffusionModel.load(root / "model")
    with torch.no_grad():
        for parameter in [*broken.network.parameters(), *broken.ema.parameters()]:
            parameter.fill_(float("nan"))
    broken.save(root / "nan-model")
    return root / "model", _series(root / "test.csv", 400, 120), root / "nan-model"


@pytest.fixture()
def model(trained, tmp_path: Path) -> Path:
    """A private copy of the model, for tests that change its folder."""
    return Path(shutil.copytree(trained[0], tmp_path / "model"))


def _cli(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def _one_line_error(code: int, output: str, *names: str) -> str:
    assert code != 0, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def _one_line(error: pytest.ExceptionInfo, *names: str) -> None:
    message = str(error.value)
    assert "\n" not in message, message
    for name in names:
        assert name in message, (name, message)


# ------------------------------------------------------------------------------------------ guide scales


@pytest.mark.parametrize("scale", ["nan", "inf", "-inf", "1e5", "-1e9", "1000", "-1", "100.5", "abc", "1e400"])
def test_cli_refuses_bad_guide_scales(trained, tmp_path: Path, scale: str) -> None:
    model, data, _ = trained
    out = tmp_path / "f.csv"
    code, output = _cli("forecast", "--model", model, "--data", data, "--out", out, "--cost", f"smoothness={scale}")
    _one_line_error(code, output, "--cost", f"smoothness={scale}")
    assert not out.exists()


@pytest.mark.parametrize("scale", [math.nan, math.inf, 1e5, -1e9, 1000.0, -0.5, "1", True, None, [1.0]])
def test_api_refuses_bad_guide_scales(trained, tmp_path: Path, scale: object) -> None:
    model, data, _ = trained
    out = tmp_path / "f.csv"
    with pytest.raises(ConfigError) as error:
        api.forecast(model, data, samples=2, nfe=2, costs={"smoothness": scale}, out=out)
    _one_line(error, "'smoothness'", "scale")
    assert not out.exists()
    loaded = api.load_model(model)
    with pytest.raises(ConfigError, match="'smoothness'"):
        api.sample_futures(loaded, np.zeros((1, 6, 8), np.float32), samples=2, costs={"smoothness": scale})


def test_costs_must_be_a_mapping(trained) -> None:
    with pytest.raises(ConfigError, match="costs must map"):
        api.forecast(trained[0], trained[1], samples=2, nfe=2, costs=["smoothness"])


# ------------------------------------------------------------------------------- samples before output


def test_a_diverging_guide_within_range_is_an_error_and_writes_nothing(trained, tmp_path: Path) -> None:
    model, data, _ = trained
    out, plot = tmp_path / "f.csv", tmp_path / "f.png"
    code, output = _cli("forecast", "--model", model, "--data", data, "--out", out, "--plot", plot, "--samples", "4",
                        "--nfe", "20", "--cost", "smoothness=100")
    _one_line_error(code, output, "smoothness=100", "2**20", "Nothing was written")
    assert not out.exists() and not plot.exists()
    with pytest.raises(SampleError, match="guide smoothness=100"):
        api.forecast(model, data, samples=4, nfe=20, costs={"smoothness": 100.0})
    assert np.isfinite(api.forecast(model, data, samples=4, nfe=20, costs={"smoothness": 0.5}).table[["a", "b"]]).all(
        axis=None)


@pytest.mark.parametrize("command", ["forecast", "evaluate", "calibrate", "impute", "anomalies"])
def test_nan_samples_from_a_corrupt_model_are_refused_before_anything_is_written(trained, tmp_path: Path,
                                                                                 command: str) -> None:
    _, data, broken = trained
    if command == "impute":  # cells to fill: where every cell is observed, inpainting leaves nothing to sample
        frame = pd.read_csv(data)
        frame.loc[50:60, "a"] = np.nan
        data = tmp_path / "gaps.csv"
        frame.to_csv(data, index=False)
    out = tmp_path / ("scores.json" if command == "evaluate" else "out.csv")
    args = [command, "--model", broken, "--data", data, "--samples", "2", "--nfe", "2"]
    args += [] if command == "calibrate" else ["--out", out]
    code, output = _cli(*args)
    _one_line_error(code, output, "NaN or infinite", "the model itself")
    assert not out.exists() and not (broken / "calibration.json").exists()


def test_check_samples_bounds() -> None:
    cause = "the test"
    check_samples(np.full((2, 3, 4, 2), 5.0), cause=cause)  # normalized: 5 standard deviations is fine
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(SampleError, match="NaN or infinite.*the test"):
            check_samples(np.array([[0.0, bad]]), cause=cause)
    with pytest.raises(SampleError, match="2\\*\\*20 training standard deviations"):
        check_samples(np.array([[0.0, 2 * SAMPLE_LIMIT]]), cause=cause)
    history = np.array([[-1.0, 0.0], [3.0, 0.0]])  # a range of 4 (magnitude 3), and zeros (width 1 then)
    check_samples(np.array([[1 + 3.9 * SAMPLE_LIMIT, 0.9 * SAMPLE_LIMIT]]), cause=cause, reference=[history])
    with pytest.raises(SampleError, match="times the data's range"):
        check_samples(np.array([[1 + 4.1 * SAMPLE_LIMIT, 0.0]]), cause=cause, reference=[history])
    with pytest.raises(SampleError, match="times the data's range"):
        check_samples(np.array([[1.0, -1.1 * SAMPLE_LIMIT]]), cause=cause, reference=[history])
    check_samples(np.array([[1e300, 0.0]]), cause=cause, reference=[np.array([[np.nan, 0.0]])])  # no data: no bound
    nearly_constant = np.array([[40.6, 1e-9], [40.6 + 1e-12, 2e-9]])  # a latitude: its magnitude is the width
    check_samples(np.array([[40.6 + 0.9 * 40.6 * SAMPLE_LIMIT, 1e-9]]), cause=cause, reference=[nearly_constant])
    with pytest.raises(SampleError):
        check_samples(np.array([[40.6, 1e-2]]), cause=cause, reference=[nearly_constant])
    check_samples(np.array([[40.6, 1e-2]]), cause=cause, reference=[nearly_constant], spread=np.array([0.5, 0.5]))


# ------------------------------------------------------------------------------------- calibration.json

GOOD = {"median_weight": 0.5, "spread_factor": 1.5, "level": 0.9, "windows": 12, "data": "val.csv"}
BAD_CALIBRATIONS = [
    ("spread_factor", math.nan), ("spread_factor", 1e30), ("spread_factor", -1.0), ("spread_factor", 0.0),
    ("spread_factor", "2"), ("spread_factor", None), ("median_weight", 1.5), ("median_weight", -0.1),
    ("median_weight", "0.5"), ("median_weight", math.inf), ("level", 0.0), ("level", 1.0), ("level", 1.5),
    ("windows", -1), ("windows", 2.5), ("data", 3), ("weight", 1.0), ("spread_factor", "<missing>"),
]


@pytest.mark.parametrize(("field", "value"), BAD_CALIBRATIONS)
def test_invalid_calibration_fields_are_named(model, trained, tmp_path: Path, field: str, value: object) -> None:
    values = {**GOOD, field: value} if value != "<missing>" else {k: v for k, v in GOOD.items() if k != field}
    (model / "calibration.json").write_text(json.dumps(values))  # json writes NaN and Infinity as Python reads them
    attach_file(model, "calibration.json")  # recorded, as a buggy writer would: the fields are what is wrong
    with pytest.raises(CalibrationError) as error:
        api.load_model(model)
    _one_line(error, "calibration.json", field)
    out = tmp_path / "f.csv"
    code, output = _cli("forecast", "--model", model, "--data", trained[1], "--out", out, "--samples", "2")
    _one_line_error(code, output, "calibration.json", field)
    assert not out.exists()


@pytest.mark.parametrize("text", ["[1, 2]", "{not json", "\xff\xfe"])
def test_unreadable_calibration_files(model, text: str) -> None:
    (model / "calibration.json").write_bytes(text.encode("latin-1"))
    attach_file(model, "calibration.json")
    with pytest.raises(CheckpointError) as error:
        api.load_model(model)
    _one_line(error, "calibration.json")


def test_calibration_is_checksummed_in_the_model_folder(model) -> None:
    Calibration(**GOOD).save(model)
    config = json.loads((model / "config.json").read_text())
    from trajdiff.core.checkpoint_io import sha256

    assert config["attached"]["calibration.json"]["sha256"] == sha256(model / "calibration.json")
    assert api.load_model(model).calibration == Calibration(**GOOD)
    (model / "calibration.json").write_text(json.dumps({**GOOD, "spread_factor": 2.0}, indent=2))  # in range
    with pytest.raises(CalibrationError) as error:
        api.load_model(model)
    _one_line(error, "calibration.json", "sha256")
    (model / "calibration.json").unlink()  # deleting it is always allowed: the raw model's samples
    assert api.load_model(model).calibration is None


def test_unrecorded_calibrations_are_refused(model) -> None:
    (model / "calibration.json").write_text(json.dumps(GOOD))  # by hand, or by an older trajdiff
    with pytest.raises(CalibrationError, match="not recorded"):
        api.load_model(model)
    Calibration(**GOOD).save(model)
    DiffusionModel.load(model).save(model)  # new weights: the old calibration is carried over, unrecorded
    with pytest.raises(CalibrationError, match="not recorded.*last save"):
        api.load_model(model)


def test_calibrate_replaces_an_invalid_calibration(model, trained) -> None:
    (model / "calibration.json").write_text(json.dumps({**GOOD, "spread_factor": math.nan}))
    with pytest.warns(UserWarning, match="replaces an invalid calibration.*not recorded"):
        result = api.calibrate(model, trained[1], samples=4, nfe=2, stride=2)
    assert 0.1 <= result["spread_factor"] <= 10 and api.load_model(model).calibration is not None


def test_storing_an_invalid_calibration_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="spread_factor"):
        Calibration(spread_factor=math.nan).save(tmp_path)
    assert not (tmp_path / "calibration.json").exists()


# ------------------------------------------------------------------------------------- API arguments


def _call(name: str, trained, out: Path, **kwargs: object) -> None:
    model, data, _ = trained
    if name in ("forecast", "evaluate", "impute", "anomaly_scores"):
        getattr(api, name)(model, data, out=out, **{"samples": 2, "nfe": 2, **kwargs})
    elif name == "calibrate":
        api.calibrate(model, data, **{"samples": 4, "nfe": 2, **kwargs})
    elif name == "train":
        api.train("timeseries", data, out, steps=1, progress=False, **kwargs)
    else:
        loaded = api.load_model(model)
        if name == "backtest":
            api.backtest(loaded, loaded.domain.load(data), **{"samples": 2, "nfe": 2, **kwargs})
        elif name == "sample_futures":
            api.sample_futures(loaded, np.zeros((1, 6, 8), np.float32), **{"samples": 2, "nfe": 2, **kwargs})
        else:
            forecast_histories(loaded, [np.zeros((HISTORY, 2))], **{"samples": 2, "nfe": 2, **kwargs})


BAD_ARGUMENTS = [
    *[("forecast", {"samples": v}, "samples") for v in (0, -1, 2.5, "4", True)],
    ("forecast", {"nfe": 0}, "nfe"), ("forecast", {"roll_stride": 0}, "roll_stride"),
    *[("forecast", {"seed": v}, "seed") for v in (-1, 2**64, 99999999999999999999, "0", 1.5)],
    ("forecast", {"samples": 4, "draws": 2}, "draws"), ("forecast", {"horizon": 0}, "horizon"),
    ("evaluate", {"samples": 0}, "samples"), ("evaluate", {"nfe": 0}, "nfe"), ("evaluate", {"stride": 0}, "stride"),
    ("evaluate", {"max_windows": 0}, "max_windows"), ("evaluate", {"max_windows": -1}, "max_windows"),
    ("evaluate", {"seed": 2**70}, "seed"), ("evaluate", {"draws": 0}, "draws"),
    ("calibrate", {"samples": 1}, "samples"), ("calibrate", {"stride": 0}, "stride"),
    ("calibrate", {"max_windows": 0}, "max_windows"), ("calibrate", {"seed": -5}, "seed"),
    *[("calibrate", {"level": v}, "level") for v in (0, 1, math.nan, "0.9", 1.5, None)],
    ("backtest", {"samples": 0}, "samples"), ("backtest", {"stride": 0}, "stride"),
    ("backtest", {"max_windows": 0}, "max_windows"), ("backtest", {"seed": -1}, "seed"),
    ("backtest", {"horizon": 0}, "horizon"),
    ("sample_futures", {"samples": 0}, "samples"), ("sample_futures", {"samples": -1}, "samples"),
    ("sample_futures", {"nfe": 0}, "nfe"), ("sample_futures", {"seed": -1}, "seed"),
    ("sample_futures", {"batch_limit": 0}, "batch_limit"),
    ("forecast_histories", {"samples": 0}, "samples"), ("forecast_histories", {"stride": 0}, "stride"),
    ("forecast_histories", {"stride": HORIZON + 1}, "stride"), ("forecast_histories", {"horizon": 0}, "horizon"),
    ("impute", {"samples": 0}, "samples"), ("impute", {"nfe": 0}, "nfe"), ("impute", {"seed": -1}, "seed"),
    ("anomaly_scores", {"samples": 0}, "samples"), ("anomaly_scores", {"grating": 0}, "grating"),
    ("anomaly_scores", {"seed": 2**64}, "seed"), ("train", {"seed": -1}, "seed"),
]


@pytest.mark.parametrize(("name", "kwargs", "named"), BAD_ARGUMENTS, ids=[f"{n}-{kw}" for n, kw, _ in BAD_ARGUMENTS])
def test_api_arguments_are_checked_where_they_enter(trained, tmp_path: Path, name: str, kwargs: dict,
                                                    named: str) -> None:
    out = tmp_path / ("model" if name == "train" else "out.csv")
    with pytest.raises(ConfigError) as error:
        _call(name, trained, out, **kwargs)
    _one_line(error, named)
    assert not out.exists() and not (trained[0] / "calibration.json").exists()


def test_none_still_means_the_default(trained) -> None:
    result = api.forecast(trained[0], trained[1], samples=None, nfe=2, roll_stride=None, draws=None)
    assert result.table["sample"].nunique() == api.load_model(trained[0]).defaults.samples


@pytest.mark.parametrize("command", ["forecast", "evaluate", "calibrate", "impute", "anomalies", "train", "demo"])
def test_cli_seed_out_of_range_is_one_line(trained, tmp_path: Path, command: str) -> None:
    model, data, _ = trained
    out = tmp_path / ("model" if command in ("train", "demo") else "out.csv")
    if command == "train":
        args = ["train", "--domain", "timeseries", "--data", data, "--out", out]
    elif command == "demo":
        args = ["demo", "--quick", "--out", out]
    else:
        args = [command, "--model", model, "--data", data] + ([] if command == "calibrate" else ["--out", out])
    code, output = _cli(*args, "--seed", "99999999999999999999")
    _one_line_error(code, output, "seed", "99999999999999999999")
    assert not out.exists()


# ------------------------------------------------------------------------------ config.json defaults

BAD_DEFAULTS = [("horizon", "8"), ("samples", -3), ("history", -5), ("nfe", 0), ("lr", -1.0), ("lr", math.nan),
                ("history_prob", 2.0), ("network", []), ("schedule", 3), ("label", 3), ("labels", [1]),
                ("steps", True), ("encoder", None), ("unknown_field", 1), ("horizon", "<missing>")]


@pytest.mark.parametrize(("field", "value"), BAD_DEFAULTS)
def test_config_defaults_are_type_checked_on_load(model, trained, tmp_path: Path, field: str, value: object) -> None:
    config = json.loads((model / "config.json").read_text())
    defaults = config["extra"]["defaults"]
    if value == "<missing>":
        del defaults[field]
    else:
        defaults[field] = value
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as error:
        api.load_model(model)
    _one_line(error, "config.json", field)
    out = tmp_path / "f.csv"
    code, output = _cli("forecast", "--model", model, "--data", trained[1], "--out", out)
    _one_line_error(code, output, "config.json", field)
    assert not out.exists()


def test_every_defaults_field_has_a_rule() -> None:
    from dataclasses import fields

    assert {f.name for f in fields(ModelDefaults)} == set(DEFAULTS_RULES)


# ------------------------------------------------------------------------------------- unwritable --out


def _unwritable(tmp_path: Path, kind: str) -> tuple[Path, str]:
    if kind == "under-a-file":
        (tmp_path / "file").write_text("x")
        return tmp_path / "file" / "out.csv", "is a file"
    if kind == "a-folder":
        (tmp_path / "folder.csv").mkdir()
        return tmp_path / "folder.csv", "is a folder"
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    return locked / "deeper" / "out.csv", "no permission"


@pytest.mark.parametrize("kind", ["under-a-file", "a-folder", "read-only"])
@pytest.mark.parametrize("command", ["forecast", "evaluate", "impute", "anomalies"])
def test_unwritable_out_is_one_line_naming_the_path(trained, tmp_path: Path, command: str, kind: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    out, reason = _unwritable(tmp_path, kind)
    if kind == "read-only" and os.geteuid() == 0:  # root may write anywhere: let the check see what a user would
        monkeypatch.setattr(checks.os, "access", lambda path, mode: Path(path) != tmp_path / "locked")
    model, data, _ = trained
    code, output = _cli(command, "--model", model, "--data", data, "--out", out, "--samples", "2", "--nfe", "2")
    _one_line_error(code, output, str(out), reason)
    assert not out.is_file()


def test_unwritable_plot_and_failing_writes(trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, data, _ = trained
    plot, _ = _unwritable(tmp_path, "under-a-file")
    out = tmp_path / "f.csv"
    code, output = _cli("forecast", "--model", model, "--data", data, "--out", out, "--plot", plot.with_suffix(".png"))
    _one_line_error(code, output, "plot", str(plot.with_suffix(".png")))
    assert not out.exists()

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(pd.DataFrame, "to_csv", refuse)  # the OS refuses after the check passed
    with pytest.raises(ConfigError) as error:
        api.forecast(model, data, samples=2, nfe=2, out=out)
    _one_line(error, str(out), "Permission denied")
