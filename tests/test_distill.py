"""Distillation: a small time-series teacher whose futures have four modes, distilled into a few-step student that
samples them in one or two network evaluations where the teacher at that budget gives their mean, and that passes
the teacher's behaviour tests (clean history kept, inpainting exact, a guide lowers its cost) as a normal model
folder the command line forecasts and evaluates with."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from trajdiff import api
from trajdiff.api.loading import context_tokens, encode_windows
from trajdiff.cli import app
from trajdiff.core import plans, samplers
from trajdiff.core.denoiser import gaussian_denoiser
from trajdiff.core.distillation import ray_fractions, ray_trajectory
from trajdiff.core.parametrize import Prediction, to_prediction
from trajdiff.core.schedules import build_schedule
from trajdiff.errors import CheckpointError, ConfigError
from trajdiff.plugins.timeseries.domain import smoothness

PERIOD = 16
NETWORK = {"kind": "transformer", "width": 32, "depth": 2, "heads": 4}


def _series(path: Path, count: int, rows: int, seed: int) -> Path:
    """Series of two columns: a sine of period 16 whose sign flips at random from one period to the next, so the
    next two periods (the forecast) have four equally likely shapes whatever the history."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(count):
        t = np.arange(rows)
        sign = rng.choice([-1.0, 1.0], size=rows // PERIOD + 1)[t // PERIOD]
        wave = sign * np.sin(2 * np.pi * t / PERIOD)
        frames.append(pd.DataFrame({"time": pd.date_range("2021-01-01", periods=rows, freq="1h"), "series": f"s{i}",
                                    "a": wave + 0.05 * rng.standard_normal(rows),
                                    "b": 0.5 * wave + 0.05 * rng.standard_normal(rows)}))
    pd.concat(frames).to_csv(path, index=False)
    return path


def _flow_map(mean: torch.Tensor, cov: torch.Tensor, schedule):
    """The exact probability-flow ODE end for tokens ~ N(mean, cov): each eigen-coordinate keeps its quantile, so
    x0 = mean + V diag(sqrt(lam) / sqrt(alpha^2 lam + sigma^2)) V^T (x - alpha mean), per token (what a distilled
    student learns)."""
    lam, vec = torch.linalg.eigh(cov)

    def denoise(x: torch.Tensor, k: torch.Tensor, cond=None) -> Prediction:
        alpha, sigma = (v[..., None] for v in schedule.alpha_sigma(k.double()))
        gain = lam.sqrt() / (alpha.square() * lam + sigma.square()).sqrt()
        x0 = mean + (gain * ((x.double() - alpha * mean) @ vec)) @ vec.T
        return to_prediction(x0, x.double(), alpha, sigma, "x0")

    return denoise


def test_the_teacher_trajectory_along_the_ray_ends_where_the_exact_flow_does(gaussian) -> None:
    mean, cov = gaussian
    schedule = build_schedule("cosine")
    g = torch.Generator().manual_seed(0)
    levels = torch.rand(256, 5, generator=g, dtype=torch.float64).clamp_min(1e-3)
    levels[:, 0] = 0.0  # a clean context token
    levels[:128, 1:] = 1.0  # the full plan's start
    x0 = mean + torch.randn(256, 5, 4, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    alpha, sigma = (v[..., None] for v in schedule.alpha_sigma(levels))
    x = alpha * x0 + sigma * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    states = ray_trajectory(gaussian_denoiser(mean, cov, schedule), schedule, x, levels,
                            ray_fractions(16, schedule).double(), solver="unipc")
    assert len(states) == 17 and torch.equal(states[-1][:, 0], x[:, 0])
    exact = _flow_map(mean, cov, schedule)(x, levels).x0
    assert float((states[-1] - exact).abs().max()) < 0.03  # measured 0.016 (0.47 at 4 steps, 0.0019 at 32)


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_the_consistency_solver_on_the_exact_flow_map_samples_the_exact_law(gaussian, steps: int) -> None:
    mean, cov = gaussian
    schedule = build_schedule("cosine")
    plan = plans.full_sequence(2, steps)
    g = torch.Generator().manual_seed(steps)
    x = samplers.initial_state((20000, 2, 4), plan, schedule, generator=g, dtype=torch.float64)
    out = samplers.sample(_flow_map(mean, cov, schedule), x, plan, schedule, solver="consistency", generator=g)
    flat = out.reshape(-1, 4)
    assert float((flat.mean(0) - mean).abs().max()) < 0.03
    assert float((torch.cov(flat.T) - cov).abs().max()) < 0.05


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path, Path, Path]:
    root = tmp_path_factory.mktemp("distill")
    train = _series(root / "train.csv", 8, 640, seed=0)
    test = _series(root / "test.csv", 3, 160, seed=1)
    api.train("timeseries", train, root / "teacher", steps=400, history=32, horizon=32, batch_size=64, lr=2e-3,
              network=NETWORK, progress=False)
    summary = api.distill(root / "teacher", root / "student", nfe=2, steps=200, seed=0, progress=False)
    assert summary.steps == 200 and summary.windows == "teacher samples"
    return root / "teacher", root / "student", train, test


def _energy(a: torch.Tensor, b: torch.Tensor) -> float:
    """Energy distance between two samples [n, F] (0 for equal laws)."""
    return float(2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean())


def _contexts(loaded: api.LoadedModel, data: Path, count: int) -> np.ndarray:
    episodes = loaded.domain.load(data)
    d = loaded.defaults
    windows, _, _ = encode_windows(episodes, loaded.encoder, d.history, d.length, stride=24)
    return windows[:count]


def test_student_at_few_evaluations_is_closer_to_the_teacher_than_the_teacher_itself(models) -> None:
    teacher_dir, student_dir, _, test = models
    teacher, student = api.load_model(teacher_dir), api.load_model(student_dir)
    contexts = _contexts(teacher, test, 8)
    observed = context_tokens(teacher.encoder, teacher.defaults)

    def futures(loaded: api.LoadedModel, nfe: int, solver: str, seed: int) -> torch.Tensor:
        drawn = api.sample_futures(loaded, contexts, samples=64, nfe=nfe, solver=solver, seed=seed)
        return torch.from_numpy(drawn[:, :, observed:]).flatten(2)  # [S, N, F]

    reference = futures(teacher, 20, "unipc", seed=1)  # the teacher at 20 evaluations

    def distance(samples: torch.Tensor) -> float:
        return float(np.mean([_energy(samples[:, j], reference[:, j]) for j in range(reference.shape[1])]))

    for nfe, margin in ((1, 0.6), (2, 0.8)):  # measured: 0.40 and 0.57 of the teacher's distance
        own, taught = distance(futures(teacher, nfe, "dpmpp2m", 2)), distance(futures(student, nfe, "consistency", 2))
        assert taught < margin * own, (nfe, taught, own)


def test_the_student_folder_is_a_normal_model_that_records_its_teacher(models) -> None:
    teacher_dir, student_dir, _, _ = models
    loaded = api.load_model(student_dir)
    assert (loaded.defaults.solver, loaded.defaults.nfe) == ("consistency", 2)
    config = json.loads((student_dir / "config.json").read_text())
    teacher_config = json.loads((teacher_dir / "config.json").read_text())
    record = config["distilled"]
    assert record["teacher"] == str(teacher_dir.resolve())
    assert record["teacher_sha256"] == teacher_config["files"]["ema.safetensors"]["sha256"]
    assert (record["method"], record["nfe"], record["steps"]) == ("trajectory", 2, 200)
    assert config["extra"]["encoder"] == teacher_config["extra"]["encoder"]


def test_the_student_keeps_clean_history_exactly_and_a_guide_lowers_its_cost(models) -> None:
    _, student_dir, _, test = models
    student = api.load_model(student_dir)
    contexts = _contexts(student, test, 6)
    observed = context_tokens(student.encoder, student.defaults)
    plain = api.sample_futures(student, contexts, samples=16, seed=3)
    assert np.array_equal(plain[:, :, :observed], np.broadcast_to(contexts[:, :observed], plain[:, :, :observed].shape))
    guided = api.sample_futures(student, contexts, samples=16, seed=3, costs={"smoothness": 2.0})
    assert np.array_equal(guided[:, :, :observed], plain[:, :, :observed])

    def cost(samples: np.ndarray) -> float:
        return float(smoothness(torch.from_numpy(samples[:, :, observed - 1:]).flatten(0, 1)).mean())

    assert cost(guided) < 0.8 * cost(plain), (cost(guided), cost(plain))


def test_the_student_inpaints_exactly(models, tmp_path: Path) -> None:
    _, student_dir, _, test = models
    frame = pd.read_csv(test)
    frame = frame[frame["series"] == "s0"].reset_index(drop=True)
    holes = frame.copy()
    holes.loc[40:51, "a"] = np.nan
    holes.loc[100:105, "b"] = np.nan
    holes.to_csv(tmp_path / "holes.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the loader announces the filled cells
        result = api.impute(student_dir, tmp_path / "holes.csv", samples=4)
    missing = holes[["a", "b"]].isna().to_numpy()
    out = result.table[["a", "b"]].to_numpy()
    assert result.filled == int(missing.sum())
    assert np.array_equal(out[~missing], frame[["a", "b"]].to_numpy()[~missing])
    assert np.isfinite(out).all()


def _cli(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_forecast_and_evaluate_run_on_the_student_through_the_command_line(models, tmp_path: Path) -> None:
    _, student_dir, _, test = models
    code, output = _cli("forecast", "--model", student_dir, "--data", test, "--out", tmp_path / "f.csv",
                        "--samples", 4)
    assert code == 0, output
    table = pd.read_csv(tmp_path / "f.csv")
    assert len(table) == 4 * 3 * 32 and np.isfinite(table[["a", "b"]].to_numpy()).all()
    code, output = _cli("evaluate", "--model", student_dir, "--data", test, "--samples", 4)
    assert code == 0, output
    assert "2 network evaluations" in output


def _one_line_error(code: int, output: str, *names: str) -> None:
    assert code == 2, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in output, output
    for name in names:
        assert name in lines[0], (name, lines[0])


def test_bad_distillation_requests_are_one_line_errors(models, tmp_path: Path) -> None:
    teacher_dir, student_dir, _, _ = models
    out = tmp_path / "out"
    _one_line_error(*_cli("distill", "--model", tmp_path / "nowhere", "--out", out), "nowhere", "does not exist")
    _one_line_error(*_cli("distill", "--model", teacher_dir, "--out", out, "--nfe", 0), "nfe", ">= 1")
    _one_line_error(*_cli("distill", "--model", teacher_dir, "--out", student_dir), "already holds a model",
                    "--overwrite")
    _one_line_error(*_cli("distill", "--model", teacher_dir, "--out", teacher_dir, "--overwrite"),
                    "teacher's own folder")
    _one_line_error(*_cli("distill", "--model", student_dir, "--out", out), "itself distilled", "teacher")
    _one_line_error(*_cli("distill", "--model", teacher_dir, "--out", out, "--method", "reflow"), "reflow",
                    "trajectory")
    assert not out.exists()
    with pytest.raises(CheckpointError):
        api.distill(tmp_path / "nowhere", out)
    with pytest.raises(ConfigError, match="steps"):
        api.distill(teacher_dir, out, steps=0)


def test_overwrite_replaces_a_student_and_data_can_seed_the_trajectories(models, tmp_path: Path) -> None:
    teacher_dir, _, train, _ = models
    out = Path(shutil.copytree(models[1], tmp_path / "student"))
    summary = api.distill(teacher_dir, out, nfe=1, steps=5, data=train, overwrite=True, progress=False)
    assert "windows of" in summary.windows and summary.windows.endswith("train.csv")
    assert api.load_model(out).defaults.nfe == 1
    episodes = api.load_model(teacher_dir).domain.load(train)  # episodes already loaded serve as well
    summary = api.distill(teacher_dir, out, nfe=1, steps=5, data=episodes, overwrite=True, progress=False)
    assert summary.windows.endswith(f"windows of {len(episodes)} episodes in memory")
