from __future__ import annotations

import math

import pytest
import torch

from trajdiff.core.parametrize import PARAMETRIZATIONS, target, to_prediction, x0_error_scale
from trajdiff.core.schedules import SCHEDULES, build_schedule
from trajdiff.errors import ConfigError

ALL = sorted(SCHEDULES)


@pytest.mark.parametrize("name", ALL)
def test_level_zero_is_exactly_clean_and_level_one_is_noise(name: str) -> None:
    schedule = build_schedule(name)
    alpha, sigma = schedule.alpha_sigma(torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert alpha[0].item() == 1.0 and sigma[0].item() == 0.0
    # At level 1 the signal is negligible against the noise.
    assert alpha[1] / sigma[1] < 2e-2  # EDM: 1/80


@pytest.mark.parametrize("name", ALL)
def test_snr_decreases_with_level(name: str) -> None:
    schedule = build_schedule(name)
    k = torch.linspace(0.01, 0.99, 200, dtype=torch.float64)
    log_snr = schedule.log_snr(k)
    assert torch.all(log_snr[1:] < log_snr[:-1])


@pytest.mark.parametrize("name", ALL)
def test_derivatives_match_finite_differences(name: str) -> None:
    schedule = build_schedule(name)
    k = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    h = 1e-6
    (a_plus, s_plus), (a_minus, s_minus) = schedule.alpha_sigma(k + h), schedule.alpha_sigma(k - h)
    d_alpha, d_sigma = schedule.derivatives(k)
    torch.testing.assert_close(d_alpha, (a_plus - a_minus) / (2 * h), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(d_sigma, (s_plus - s_minus) / (2 * h), rtol=1e-5, atol=1e-6)


def test_variance_preserving_schedules_preserve_variance() -> None:
    k = torch.linspace(0, 1, 101, dtype=torch.float64)
    for name in ("cosine", "linear"):
        alpha, sigma = build_schedule(name).alpha_sigma(k)
        torch.testing.assert_close(alpha.square() + sigma.square(), torch.ones_like(k))


def test_closed_forms() -> None:
    k = torch.tensor([0.3], dtype=torch.float64)
    alpha, sigma = build_schedule("flow").alpha_sigma(k)
    assert alpha.item() == pytest.approx(0.7) and sigma.item() == pytest.approx(0.3)
    edm = build_schedule({"kind": "edm", "sigma_min": 0.002, "sigma_max": 80.0, "rho": 7.0})
    _, sigma = edm.alpha_sigma(torch.tensor([1.0, 0.5], dtype=torch.float64))
    assert sigma[0].item() == pytest.approx(80.0)
    mid = (0.002 ** (1 / 7) + 0.5 * (80 ** (1 / 7) - 0.002 ** (1 / 7))) ** 7
    assert sigma[1].item() == pytest.approx(mid)
    linear = build_schedule("linear")
    alpha, _ = linear.alpha_sigma(torch.tensor([1.0], dtype=torch.float64))
    assert alpha.item() == pytest.approx(math.exp(-0.5 * (0.1 + 0.5 * 19.9)))
    cosine = build_schedule("cosine")
    assert cosine.log_snr(torch.tensor([1.0], dtype=torch.float64)).item() == pytest.approx(-15.0, abs=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_config_round_trip(name: str) -> None:
    schedule = build_schedule(name)
    rebuilt = build_schedule(schedule.config)
    k = torch.rand(10)
    for a, b in zip(schedule.alpha_sigma(k), rebuilt.alpha_sigma(k), strict=True):
        assert torch.equal(a, b)


def test_unknown_schedule_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="unknown schedule 'karras'.*cosine"):
        build_schedule("karras")
    with pytest.raises(ConfigError, match="bad parameters for schedule 'cosine'"):
        build_schedule({"kind": "cosine", "beta_max": 3})


@pytest.mark.parametrize("kind", PARAMETRIZATIONS)
@pytest.mark.parametrize("name", ALL)
def test_parametrizations_round_trip(kind: str, name: str) -> None:
    """The target of each kind, read back as a prediction, recovers x0 and eps exactly."""
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(3, 5, 2, generator=g, dtype=torch.float64)
    eps = torch.randn(3, 5, 2, generator=g, dtype=torch.float64)
    k = torch.rand(3, 5, generator=g, dtype=torch.float64) * 0.9 + 0.05
    alpha, sigma = (v[..., None] for v in build_schedule(name).alpha_sigma(k))
    x = alpha * x0 + sigma * eps
    prediction = to_prediction(target(x0, eps, alpha, sigma, kind), x, alpha, sigma, kind)
    torch.testing.assert_close(prediction.x0, x0)
    torch.testing.assert_close(prediction.eps, eps)


@pytest.mark.parametrize("kind", PARAMETRIZATIONS)
def test_error_scale_relates_target_error_to_x0_error(kind: str) -> None:
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(4, 6, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(4, 6, 3, generator=g, dtype=torch.float64)
    k = torch.rand(4, 6, generator=g, dtype=torch.float64) * 0.9 + 0.05
    alpha, sigma = (v[..., None] for v in build_schedule("cosine").alpha_sigma(k))
    x = alpha * x0 + sigma * eps
    x0_wrong = x0 + 0.1 * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    eps_wrong = (x - alpha * x0_wrong) / sigma  # the noise consistent with x and the wrong x0
    target_error = (target(x0_wrong, eps_wrong, alpha, sigma, kind) - target(x0, eps, alpha, sigma, kind)).square()
    x0_error = (x0_wrong - x0).square()
    torch.testing.assert_close(target_error, x0_error_scale(alpha, sigma, kind) * x0_error)


def test_clean_tokens_predict_themselves() -> None:
    x = torch.randn(1, 3, 2)
    alpha = torch.tensor([1.0, 0.8, 0.6])[None, :, None]
    sigma = torch.tensor([0.0, 0.6, 0.8])[None, :, None]
    prediction = to_prediction(torch.full_like(x, 7.0), x, alpha, sigma, "eps")
    assert torch.equal(prediction.x0[:, 0], x[:, 0])
    assert torch.all(prediction.eps[:, 0] == 0)


def test_unknown_parametrization() -> None:
    x = torch.zeros(1, 1, 1)
    with pytest.raises(ConfigError, match="unknown parametrization 'score'"):
        to_prediction(x, x, x + 1, x, "score")
