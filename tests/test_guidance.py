from __future__ import annotations

import pytest
import torch

from trajdiff.core import plans, samplers
from trajdiff.core.denoiser import gaussian_denoiser
from trajdiff.core.guidance import ClassifierFree, CostGradient, Inpaint, Project
from trajdiff.core.parametrize import Prediction
from trajdiff.core.schedules import build_schedule
from trajdiff.errors import ConfigError, ShapeError


def _run(denoise, schedule, guides, solver="ddim", steps=30, horizon=6, n=256, seed=0, cond=None):
    plan = plans.full_sequence(horizon, steps)
    g = torch.Generator().manual_seed(seed)
    x = samplers.initial_state((n, horizon, 4), plan, schedule, generator=g, dtype=torch.float64)
    return samplers.sample(denoise, x, plan, schedule, solver=solver, guides=guides, generator=g, cond=cond)


@pytest.mark.parametrize("solver", ["ddpm", "ddim", "dpmpp2m", "heun"])
@pytest.mark.parametrize("schedule_name", ["cosine", "edm", "flow"])
def test_inpainted_entries_equal_the_given_values_exactly(gaussian, solver, schedule_name) -> None:
    mean, cov = gaussian
    schedule = build_schedule(schedule_name)
    mask = torch.zeros(6, 4, dtype=torch.bool)
    mask[0] = True  # a whole start token
    mask[5, :2] = True  # part of the goal token
    values = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    out = _run(gaussian_denoiser(mean, cov, schedule), schedule, [Inpaint(mask, values)], solver=solver)
    assert torch.equal(out[:, mask], values[mask].expand(out.shape[0], -1))
    assert not torch.equal(out[:, ~mask], values[~mask].expand(out.shape[0], -1))


def _goal_cost(goal: torch.Tensor):
    def cost(x0: torch.Tensor) -> torch.Tensor:
        return (x0 - goal).square().sum(dim=(1, 2))

    return cost


@pytest.mark.parametrize("through_model", [False, True])
def test_cost_guidance_lowers_the_cost_against_the_unguided_run(gaussian, through_model) -> None:
    mean, cov = gaussian
    schedule = build_schedule("cosine")
    denoise = gaussian_denoiser(mean, cov, schedule)
    goal = torch.full((4,), 2.0, dtype=torch.float64)
    cost = _goal_cost(goal)
    plain = _run(denoise, schedule, [])
    guided = _run(denoise, schedule, [CostGradient(cost, scale=0.05, inner_steps=2, through_model=through_model)])
    assert cost(guided).mean() < 0.5 * cost(plain).mean()


def test_cost_guidance_stops_below_its_level(gaussian) -> None:
    mean, cov = gaussian
    schedule = build_schedule("cosine")
    denoise = gaussian_denoiser(mean, cov, schedule)
    cost = _goal_cost(torch.full((4,), 2.0, dtype=torch.float64))
    plain = _run(denoise, schedule, [])
    never = _run(denoise, schedule, [CostGradient(cost, scale=0.05, stop_level=1.0)])
    assert torch.equal(never, plain)  # every level is <= 1: guidance never acts
    late = _run(denoise, schedule, [CostGradient(cost, scale=0.05, stop_level=0.5)])
    full = _run(denoise, schedule, [CostGradient(cost, scale=0.05, stop_level=0.0)])
    assert cost(full).mean() < cost(late).mean() < cost(plain).mean()


def test_cost_guidance_rejects_bad_settings_and_costs(gaussian) -> None:
    with pytest.raises(ConfigError, match="inner_steps must be >= 1"):
        CostGradient(lambda x: x.sum(), inner_steps=0)
    with pytest.raises(ConfigError, match=r"stop_level must be in \[0, 1\]"):
        CostGradient(lambda x: x.sum(), stop_level=2)
    mean, cov = gaussian
    schedule = build_schedule("cosine")
    with pytest.raises(ShapeError, match=r"one value per sample \[B\]"):
        _run(gaussian_denoiser(mean, cov, schedule), schedule, [CostGradient(lambda x: x.sum(-1))])


@pytest.mark.parametrize("solver", ["ddpm", "dpmpp2m"])
def test_projected_samples_satisfy_the_constraint(gaussian, solver) -> None:
    mean, cov = gaussian
    schedule = build_schedule("cosine")
    box = Project(lambda x: x.clamp(-0.5, 0.5))
    out = _run(gaussian_denoiser(mean, cov, schedule), schedule, [box], solver=solver)
    assert out.abs().max() <= 0.5
    plain = _run(gaussian_denoiser(mean, cov, schedule), schedule, [], solver=solver)
    assert plain.abs().max() > 1.0  # the constraint binds


