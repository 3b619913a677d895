"""Training windows as indices into the episodes, encoded a batch at a time.

Why: every sliding window of every episode, encoded, is about ``length x D`` floats per row of data (192
rows x 3 columns: 2.3 KB per row in float32), so materializing them all made memory grow with the data
(a 2-million-row file needed more than 22 GB). A `WindowIndex` holds one offset per episode instead of
one entry per window, and a `WindowSource` cuts and encodes only the windows a training step draws.
Its batches equal those of the materialized windows (`TrainData`) for the same draw of positions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from trajdiff.errors import ConfigError, DataError, ShapeError

__all__ = ["WindowIndex", "WindowSource"]


class WindowIndex:
    """(episode, start row) of every window of ``length`` rows, step ``stride``, over sequences of the given
    ``lengths``, in episode order then start order (as a list of every pair would hold them), kept as one
    offset per episode: memory grows with the episodes, never with the windows."""

    def __init__(self, lengths: Sequence[int], length: int, stride: int = 1) -> None:
        if length < 1 or stride < 1:
            raise ConfigError(f"window length and stride must be >= 1, got {length}, {stride}")
        sizes = np.asarray(list(lengths), dtype=np.int64)
        counts = np.where(sizes >= length, (sizes - length) // stride + 1, 0)
        self.length, self.stride = int(length), int(stride)
        self.counts = counts
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)  # [E + 1]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, position: int) -> tuple[int, int]:
        episodes, starts = self.locate(np.asarray([position]))
        return int(episodes[0]), int(starts[0])

    def __iter__(self) -> Any:
        for episode in np.flatnonzero(self.counts):
            for start in range(0, int(self.counts[episode]) * self.stride, self.stride):
                yield int(episode), start

    @property
    def episodes(self) -> np.ndarray:
        """The episodes that give at least one window."""
        return np.flatnonzero(self.counts)

    def locate(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Window positions (in ``0..len-1``, negative ones from the end) -> (episodes, start rows), as arrays."""
        positions = np.asarray(positions, dtype=np.int64)
        n = len(self)
        positions = np.where(positions < 0, positions + n, positions)
        if positions.size and (positions.min() < 0 or positions.max() >= n):
            raise IndexError(f"window position out of range for {n} windows")
        episodes = np.searchsorted(self.offsets, positions, side="right") - 1
        return episodes, (positions - self.offsets[episodes]) * self.stride


