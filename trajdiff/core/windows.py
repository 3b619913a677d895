"""Windows: cutting Episodes into fixed-length [N, L, D] tensors, and checking such batches.

Why: networks train and sample on equal-length windows, while Episodes hold sequences of any
length. Cutting them here, with a mask for padded rows and the (sequence, start row) each window
came from, keeps that bookkeeping in one place; :func:`check_sequence_batch` is the matching check
on a batch that reaches the engine from elsewhere, with messages naming the offending entry.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trajdiff.core.data import Episodes
from trajdiff.errors import ConfigError, DataError, ShapeError

__all__ = ["Windows", "check_sequence_batch", "windows", "windows_with_index"]


@dataclass(frozen=True)
class Windows:
    """Sliding windows with bookkeeping.

    ``data`` [N, L, D]; ``mask`` [N, L] bool, True for real rows (False only for padding);
    ``index`` [N, 2] int64 of (sequence index, start row); ``skipped`` sequences shorter than L that
    produced no window (always 0 with pad=True), listed by id in ``skipped_ids``.
    """

    data: torch.Tensor
    mask: torch.Tensor
    index: torch.Tensor
    skipped: int
    skipped_ids: list[str]


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def windows_with_index(
    episodes: Episodes,
    length: int,
    stride: int = 1,
    pad: bool = False,
    *,
    dtype: torch.dtype = torch.float32,
) -> Windows:
    """All windows of ``length`` rows every ``stride`` rows, with mask, origin and skip count.

    A sequence with T >= length gives (T - length) // stride + 1 windows. A shorter one is skipped,
    or with ``pad=True`` gives one window padded by repeating its last row (mask False there).
    Raises DataError if no window at all can be made.
    """
    if not isinstance(episodes, Episodes):
        raise DataError(
            f"expected Episodes, got {type(episodes).__name__}; wrap arrays as "
            "Episodes(sequences=[...], columns=[...])"
        )
    length = _check_positive_int(length, "window length")
    stride = _check_positive_int(stride, "stride")
    if len(episodes) == 0:
        raise DataError("episodes holds no sequences; there is nothing to cut windows from")
    lengths = episodes.lengths
    counts = [(t - length) // stride + 1 if t >= length else (1 if pad else 0) for t in lengths]
    n = sum(counts)
    if n == 0:
        longest = int(np.argmax(lengths))
        raise DataError(
            f"no window of length {length} can be made: the longest sequence ({episodes.ids[longest]!r}) "  # type: ignore[index]
            f"has {lengths[longest]} rows; use a window length <= {lengths[longest]} or pad=True"
        )
    d = episodes.dim
    data = torch.empty((n, length, d), dtype=dtype)
    mask = torch.ones((n, length), dtype=torch.bool)
    index = torch.empty((n, 2), dtype=torch.int64)
    skipped_ids: list[str] = []
    pos = 0
    for i, (seq, t, c) in enumerate(zip(episodes.sequences, lengths, counts, strict=True)):
        if c == 0:
            skipped_ids.append(episodes.ids[i])  # type: ignore[index]
            continue
        if t >= length:
            view = np.lib.stride_tricks.sliding_window_view(seq, length, axis=0)[::stride]  # [c, D, L]
            chunk = np.array(np.swapaxes(view, 1, 2), order="C")  # a writable copy
            starts = torch.arange(0, c * stride, stride, dtype=torch.int64)
        else:
            chunk = np.concatenate([seq, np.repeat(seq[-1:], length - t, axis=0)])[None]
            mask[pos, t:] = False
            starts = torch.zeros(1, dtype=torch.int64)
        data[pos : pos + c] = torch.from_numpy(chunk).to(dtype)
        index[pos : pos + c, 0] = i
        index[pos : pos + c, 1] = starts
        pos += c
    return Windows(data=data, mask=mask, index=index, skipped=len(skipped_ids), skipped_ids=skipped_ids)


def windows(
    episodes: Episodes,
    length: int,
    stride: int = 1,
    pad: bool = False,
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """All sliding windows as a tensor [N, length, D]; see :func:`windows_with_index`.

    Warns when sequences shorter than ``length`` are skipped (use pad=True to keep them, or
    windows_with_index to get the mask, origins and skipped count).
    """
    w = windows_with_index(episodes, length, stride, pad, dtype=dtype)
    if w.skipped:
        warnings.warn(
            f"{w.skipped} of {len(episodes)} sequences are shorter than the window length {length} and were "
            f"skipped (first: {w.skipped_ids[0]!r}); pass pad=True to keep them, or use windows_with_index "
            "to see which",
            UserWarning,
            stacklevel=2,
        )
    return w.data


def check_sequence_batch(x: Any, name: str = "x", *, dim: int | None = None) -> torch.Tensor:
    """Check that ``x`` is a finite floating tensor [B, T, D] (with D == ``dim`` if given); return it."""
    if not isinstance(x, torch.Tensor):
        raise ShapeError(
            f"{name} must be a torch.Tensor [B, T, D], got {type(x).__name__}; convert with torch.as_tensor"
        )
    if not x.is_floating_point():
        raise ShapeError(f"{name} has dtype {x.dtype}; sequences must be floating point, use {name}.float()")
    if x.ndim != 3:
        hint = f"; add a batch dimension with {name}.unsqueeze(0)" if x.ndim == 2 else ""
        raise ShapeError(f"{name} must have shape [B, T, D], got {tuple(x.shape)}{hint}")
    if dim is not None and x.shape[-1] != dim:
        raise ShapeError(
            f"{name} has {x.shape[-1]} features (shape {tuple(x.shape)}) but {dim} are expected; "
            "use data with the features the model was trained on"
        )
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        b, t, d = (int(v) for v in torch.nonzero(~finite)[0])
        raise DataError(
            f"{name} has {x[b, t, d].item()} at batch {b}, time step {t}, feature {d}; clean or impute "
            "non-finite values (and check the normalizer) before passing it"
        )
    return x
