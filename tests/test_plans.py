from __future__ import annotations

import pytest
import torch

from trajdiff.core import plans
from trajdiff.core.schedules import build_schedule
from trajdiff.errors import PlanError


def _is_plan(plan: torch.Tensor, horizon: int) -> None:
    plans.validate_plan(plan, horizon)
    assert torch.all(plan[0] == 1.0) and torch.all(plan[-1] == 0.0)


def test_full_sequence_shape_and_levels() -> None:
    plan = plans.full_sequence(horizon=7, steps=10)
    assert plan.shape == (11, 7)
    _is_plan(plan, 7)
    assert torch.all(plan == plan[:, :1])  # every column equal
    torch.testing.assert_close(plan[:, 0], torch.linspace(1, 0, 11, dtype=torch.float64))


def test_autoregressive_finishes_each_chunk_before_the_next_starts() -> None:
    plan = plans.autoregressive(horizon=6, steps=4, chunk=2)
    assert plan.shape == (3 * 4 + 1, 6)
    _is_plan(plan, 6)
    for chunk in range(3):
        cols = slice(2 * chunk, 2 * chunk + 2)
        active = ((plan[:-1, cols] > 0) & (plan[:-1, cols] < 1)) | (plan[1:, cols] != plan[:-1, cols])
        rows = active.any(1).nonzero().flatten()
        assert rows.min() == 4 * chunk and rows.max() == 4 * chunk + 3
        # When this chunk starts, everything before it is clean and everything after is pure noise.
        assert torch.all(plan[4 * chunk, : 2 * chunk] == 0) and torch.all(plan[4 * chunk + 4, 2 * chunk + 2:] == 1)


def test_pyramid_staggers_tokens_by_the_uncertainty_scale() -> None:
    plan = plans.pyramid(horizon=5, steps=8, uncertainty=2)
    assert plan.shape == (8 + 4 * 2 + 1, 5)
    _is_plan(plan, 5)
    # Near future always at most as noisy as far future (row-wise monotone in the token index).
    assert torch.all(plan[:, 1:] >= plan[:, :-1])
    # Token t starts moving at row 2t and is clean at row 8 + 2t.
    for t in range(5):
        assert plan[2 * t, t] == 1 and plan[2 * t + 1, t] < 1 and plan[8 + 2 * t, t] == 0


def test_rolling_plan_lowers_levels_by_one_over_window_per_token() -> None:
    window, substeps = 4, 2
    plan = plans.rolling(horizon=10, window=window, substeps=substeps)
    _is_plan(plan, 10)
    drop = plan[:-1] - plan[1:]
    moving = drop > 0
    torch.testing.assert_close(drop[moving], torch.full_like(drop[moving], 1 / (window * substeps)))
    # A token finishes every `substeps` rows once running; at most `window` tokens are in motion per row.
    assert int(moving.sum(1).max()) <= window
    finish_rows = [int((plan[:, t] == 0).nonzero()[0]) for t in range(10)]
    assert all(b - a == substeps for a, b in zip(finish_rows, finish_rows[1:], strict=False))


def test_staircase_is_the_rolling_steady_state() -> None:
    torch.testing.assert_close(plans.staircase(4), torch.tensor([0.25, 0.5, 0.75, 1.0], dtype=torch.float64))
    assert torch.all(plans.staircase(4, offset=4) == 1)


def test_with_context_holds_tokens_clean_in_every_row() -> None:
    plan = plans.with_context(plans.pyramid(6, 5, 1), [0, 1, 5])
    assert torch.all(plan[:, [0, 1, 5]] == 0)
    plans.validate_plan(plan, 6)
    mask = torch.tensor([True, False, False])
    assert torch.all(plans.with_context(plans.full_sequence(3, 2), mask)[:, 0] == 0)


