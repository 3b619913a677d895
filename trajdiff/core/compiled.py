"""Sampling under ``torch.compile``: a solver whose steps (the network's evaluation with the solver's arithmetic)
run as compiled code.

Why: on a CPU, every elementwise operation of a step (the prediction's conversion, the solver's update, the
masks) is one pass over the batch; compiled, they fuse into a few loops with the network's own. What it costs:
compiling takes tens of seconds to minutes on the first batch of each shape (the compiled code is cached on disk
for later processes), so it pays only for runs long enough to amortize that; `benchmarks/throughput.py` measures
both. Samples equal the uncompiled ones up to floating-point rounding (fused operations round differently).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from trajdiff.core.denoiser import Denoiser
from trajdiff.core.schedules import Schedule
from trajdiff.core.solvers import Row, Solver, State, get_solver
from trajdiff.core.streams import Streams


class CompiledSolver(Solver):
    """``solver`` (a name or a `Solver`) with its ``step`` compiled by ``torch.compile(**options)``; everything
    else (evaluations, state) is the solver's own."""

    def __init__(self, solver: str | Solver, **options: Any) -> None:
        self.solver = get_solver(solver)
        self.deterministic = self.solver.deterministic
        self.evaluations_per_step = self.solver.evaluations_per_step  # type: ignore[misc]
        self._step = torch.compile(self.solver.step, **options)

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.solver.name

    def evaluations(self, row_moves: list[bool], row_lands_noisy: list[bool]) -> int:
        return self.solver.evaluations(row_moves, row_lands_noisy)

    def init_state(self, x: Tensor) -> State:
        return self.solver.init_state(x)

    def shift_state(self, state: State, drop: int) -> State:
        return self.solver.shift_state(state, drop)

    def step(self, denoise: Denoiser, x: Tensor, row: Row, schedule: Schedule, *, cond: Tensor | None,
             state: State, generator: torch.Generator | Streams | None) -> Tensor:
        return self._step(denoise, x, row, schedule, cond=cond, state=state, generator=generator)

    def __repr__(self) -> str:
        return f"<Solver {self.name}, compiled>"
