"""One random stream per sequence, so that a sequence's noise does not depend on the batch it is sampled in.

Why: a forecast of a large log is cut into groups (partitions, chunks, workers of a cluster). With one
generator per batch, the noise a sequence gets depends on which sequences were drawn before it, so the
same entity would be forecast differently by a run that groups the data differently. `Streams` gives every
sequence its own `torch.Generator`; a batch of sequences (each repeated ``samples`` times, sequence-major,
as `trajdiff.core.conditional.sample_conditional` lays them out) draws each sequence's rows from its own
stream, so any grouping of the same sequences gives the same draws. `normal` is the one draw call of the
samplers, solvers and guides: a plain `torch.Generator` (or None) draws exactly as ``torch.randn`` does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from trajdiff.errors import ShapeError

__all__ = ["Streams", "normal"]


class Streams:
    """Independent standard normal streams, one per sequence, seeded with ``seeds`` (one per sequence)."""

    def __init__(self, seeds: Sequence[int] = (), *, generators: list[torch.Generator] | None = None) -> None:
        self.generators = generators if generators is not None else [
            torch.Generator().manual_seed(int(seed)) for seed in seeds]

    def __len__(self) -> int:
        return len(self.generators)

    def part(self, part: slice) -> Streams:
        """The streams of the sequences in ``part`` (the same generators: draws advance them)."""
        return Streams(generators=self.generators[part])

    def normal(self, shape: Sequence[int], *, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> Tensor:
        """Noise ``shape`` whose leading rows are the sequences in order, ``shape[0] / len(self)`` rows each,
        every sequence's rows drawn from its own stream (on the CPU, then moved to ``device``)."""
        shape = tuple(shape)
        count = len(self.generators)
        if count == 0 or shape[0] % count:
            raise ShapeError(f"{shape[0]} rows of noise cannot be shared out among {count} sequence streams; "
                             "pass one stream per sequence of the batch")
        per = (shape[0] // count, *shape[1:])
        drawn = torch.cat([torch.randn(per, generator=generator, dtype=dtype) for generator in self.generators])
        return drawn if device is None else drawn.to(device)


def normal(shape: Sequence[int], generator: torch.Generator | Streams | None, *, dtype: torch.dtype = torch.float32,
           device: torch.device | str | None = None) -> Tensor:
    """Standard normal noise of ``shape`` from ``generator``: a `Streams` (one stream per sequence) or a
    ``torch.Generator`` / None (then exactly ``torch.randn(shape, generator=..., dtype=..., device=...)``)."""
    if isinstance(generator, Streams):
        return generator.normal(shape, dtype=dtype, device=device)
    return torch.randn(tuple(shape), generator=generator, dtype=dtype, device=device)