class WindowSource:
    """Training windows cut from ``sequences`` at the positions of ``index`` and encoded when drawn.

    ``encode`` maps one window's raw rows ``[length, F]`` to tokens ``[T, D]``; ``augment`` (optional) maps a
    batch ``[n, T, D]`` to whole copies of it in order (``[k n, T, D]``, e.g. mirrored ones), so window
    ``p`` is copy ``p // len(index)`` of base window ``p % len(index)``, as in the materialized
    ``augment(all windows)``. ``labels`` (optional, one class per episode) condition the windows of each
    episode (one-hot over ``classes``); ``conditions`` (optional, ``[len(index), C]``, exclusive with labels) give
    each base window its own condition vector (e.g. a return). Memory: the index's per-episode offsets, and the
    conditions when given.

    Indexing (``source[i]``, ``source[i, :k]``, ``source[[i, j]]``, slices) encodes only the windows asked
    for; ``np.asarray(source)`` encodes them all (small data sets only)."""

    def __init__(self, sequences: Sequence[np.ndarray], index: WindowIndex, encode: Callable[[np.ndarray], Any],
                 augment: Callable[[np.ndarray], np.ndarray] | None = None, labels: np.ndarray | None = None,
                 classes: int = 0, conditions: np.ndarray | None = None) -> None:
        if len(index) == 0:
            raise DataError("no window to train on: no episode is as long as one window")
        self.sequences, self.index, self.encode, self.augment = sequences, index, encode, augment
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        if self.labels is not None and (len(self.labels) != len(index.counts) or classes < 1):
            raise ShapeError(f"labels must give one class per episode ({len(index.counts)}) with classes >= 1, got "
                             f"{len(self.labels)} and {classes}")
        self.classes = int(classes)
        self.conditions = None if conditions is None else np.asarray(conditions, dtype=np.float32)
        if self.conditions is not None and (self.conditions.ndim != 2 or len(self.conditions) != len(index)
                                            or self.labels is not None):
            raise ShapeError(f"conditions must be [windows, C] with one row per window ({len(index)}) and no labels, "
                             f"got {self.conditions.shape}{' and labels' if self.labels is not None else ''}")
        self.copies = 1
        self.drawn = [0, -1, 0]  # lowest and highest base position drawn by `take`, and how many draws
        probe = self._encode(np.arange(min(2, len(index))))
        self.tokens, self.dim = int(probe.shape[1]), int(probe.shape[2])
        if augment is not None:
            grown = np.asarray(augment(probe))
            if grown.ndim != 3 or len(grown) % len(probe) or tuple(grown.shape[1:]) != probe.shape[1:]:
                raise ConfigError(f"augment_windows turned {len(probe)} windows {tuple(probe.shape)} into "
                                  f"{tuple(grown.shape)}, not whole copies of them in order; windows are augmented "
                                  "per batch, so a domain's augmentation must return the given windows followed by "
                                  "whole copies of them")
            self.copies = len(grown) // len(probe)

    def __len__(self) -> int:
        return self.copies * len(self.index)

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self), self.tokens, self.dim

    def _encode(self, base: np.ndarray) -> np.ndarray:
        """Base windows (positions in the index) cut and encoded: ``[n, T, D]`` float32."""
        episodes, starts = self.index.locate(base)
        length = self.index.length
        encoded = [self.encode(self.sequences[e][s:s + length]) for e, s in zip(episodes, starts, strict=True)]
        return np.stack(encoded).astype(np.float32)

    def windows(self, positions: np.ndarray) -> np.ndarray:
        """The windows at ``positions`` (in ``0..len-1``), encoded and augmented: ``[n, T, D]`` float32."""
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        n = len(self.index)
        if positions.size and (positions.min() < 0 or positions.max() >= len(self)):
            raise IndexError(f"window position out of range for {len(self)} windows")
        x = self._encode(positions % n)
        if self.augment is None or self.copies == 1:
            return x
        grown = np.asarray(self.augment(x), dtype=np.float32)
        return grown[(positions // n) * len(positions) + np.arange(len(positions))]

    def window_labels(self, positions: np.ndarray) -> np.ndarray | None:
        """Each window's class (its episode's label), or None without labels."""
        if self.labels is None:
            return None
        episodes, _ = self.index.locate(np.asarray(positions, dtype=np.int64).reshape(-1) % len(self.index))
        return self.labels[episodes]

    def all_labels(self) -> np.ndarray | None:
        """Every window's class, in window order (one int per window: for recipes that need them all)."""
        if self.labels is None:
            return None
        return np.tile(np.repeat(self.labels, self.index.counts), self.copies)

    def take(self, index: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """A training batch for drawn window positions: ``(x [B, T, D], cond [B, C] (one-hot labels or the windows'
        conditions) or None, None)``."""
        positions = index.numpy()
        base = positions % len(self.index)
        low, high, draws = self.drawn
        self.drawn = [min(low, int(base.min())) if draws else int(base.min()), max(high, int(base.max())),
                      draws + len(base)]
        x = torch.from_numpy(self.windows(positions))
        labels = self.window_labels(positions)
        cond = None
        if labels is not None:
            cond = torch.nn.functional.one_hot(torch.from_numpy(labels), self.classes).float()
        if self.conditions is not None:
            cond = torch.from_numpy(self.conditions[base])
        return x, cond, None

    def describe(self) -> dict[str, Any]:
        """What a checkpoint records about the windows: how many, and the first and last (episode, start row) of
        the index and of the windows drawn so far (showing that draws span the whole data)."""
        low, high, draws = self.drawn
        out: dict[str, Any] = {"windows": len(self), "window_range": [list(self.index[0]), list(self.index[-1])]}
        if draws:
            out["windows_drawn"] = {"draws": draws, "first": list(self.index[low]), "last": list(self.index[high])}
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        rest: tuple[Any, ...] = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        if isinstance(key, (int, np.integer)):
            return self.windows(np.asarray([int(key) % len(self)]))[0][rest]
        positions = np.arange(len(self))[key] if isinstance(key, slice) else np.asarray(key).reshape(-1)
        return self.windows(positions)[(slice(None), *rest)]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        every = self.windows(np.arange(len(self)))
        return every if dtype is None else every.astype(dtype)
