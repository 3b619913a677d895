"""The one conditional sampler: plans by name within an evaluation budget, what is known held exactly,
unknown values ignored, and forecasts rolled past the trained horizon keeping the exact law."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ar1_sequence, batched_joint_gaussian_denoiser

from trajdiff.api.sampling import roll_windows
from trajdiff.core.conditional import Known, batch_slices, build_plan, sample_conditional
from trajdiff.core.denoiser import CountingDenoiser
from trajdiff.core.guidance import ClassifierFree
from trajdiff.core.samplers import plan_evaluations
from trajdiff.core.schedules import build_schedule
from trajdiff.errors import ConfigError, ShapeError

SOLVERS = ["ddpm", "ddim", "dpmpp2m", "euler", "heun"]


def _ar1_known(n: int, horizon: int, observed: int, offset: float = 0.5) -> tuple[Known, torch.Tensor, torch.Tensor]:
    mean, cov = ar1_sequence(horizon)
    values = torch.zeros(n, horizon, 1, dtype=torch.float64)
    values[:, :observed, 0] = mean[:observed] + offset
    return Known.history(values, observed), mean, cov


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("plan", ["full", "autoregressive", "pyramid", "rolling"])
def test_nfe_counts_network_evaluations(solver: str, plan: str) -> None:
    """The denoiser is called exactly as often as the plan says, never more than nfe, and the plan uses
    most of the budget (a rolling plan moves in whole staircase rounds, so it cannot always use all)."""
    known, mean, cov = _ar1_known(3, 8, 2)
    schedule = build_schedule("cosine")
    counter = CountingDenoiser(batched_joint_gaussian_denoiser(mean[:, None], cov, schedule))
    options = {"chunk": 2} if plan == "autoregressive" else None
    sample_conditional(counter, schedule, known, samples=2, plan=plan, nfe=24, solver=solver, plan_options=options,
                       generator=torch.Generator().manual_seed(0))
    levels = build_plan(plan, known.tokens, 24, solver=solver, options=options)
    assert counter.calls == plan_evaluations(levels, solver) <= 24
    assert counter.calls >= (12 if plan == "rolling" else 24 - 2 * (3 if plan == "autoregressive" else 2))
    assert torch.all(levels[:, :2] == 0)  # observed tokens held clean in every row


def test_classifier_free_guidance_counts_twice() -> None:
    observed = torch.tensor([True, False, False, False])
    plain = build_plan("full", observed, 20, solver="ddim")
    guided = build_plan("full", observed, 20, solver="ddim", guides=[ClassifierFree(2.0)])
    assert plan_evaluations(plain, "ddim") == 20
    assert plan_evaluations(guided, "ddim", [ClassifierFree(2.0)]) == 20
    assert guided.shape[0] - 1 == 10


def test_named_plans_have_their_shape() -> None:
    observed = torch.tensor([True, True, False, False, False, False])
    auto = build_plan("autoregressive", observed, 8, solver="ddim", options={"chunk": 2})
    first, second = auto[:, 2], auto[:, 4]
    assert torch.all(second[first > 0] == 1.0)  # the second chunk waits until the first is clean
    pyramid = build_plan("pyramid", observed, 16, solver="ddim")
    inner = pyramid[:, 2:]
    assert torch.all(inner[:, :-1] <= inner[:, 1:])  # near future never noisier than far future
    assert bool((inner[:, 0] < inner[:, -1]).any())
    with pytest.raises(ConfigError, match="needs at least"):
        build_plan("autoregressive", observed, 2, solver="heun")
    with pytest.raises(ConfigError, match="unknown plan"):
        build_plan("zigzag", observed, 10)
    with pytest.raises(ConfigError, match="does not take"):
        build_plan("full", observed, 10, options={"window": 3})


def test_unknown_values_do_not_reach_the_samples() -> None:
    """Forecasts and backtests may fill the unknown future differently: the samples are the same."""
    known, mean, cov = _ar1_known(4, 8, 3)
    schedule = build_schedule("cosine")
    denoise = batched_joint_gaussian_denoiser(mean[:, None], cov, schedule)
    noisy = known.values.clone()
    noisy[:, 3:] = torch.randn(4, 5, 1, dtype=torch.float64) * 100
    a = sample_conditional(denoise, schedule, known, samples=2, nfe=10, generator=torch.Generator().manual_seed(1))
    b = sample_conditional(denoise, schedule, Known(noisy, known.tokens), samples=2, nfe=10,
                           generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert torch.equal(a[:, :, :3], known.values[None, :, :3].expand(2, -1, -1, -1))


def test_batches_do_not_change_the_samples_and_slices_keep_groups() -> None:
    known, mean, cov = _ar1_known(6, 8, 3)
    schedule = build_schedule("cosine")
    denoise = batched_joint_gaussian_denoiser(mean[:, None], cov, schedule)
    kwargs = {"samples": 2, "nfe": 8, "solver": "ddim"}
    whole = sample_conditional(denoise, schedule, known, generator=torch.Generator().manual_seed(3), **kwargs)
    one = sample_conditional(denoise, schedule, Known(known.values[:1], known.tokens),
                             generator=torch.Generator().manual_seed(3), **kwargs)
    torch.testing.assert_close(whole[:, :1], one)
    assert batch_slices(5, 2, 4, groups=["a", "a", "a", "b", "c"]) == [slice(0, 3), slice(3, 5)]
    with pytest.raises(ShapeError, match="cover"):
        sample_conditional(denoise, schedule, known, slices=[slice(0, 2), slice(3, 6)], **kwargs)


def test_entries_are_inpainted_and_warm_starts_re_noise() -> None:
    known, mean, cov = _ar1_known(2, 8, 1)
    schedule = build_schedule("cosine")
    denoise = batched_joint_gaussian_denoiser(mean[:, None], cov, schedule)
    entries = torch.zeros(2, 8, 1, dtype=torch.bool)
    entries[:, 5] = True
    values = known.values.clone()
    values[:, 5] = 1.25
    out = sample_conditional(denoise, schedule, Known(values, known.tokens, entries=entries), samples=3, nfe=10,
                             generator=torch.Generator().manual_seed(0))
    assert torch.all(out[:, :, 5, 0] == 1.25) and torch.all(out[:, :, 0] == values[None, :, 0])
    warm = torch.full_like(values, 0.3)
    near = sample_conditional(denoise, schedule, Known(values, known.tokens, warm=warm), samples=3, nfe=4,
                              plan_options={"start": 0.05}, generator=torch.Generator().manual_seed(0))
    assert (near[:, :, 1:] - 0.3).abs().max() < 0.5  # barely re-noised: stays near the warm start
    with pytest.raises(ShapeError):
        Known(values, torch.ones(3, dtype=torch.bool))


def test_rolled_ar1_forecast_keeps_the_exact_conditional_law() -> None:
    """A window of 4 history + 4 future tokens of a stationary AR(1) (rho 0.9), sampled exactly, rolled to
    16 future steps (4x the trained horizon): step h has mean rho^h x_0 and variance 1 - rho^2h given the
    last observed value x_0 (unit stationary variance), the law of the process itself."""
    rho, history, trained, horizon, samples = 0.9, 4, 4, 16, 4000
    _, cov = ar1_sequence(history + trained, rho)
    mean = torch.zeros(history + trained, dtype=torch.float64)
    schedule = build_schedule("cosine")
    denoise = batched_joint_gaussian_denoiser(mean[:, None], cov, schedule)

    def window(rows: list[np.ndarray], count: int, seed: int, meta: object) -> np.ndarray:
        values = torch.zeros(len(rows), history + trained, 1, dtype=torch.float64)
        values[:, :history] = torch.from_numpy(np.stack(rows))
        drawn = sample_conditional(denoise, schedule, Known.history(values, history), samples=count, nfe=60,
                                   solver="dpmpp2m", generator=torch.Generator().manual_seed(seed), batch_limit=8192)
        return drawn[:, :, history:].numpy()

    last = 1.5
    observed = [np.array([[0.2], [0.8], [1.1], [last]])]
    futures = roll_windows(window, observed, history=history, trained_horizon=trained, horizon=horizon,
                           stride=trained, samples=samples, seed=0)
    assert futures.shape == (samples, 1, horizon, 1)
    steps = np.arange(1, horizon + 1)
    expected_mean = rho**steps * last
    expected_var = 1 - rho ** (2 * steps)  # unit stationary variance, innovations of variance 1 - rho^2
    got = futures[:, 0, :, 0]
    se_mean = np.sqrt(expected_var / samples)
    assert np.all(np.abs(got.mean(axis=0) - expected_mean) < 4.5 * se_mean + 0.01)
    assert np.all(np.abs(got.var(axis=0) / expected_var - 1) < 4.5 * np.sqrt(2 / samples) + 0.02)
    # consecutive steps across a window boundary keep the AR(1) correlation (no seam)
    lag = np.corrcoef(got[:, trained - 1], got[:, trained])[0, 1]
    var_a, var_b = expected_var[trained - 1], expected_var[trained]
    assert abs(lag - rho * np.sqrt(var_a / var_b)) < 0.05


def test_spacing_is_a_plan_option_that_needs_the_schedule() -> None:
    observed = torch.tensor([True, False, False, False])
    schedule = build_schedule("cosine")
    uniform = build_plan("full", observed, 10, solver="unipc")
    logsnr = build_plan("full", observed, 10, solver="unipc", options={"spacing": "logsnr"}, schedule=schedule)
    assert uniform.shape == logsnr.shape and not torch.allclose(uniform, logsnr)
    assert torch.all(logsnr[:, 0] == 0) and logsnr[-1, 1:].eq(0).all()
    with pytest.raises(ConfigError, match="pass schedule="):
        build_plan("full", observed, 10, options={"spacing": "logsnr"})
    with pytest.raises(ConfigError, match="spacing must be one of"):
        build_plan("full", observed, 10, options={"spacing": "cubic"}, schedule=schedule)
    known, mean, cov = _ar1_known(2, 4, 1)
    denoise = batched_joint_gaussian_denoiser(mean[:, None], cov, schedule)
    out = sample_conditional(denoise, schedule, known, samples=2, nfe=10, solver="unipc",
                             plan_options={"spacing": "logsnr"}, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out).all() and torch.equal(out[:, :, 0], known.values[None, :, 0].expand(2, -1, -1))