def test_projection_leaves_context_tokens_alone(gaussian) -> None:
    mean, cov = gaussian
    schedule = build_schedule("cosine")
    plan = plans.with_context(plans.full_sequence(4, 10), [0])
    context = torch.full((8, 4, 4), 3.0, dtype=torch.float64)
    x = samplers.initial_state(context.shape, plan, schedule, context=context, dtype=torch.float64)
    out = samplers.sample(gaussian_denoiser(mean, cov, schedule), x, plan, schedule,
                          guides=[Project(lambda z: z.clamp(-1, 1))])
    assert torch.all(out[:, 0] == 3.0) and out[:, 1:].abs().max() <= 1.0


def test_classifier_free_guidance_extrapolates_between_conditions() -> None:
    """With two Gaussian denoisers of equal covariance, mixing them with scale s is the exact
    denoiser of the Gaussian with mean m_u + s (m_c - m_u): the samples' mean must follow."""
    schedule = build_schedule("cosine")
    cov = torch.eye(4, dtype=torch.float64) * 0.25
    m_u, m_c = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    uncond, conditional = gaussian_denoiser(m_u, cov, schedule), gaussian_denoiser(m_c, cov, schedule)

    def denoise(x, k, cond=None) -> Prediction:
        return uncond(x, k) if cond is None else conditional(x, k)

    cond = torch.ones(2048, 1)
    for scale in (0.0, 1.0, 2.5):
        out = _run(denoise, schedule, [ClassifierFree(scale)], n=2048, cond=cond)
        expected = m_u + scale * (m_c - m_u)
        assert (out.mean(dim=(0, 1)) - expected).abs().max() < 0.03, scale
    # Without a condition the guide is the unconditional model.
    out = _run(denoise, schedule, [ClassifierFree(3.0)], n=2048)
    assert out.mean().abs() < 0.03


def test_guides_compose(gaussian) -> None:
    mean, cov = gaussian
    schedule = build_schedule("cosine")
    mask = torch.zeros(6, 4, dtype=torch.bool)
    mask[0] = True
    values = torch.full((6, 4), 0.25, dtype=torch.float64)
    out = _run(gaussian_denoiser(mean, cov, schedule), schedule,
               [Project(lambda x: x.clamp(-0.5, 0.5)), Inpaint(mask, values)])
    assert torch.all(out[:, 0] == 0.25) and out.abs().max() <= 0.5


def test_inpaint_rejects_bad_masks() -> None:
    with pytest.raises(ShapeError, match="mask must be boolean"):
        Inpaint(torch.zeros(3, 4), torch.zeros(3, 4))
    with pytest.raises(ShapeError, match="do not broadcast"):
        Inpaint(torch.zeros(3, 4, dtype=torch.bool), torch.zeros(5, 4))
    schedule = build_schedule("cosine")
    guide = Inpaint(torch.zeros(3, 4, dtype=torch.bool), torch.zeros(3, 4))
    with pytest.raises(ShapeError, match=r"does not fit sequences of shape \(2, 6, 4\)"):
        guide.prepare(torch.zeros(2, 6, 4), torch.ones(2, 6), schedule, None)


def test_guides_never_see_undefined_context_tokens_under_multistep_solvers(gaussian) -> None:
    """DPM-Solver++ leaves level-0 tokens undefined in its raw step (0/0); a projection mixing frames
    must still see the clean context, and the context must come out bit-identical."""
    mean, cov = gaussian
    schedule = build_schedule("cosine")
    plan = plans.with_context(plans.full_sequence(4, 10), [0])
    context = torch.full((8, 4, 4), 0.7, dtype=torch.float64)
    x = samplers.initial_state(context.shape, plan, schedule, context=context, dtype=torch.float64)
    seen_nan = []

    def smooth(z: torch.Tensor) -> torch.Tensor:  # mixes neighbouring frames
        seen_nan.append(bool(torch.isnan(z).any()))
        return 0.5 * z + 0.25 * (torch.roll(z, 1, dims=1) + torch.roll(z, -1, dims=1))

    out = samplers.sample(gaussian_denoiser(mean, cov, schedule), x, plan, schedule, solver="dpmpp2m",
                          guides=[Project(smooth, on_prediction=False)])
    assert not any(seen_nan) and torch.isfinite(out).all()
    assert torch.all(out[:, 0] == 0.7)
