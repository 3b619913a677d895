"""Trained models through the engine's other paths: classifier-free guidance after condition dropout,
and rolling generation (`stream`) far past the training horizon after rolling training."""

from __future__ import annotations

import math

import pytest
import torch

from trajdiff.core import plans, samplers
from trajdiff.core.guidance import ClassifierFree
from trajdiff.core.model import DiffusionModel
from trajdiff.core.training import TrainConfig, TrainData, Trainer


def circles(count: int, horizon: int, radius: torch.Tensor, seed: int) -> torch.Tensor:
    """Points going round circles: [count, horizon, 2], random phase and speed, given radius per row."""
    g = torch.Generator().manual_seed(seed)
    speed = 0.2 + 0.2 * torch.rand(count, 1, generator=g)
    phase = 2 * math.pi * torch.rand(count, 1, generator=g)
    angle = phase + speed * torch.arange(horizon)[None, :]
    return radius[:, None, None] * torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1)


def radius(x: torch.Tensor) -> torch.Tensor:
    return x.norm(dim=-1)


@pytest.fixture(scope="module")
def conditional_model() -> DiffusionModel:
    torch.manual_seed(0)
    labels = torch.randint(0, 2, (2048,), generator=torch.Generator().manual_seed(1))
    data = circles(2048, 12, 0.5 + labels.float(), seed=2)  # class 0: radius 0.5, class 1: radius 1.5
    cond = torch.nn.functional.one_hot(labels, 2).float()
    model = DiffusionModel({"kind": "transformer", "dim": 2, "cond_dim": 2, "width": 48, "depth": 2, "heads": 4})
    config = TrainConfig(steps=400, batch_size=64, lr=2e-3, warmup_steps=50, noise="shared", cond_dropout=0.2,
                         progress=False)
    Trainer(model, TrainData(data, cond=cond), config).fit()
    return model


def test_classifier_free_guidance_follows_the_condition(conditional_model) -> None:
    model = conditional_model
    plan = plans.full_sequence(12, 20)

    def mean_radius(label: int | None, scale: float) -> float:
        g = torch.Generator().manual_seed(3)
        cond = None if label is None else torch.nn.functional.one_hot(torch.full((256,), label), 2).float()
        x = samplers.initial_state((256, 12, 2), plan, model.schedule, generator=g)
        out = samplers.sample(model.denoiser(), x, plan, model.schedule, solver="dpmpp2m", cond=cond,
                              guides=[ClassifierFree(scale)], generator=g)
        return float(radius(out).mean())

    small, large, free = mean_radius(0, 1.0), mean_radius(1, 1.0), mean_radius(None, 1.0)
    assert abs(small - 0.5) < 0.2 and abs(large - 1.5) < 0.25
    assert small < free < large  # the unconditional model (trained by dropout) sits between the classes
    assert mean_radius(1, 2.0) > large - 0.05  # guidance scale > 1 pushes further towards the condition


def test_stream_keeps_going_far_past_the_training_horizon() -> None:
    torch.manual_seed(0)
    context, window = 6, 6
    data = circles(2048, context + window, torch.ones(2048), seed=4)
    model = DiffusionModel({"kind": "transformer", "dim": 2, "width": 48, "depth": 2, "heads": 4})
    config = TrainConfig(steps=400, batch_size=64, lr=2e-3, warmup_steps=50, noise="rolling", window=window,
                         progress=False)
    Trainer(model, TrainData(data), config).fit()
    history = circles(64, context, torch.ones(64), seed=5)
    tokens = samplers.stream(model.denoiser(), model.schedule, window=window, batch=64, dim=2, context=history,
                             substeps=3, solver="ddim", generator=torch.Generator().manual_seed(6))
    produced = torch.stack([next(tokens) for _ in range(8 * (context + window))], dim=1)  # 8x the horizon
    radii = radius(produced)
    # Neither drifting away nor collapsing: the circle's radius holds in every stretch of the stream.
    for block in radii.split(context + window, dim=1):
        assert 0.75 < float(block.mean()) < 1.25
    # Nor freezing: the points keep going round at a speed the training data had (0.2-0.4 rad/step).
    angle = torch.atan2(produced[..., 1], produced[..., 0])
    step = torch.remainder(angle[:, 1:] - angle[:, :-1] + math.pi, 2 * math.pi) - math.pi
    assert 0.12 < float(step.abs().median()) < 0.5
