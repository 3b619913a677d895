from __future__ import annotations

import pytest
import torch

from trajdiff.core import plans
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
    ],
)
def test_bad_plans_are_clear_errors(make, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        make()
