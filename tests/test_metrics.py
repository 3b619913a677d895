from __future__ import annotations

import math

import pytest
import torch

from trajdiff.core.metrics import (
    ade,
    constraint_violation,
    crps_samples,
    energy_score,
    fde,
    interval_coverage,
    min_ade,
    min_fde,
)
from trajdiff.errors import ConfigError, ShapeError


def _gaussian_crps(mu: float, s: float, y: torch.Tensor) -> torch.Tensor:
    z = (y - mu) / s
    phi = torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    Phi = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    return s * (z * (2 * Phi - 1) + 2 * phi - 1 / math.sqrt(math.pi))


def _brute_force_crps(samples: torch.Tensor, true: torch.Tensor, fair: bool) -> torch.Tensor:
    n = samples.shape[0]
    abs_term = (samples - true).abs().mean(0)
    pair = (samples[:, None] - samples[None, :]).abs().sum((0, 1))
    return abs_term - 0.5 * pair / (n * (n - 1) if fair else n * n)


def test_ade_fde_by_hand() -> None:
    true = torch.zeros(1, 3, 2)
    pred = torch.tensor([[[3.0, 4.0], [0.0, 1.0], [6.0, 8.0]]])
    assert ade(pred, true).item() == pytest.approx((5 + 1 + 10) / 3)
    assert fde(pred, true).item() == pytest.approx(10.0)
    assert ade(pred, true, reduction="none").shape == (1,)
    with pytest.raises(ShapeError, match=r"differ in \[T, D\]"):
        ade(pred, torch.zeros(1, 4, 2))


def test_min_ade_fde_bounded_by_each_sample() -> None:
    g = torch.Generator().manual_seed(0)
    samples = torch.randn(6, 5, 8, 2, generator=g)  # [S, B, T, D]
    true = torch.randn(5, 8, 2, generator=g)
    per_item = min_ade(samples, true, reduction="none")
    per_item_f = min_fde(samples, true, reduction="none")
    assert per_item.shape == (5,)
    for s in range(6):
        assert bool((per_item <= ade(samples[s], true, reduction="none") + 1e-7).all())
        assert bool((per_item_f <= fde(samples[s], true, reduction="none") + 1e-7).all())
        assert min_ade(samples, true) <= ade(samples[s], true) + 1e-7
    assert torch.allclose(per_item, ade(samples, true, reduction="none").min(0).values)
    assert min_ade(samples, true).item() == pytest.approx(per_item.mean().item())
    with pytest.raises(ShapeError, match="sample axis first"):
        min_ade(samples[0], true)


@pytest.mark.parametrize(("mu", "s"), [(0.0, 1.0), (3.0, 0.5)])
def test_crps_matches_gaussian_closed_form(mu: float, s: float) -> None:
    g = torch.Generator().manual_seed(1)
    y = torch.tensor([-1.0, 0.0, 0.3, 1.5, 4.0], dtype=torch.float64) * s + mu
    samples = mu + s * torch.randn(500_000, 1, dtype=torch.float64, generator=g)
    est = crps_samples(samples.expand(-1, 5), y)
    assert est.shape == (5,)
    assert torch.allclose(est, _gaussian_crps(mu, s, y), rtol=0.01)


def test_crps_point_mass_is_absolute_error() -> None:
    true = torch.tensor([[0.5, -2.0], [3.0, 10.0]])
    point = torch.tensor([[1.0, 1.0], [3.0, -1.0]])
    for n in (1, 7):
        samples = point.expand(n, 2, 2)
        for estimator in ("fair", "nrg"):
            got = crps_samples(samples, true, estimator=estimator)  # type: ignore[arg-type]
            assert torch.allclose(got, (point - true).abs())


@pytest.mark.parametrize("fair", [True, False])
def test_sorted_formula_equals_brute_force(fair: bool) -> None:
    g = torch.Generator().manual_seed(2)
    samples = torch.randn(13, 4, 3, dtype=torch.float64, generator=g) * 2 + 1
    true = torch.randn(4, 3, dtype=torch.float64, generator=g)
    got = crps_samples(samples, true, estimator="fair" if fair else "nrg")
    assert torch.allclose(got, _brute_force_crps(samples, true, fair), atol=1e-12)
    assert crps_samples(samples, true, reduction="mean").shape == ()


def test_crps_is_stable_for_large_offsets() -> None:
    g = torch.Generator().manual_seed(3)
    base = torch.randn(64, 10, generator=g)
    true = torch.zeros(10)
    shifted = crps_samples(base + 1e4, true + 1e4)
    assert torch.allclose(shifted, crps_samples(base, true), atol=2e-3)


def test_energy_score() -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1, 5, 3, generator=g)
    y = torch.randn(5, 3, generator=g)
    assert torch.allclose(energy_score(x, y), torch.linalg.vector_norm(x[0] - y, dim=-1))
    samples = torch.randn(9, 5, 1, dtype=torch.float64, generator=g)  # D = 1 reduces to CRPS
    truth = torch.randn(5, 1, dtype=torch.float64, generator=g)
    assert torch.allclose(energy_score(samples, truth), crps_samples(samples[..., 0], truth[..., 0]))
    many = torch.randn(8, 4, 2, requires_grad=True)
    energy_score(many, torch.zeros(4, 2), reduction="mean").backward()
    assert many.grad is not None and bool(torch.isfinite(many.grad).all())


@pytest.mark.parametrize("level", [0.5, 0.9])
def test_coverage_of_gaussian_samples_is_nominal(level: float) -> None:
    g = torch.Generator().manual_seed(5)
    samples = torch.randn(200, 20_000, generator=g)
    true = torch.randn(20_000, generator=g)
    cov = interval_coverage(samples, true, level)
    assert abs(cov.item() - level) < 0.02
    per = interval_coverage(samples[:, :10], true[:10], level, reduction="none")
    assert per.shape == (10,) and set(per.tolist()) <= {0.0, 1.0}
    with pytest.raises(ConfigError):
        interval_coverage(samples, true, 1.5)


def test_constraint_violation() -> None:
    v = torch.tensor([-2.0, 0.0, 0.5, 1.0, 3.0])
    assert constraint_violation(v, lower=0.0, upper=1.0).item() == pytest.approx((2.0 + 2.0) / 5)
    assert constraint_violation(v, lower=-5.0).item() == 0.0
    assert constraint_violation(v, upper=torch.tensor(2.0), reduction="none").tolist() == [0, 0, 0, 0, 1]
    per_feature = constraint_violation(torch.tensor([[1.0, 5.0]]), upper=torch.tensor([0.0, 10.0]))
    assert per_feature.item() == pytest.approx(0.5)
    with pytest.raises(ConfigError):
        constraint_violation(v)
    with pytest.raises(ConfigError):
        constraint_violation(v, lower=2.0, upper=1.0)