def test_warm_start_plan_begins_at_the_given_level() -> None:
    plan = plans.full_sequence(4, steps=3, start=0.5)
    assert plan.shape == (4, 4) and torch.all(plan[0] == 0.5) and torch.all(plan[-1] == 0)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: plans.full_sequence(0, 10), "at least one token"),
        (lambda: plans.full_sequence(5, 0), "at least one step"),
        (lambda: plans.pyramid(5, 3, -1), "delay must be >= 0"),
        (lambda: plans.full_sequence(5, 3, start=1.5), r"start level must be in \(0, 1\]"),
        (lambda: plans.rolling(5, 0), "window must be >= 1"),
        (lambda: plans.with_context(plans.full_sequence(3, 2), [7]), "do not fit a plan over 3 tokens"),
        (lambda: plans.validate_plan(torch.tensor([[0.0, 1.0], [1.0, 1.0]])), "token 0 rises from 0.0000 to 1.0000"),
        (lambda: plans.validate_plan(torch.tensor([[1.5], [0.0]])), r"in \[0, 1\]"),
        (lambda: plans.validate_plan(torch.ones(3)), r"\[S\+1, T\]"),
        (lambda: plans.validate_plan(plans.full_sequence(4, 2), horizon=6), "covers 4 tokens but the sequence has 6"),
        (lambda: plans.full_sequence(4, 10, spacing="logsnr"), "needs? the schedule|pass schedule="),
        (lambda: plans.full_sequence(4, 10, spacing="cubic", schedule=build_schedule("flow")), "unknown spacing"),
        (lambda: plans.spacing_levels(10, "logsnr", build_schedule("flow"), band=(2.0, 1.0)), "low < high"),
    ],
)
def test_bad_plans_are_clear_errors(make, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        make()


def _lam(schedule, levels: torch.Tensor) -> torch.Tensor:
    alpha, sigma = schedule.alpha_sigma(levels)
    return torch.log(alpha) - torch.log(sigma)


@pytest.mark.parametrize("name", ["cosine", "linear", "edm", "flow"])
def test_logsnr_spacing_walks_one_band_evenly_under_every_schedule(name: str) -> None:
    """10 steps: from level 1 into log(alpha/sigma) = -3, 8 equal steps to +3, then to 0, whatever the
    schedule; the band widens like log(steps) (+-6 at 100 steps) and starts at level 1 once it reaches
    the schedule's start."""
    schedule = build_schedule(name)
    plan = plans.full_sequence(3, 10, spacing="logsnr", schedule=schedule)
    _is_plan(plan, 3)
    assert plan.shape == (11, 3) and torch.all(plan == plan[:, :1])
    lam = _lam(schedule, plan[1:-1, 0])
    torch.testing.assert_close(lam, torch.linspace(-3, 3, 9, dtype=torch.float64), rtol=0, atol=1e-9)
    wide = _lam(schedule, plans.full_sequence(1, 100, spacing="logsnr", schedule=schedule)[1:-1, 0])
    steps = wide[1:] - wide[:-1]
    top = min(6.0, float(_lam(schedule, torch.tensor(plans.LEVEL_FLOOR, dtype=torch.float64))))
    assert abs(float(wide[-1]) - top) < 1e-9 and torch.allclose(steps, steps[:1], atol=1e-8)
    if name == "cosine":  # lambda(1) = -7.5 > -9 at 1000 steps: even steps from level 1 itself
        grid = _lam(schedule, plans.full_sequence(1, 1000, spacing="logsnr", schedule=schedule)[:-1, 0])
        assert abs(float(grid[0]) + 7.5) < 1e-6 and torch.allclose(grid[1:] - grid[:-1], grid[1:2] - grid[:1])


def test_logsnr_spacing_from_a_warm_start_inside_the_band() -> None:
    schedule = build_schedule("cosine")
    plan = plans.full_sequence(2, 6, start=0.5, spacing="logsnr", schedule=schedule)
    assert float(plan[0, 0]) == 0.5 and float(plan[-1, 0]) == 0.0
    lam = _lam(schedule, plan[:-1, 0])
    torch.testing.assert_close(lam[1:] - lam[:-1], torch.full((5,), float(lam[-1] - lam[0]) / 5, dtype=torch.float64))
    clean = plans.full_sequence(1, 10, start=0.01, spacing="logsnr", schedule=schedule)  # cleaner than the band
    _is_plan(clean / 0.01, 1)
    lam = _lam(schedule, clean[:-1, 0])
    torch.testing.assert_close(lam[-1] - lam[0], torch.tensor(6.0, dtype=torch.float64))
    torch.testing.assert_close(lam[1:] - lam[:-1], torch.full((9,), 6.0 / 9, dtype=torch.float64))


def test_karras_spacing_gives_edm_sigmas() -> None:
    """sigma / alpha = (80^(1/7) + i/9 (0.002^(1/7) - 80^(1/7)))^7, i = 1..9, after the start; under
    the EDM schedule (sigma(1) = 80) that is its uniform plan of 9 steps, plus a step to 0."""
    i = torch.arange(1, 10, dtype=torch.float64)
    expected = (80 ** (1 / 7) + i / 9 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    for name in ("cosine", "edm"):
        schedule = build_schedule(name)
        plan = plans.full_sequence(1, 10, spacing="karras", schedule=schedule)[:, 0]
        alpha, sigma = schedule.alpha_sigma(plan[1:-1])
        torch.testing.assert_close(sigma / alpha, expected, rtol=1e-7, atol=0)  # EDM's last: sigma(1e-9)
        assert float(plan[0]) == 1.0 and float(plan[-1]) == 0.0
    edm = plans.full_sequence(1, 10, spacing="karras", schedule=build_schedule("edm"))[:-1, 0]
    torch.testing.assert_close(edm[:-1], plans.full_sequence(1, 9)[:-1, 0], rtol=0, atol=1e-9)


def test_spacing_keeps_the_shape_of_staggered_plans_and_the_default() -> None:
    """Every token walks the same spaced levels, shifted by its delay, so pyramids stay pyramids; the
    uniform spacing is the plan as before, bit for bit."""
    schedule = build_schedule("cosine")
    walk = plans.spacing_levels(8, "logsnr", schedule).flip(0)
    plan = plans.pyramid(4, 8, uncertainty=2, spacing="logsnr", schedule=schedule)
    _is_plan(plan, 4)
    for token in range(4):
        column = plan[:, token]
        moving = column[(column < 1) | (torch.arange(len(column)) == 2 * token)]
        assert torch.equal(column[2 * token: 2 * token + 9], walk) and torch.equal(moving[:9], walk)
    assert torch.all(plan[:, 1:] >= plan[:, :-1])  # near future cleaner than far future
    for make in (lambda **kw: plans.full_sequence(5, 7, **kw), lambda **kw: plans.pyramid(5, 6, 1.5, **kw),
                 lambda **kw: plans.rolling(5, 3, 2, **kw), lambda **kw: plans.autoregressive(5, 3, 2, **kw)):
        assert torch.equal(make(), make(spacing="uniform"))
    fractional = plans.pyramid(3, 8, uncertainty=2.5, spacing="logsnr", schedule=schedule)
    plans.validate_plan(fractional, 3)
    assert torch.equal(fractional[:, 0], torch.cat([walk, torch.zeros(fractional.shape[0] - 9, dtype=torch.float64)]))
