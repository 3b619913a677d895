"""Sequence data: validated variable-length episodes and per-feature normalization.

Why: every later stage (trainer, samplers, metrics) assumes finite float data of a known width;
checking once here, with messages that point at the offending sequence, row and column, is far
cheaper than debugging a NaN loss. Cutting episodes into fixed-length windows is
:mod:`trajdiff.core.windows`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import torch

from trajdiff.errors import ConfigError, DataError, ShapeError

__all__ = ["PER_COLUMN_META", "Episodes", "Normalizer"]

PER_COLUMN_META = ("missing", "future")
"""Keys of an episode's meta whose arrays have the columns as their last axis (cells observed; known future rows),
so that `Episodes.reorder` reorders them with the columns."""

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def _preview(names: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (", ..." if len(names) > limit else "")


@dataclass
class Episodes:
    """Variable-length sequences with feature names, ids and per-sequence metadata.

    ``sequences[i]`` is a float array [T_i, D]; ``columns`` names the D features; ``ids`` (one
    string per sequence, default "0", "1", ...) are used in error messages; ``meta`` holds one dict
    per sequence (e.g. a start time), default empty. Construction validates shapes and finiteness;
    integer/bool arrays are converted to float64, float arrays are kept as they are (not copied).
    """

    sequences: list[np.ndarray]
    columns: list[str]
    ids: list[str] | None = None
    meta: list[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.columns, str) or not isinstance(self.columns, Sequence):
            raise DataError(f"columns must be a list of feature names, got {type(self.columns).__name__}")
        columns = list(self.columns)
        if not columns:
            raise ShapeError("columns is empty; pass one name per feature column")
        for c in columns:
            if not isinstance(c, str):
                raise DataError(f"column name {c!r} is not a string; pass the feature names as strings")
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        if dupes:
            raise DataError(f"column names must be unique; repeated: {_preview(dupes)}")
        if isinstance(self.sequences, np.ndarray) and self.sequences.ndim == 2:
            raise ShapeError(
                f"sequences is a single 2-D array of shape {self.sequences.shape}; pass a list of [T, D] "
                "arrays, e.g. sequences=[x]"
            )
        seqs = list(self.sequences)
        n = len(seqs)
        ids = [str(i) for i in range(n)] if self.ids is None else [str(i) for i in self.ids]
        if len(ids) != n:
            raise DataError(f"got {n} sequences but {len(ids)} ids; pass exactly one id per sequence")
        seen: set[str] = set()
        for i in ids:
            if i in seen:
                raise DataError(f"sequence id {i!r} appears more than once; ids must be unique")
            seen.add(i)
        meta = [{} for _ in range(n)] if self.meta is None else list(self.meta)
        if len(meta) != n:
            raise DataError(f"got {n} sequences but {len(meta)} meta entries; pass one dict per sequence")
        for sid, m in zip(ids, meta, strict=True):
            if not isinstance(m, dict):
                raise DataError(f"meta for sequence {sid!r} is a {type(m).__name__}; pass a dict (or {{}})")
        self.sequences = [
            _check_sequence(s, sid, k, columns) for k, (s, sid) in enumerate(zip(seqs, ids, strict=True))
        ]
        self.columns = columns
        self.ids = ids
        self.meta = meta

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def lengths(self) -> list[int]:
        """Number of rows T_i of each sequence."""
        return [len(s) for s in self.sequences]

    @property
    def dim(self) -> int:
        """Number of features D."""
        return len(self.columns)

    def concat(self) -> np.ndarray:
        """All rows stacked: [sum T_i, D] (e.g. to fit a :class:`Normalizer`)."""
        if not self.sequences:
            return np.zeros((0, self.dim))
        return np.concatenate(self.sequences, axis=0)

    def select(self, indices: Sequence[int]) -> Episodes:
        """A new Episodes holding the given sequences (no re-validation; arrays are shared)."""
        idx = [int(i) for i in indices]
        out = object.__new__(Episodes)
        out.sequences = [self.sequences[i] for i in idx]
        out.columns = list(self.columns)
        out.ids = [self.ids[i] for i in idx]  # type: ignore[index]
        out.meta = [self.meta[i] for i in idx]  # type: ignore[index]
        return out

    def reorder(self, columns: Sequence[str]) -> Episodes:
        """The same episodes with their columns in the order ``columns`` (the same names in another order);
        the per-column arrays of meta (`PER_COLUMN_META`: columns on the last axis) follow them."""
        names = [str(c) for c in columns]
        if sorted(names) != sorted(self.columns):
            raise DataError(f"cannot reorder columns {_preview(self.columns)} as {_preview(names)}: the names differ")
        if names == self.columns:
            return self
        order = [self.columns.index(c) for c in names]
        out = object.__new__(Episodes)
        out.sequences = [np.ascontiguousarray(s[:, order]) for s in self.sequences]
        out.columns = names
        out.ids = list(self.ids)  # type: ignore[arg-type]
        out.meta = [{key: value[..., order] if key in PER_COLUMN_META and isinstance(value, np.ndarray)
                     and value.ndim and value.shape[-1] == len(order) else value for key, value in m.items()}
                    for m in self.meta]  # type: ignore[union-attr]
        return out

    def split(self, fraction: float, seed: int = 0) -> tuple[Episodes, Episodes]:
        """Split by sequence into (about ``fraction`` of the sequences, the rest), shuffled by ``seed``.

        Splitting whole sequences (not windows) keeps overlapping windows of one sequence from
        leaking between train and validation. Both parts get at least one sequence and keep the
        original order.
        """
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
            raise ConfigError(f"split fraction must be strictly between 0 and 1, got {fraction!r}")
        n = len(self)
        if n < 2:
            raise DataError(f"cannot split {n} sequence(s) into two non-empty parts; provide at least 2")
        k = min(max(int(round(fraction * n)), 1), n - 1)
        perm = np.random.default_rng(seed).permutation(n)
        return self.select(sorted(perm[:k].tolist())), self.select(sorted(perm[k:].tolist()))


def _check_sequence(seq: Any, sid: str, k: int, columns: list[str]) -> np.ndarray:
    d = len(columns)
    what = f"sequence {sid!r} (index {k})"
    try:
        arr = np.asarray(seq)
    except (ValueError, TypeError) as e:
        raise DataError(f"{what} cannot be read as a numeric array ({e}); pass a [T, {d}] float array") from e
    if arr.dtype.kind in "iub":
        arr = arr.astype(np.float64)
    elif arr.dtype.kind != "f":
        raise DataError(
            f"{what} has dtype {arr.dtype}, not a real number type; convert it to float (e.g. "
            "np.asarray(x, dtype=np.float32)) after parsing or dropping non-numeric columns"
        )
    if arr.ndim != 2:
        hint = "; for a single feature use x[:, None]" if arr.ndim == 1 else ""
        raise ShapeError(f"{what} has shape {tuple(arr.shape)}; every sequence must be 2-D [T, {d}]{hint}")
    if arr.shape[1] != d:
        raise ShapeError(
            f"{what} has {arr.shape[1]} columns but {d} column names were given ({_preview(columns)}); "
            "make the names match the array's columns"
        )
    if arr.shape[0] == 0:
        raise DataError(f"{what} has no rows; drop it from the episodes")
    finite = np.isfinite(arr)
    if not finite.all():
        row, col = (int(v) for v in np.argwhere(~finite)[0])
        bad = int((~finite).sum())
        raise DataError(
            f"{what} has {arr[row, col]} at row {row}, column {columns[col]!r} ({bad} non-finite value(s) "
            "in this sequence); clean or impute them (e.g. interpolate, forward-fill or drop those rows) "
            "before building Episodes"
        )
    return np.ascontiguousarray(arr)


# ------------------------------------------------------------------------------------ normalization

_REL_FLOOR = 1e-6  # scale floor relative to a column's magnitude: near-constant columns stay near 0


class Normalizer:
    """Per-feature affine map ``(x - shift) / scale``, fitted on data.

    ``kind="standard"``: shift = mean, scale = std. ``kind="minmax"``: maps [min, max] to [-1, 1].
    The scale is floored at ``max(eps, 1e-6 * max|x|)`` per column so constant (or float-noise
    constant) columns map to ~0 instead of exploding. Works on numpy arrays and torch tensors of
    shape [..., D], returning the same type, dtype and device.
    """

    KINDS = ("standard", "minmax")

    def __init__(self, kind: Literal["standard", "minmax"] = "standard", eps: float = 1e-8) -> None:
        if kind not in self.KINDS:
            raise ConfigError(f"unknown Normalizer kind {kind!r}; use one of {self.KINDS}")
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (math.isfinite(eps) and eps > 0):
            raise ConfigError(f"Normalizer eps must be a positive finite number, got {eps!r}")
        self.kind = kind
        self.eps = float(eps)
        self.shift: np.ndarray | None = None
        self.scale: np.ndarray | None = None

    @property
    def fitted(self) -> bool:
        return self.shift is not None

    @property
    def dim(self) -> int:
        """Number of features D (requires a fitted normalizer)."""
        return len(self._params()[0])

    def fit(self, data: np.ndarray | torch.Tensor | Episodes) -> Normalizer:
        """Estimate shift and scale from ``data`` ([N, D], [..., D] or Episodes); returns self."""
        validated = isinstance(data, Episodes)  # finite by construction
        if validated:  # one sequence is used as it is: no copy of the data
            arr = data.sequences[0] if len(data) == 1 else data.concat()
        elif isinstance(data, torch.Tensor):
            arr = data.detach().cpu().double().numpy()
        else:
            arr = np.asarray(data)
        if arr.dtype.kind not in "fiub":
            raise DataError(f"Normalizer.fit needs numbers, got dtype {arr.dtype}; convert the data to float")
        if arr.ndim < 2:
            raise ShapeError(
                f"Normalizer.fit expects [N, D] (or [..., D]), got shape {tuple(arr.shape)}; "
                "for a single feature use x[:, None]"
            )
        x = arr.reshape(-1, arr.shape[-1]).astype(np.float64, copy=False)
        if x.shape[0] == 0:
            raise DataError("Normalizer.fit got no rows; fit it on non-empty data")
        finite = True if validated else np.isfinite(x)
        if not np.all(finite):
            row, col = (int(v) for v in np.argwhere(~finite)[0])
            raise DataError(
                f"Normalizer.fit data has {x[row, col]} at row {row}, column {col}; clean or impute "
                "non-finite values first"
            )
        if self.kind == "standard":
            shift, spread = x.mean(axis=0), x.std(axis=0)
        else:
            lo, hi = x.min(axis=0), x.max(axis=0)
            shift, spread = (hi + lo) / 2.0, (hi - lo) / 2.0
        largest = np.maximum(np.abs(x.max(axis=0)), np.abs(x.min(axis=0)))  # max |x| without a copy of x
        floor = np.maximum(self.eps, _REL_FLOOR * largest)
        self.shift = shift
        self.scale = np.maximum(spread, floor)
        return self

    def transform(self, x: ArrayT) -> ArrayT:
        """Normalize ``x`` [..., D]."""
        return self._apply(x, inverse=False)

    def inverse(self, x: ArrayT) -> ArrayT:
        """Undo :meth:`transform` on ``x`` [..., D]."""
        return self._apply(x, inverse=True)

    def _params(self) -> tuple[np.ndarray, np.ndarray]:
        if self.shift is None or self.scale is None:
            raise ConfigError(
                "Normalizer is not fitted; call .fit(data) first or load one with Normalizer.from_state(...)"
            )
        return self.shift, self.scale

    def _apply(self, x: Any, inverse: bool) -> Any:
        shift, scale = self._params()
        d = len(shift)
        if isinstance(x, torch.Tensor):
            if x.ndim == 0 or x.shape[-1] != d:
                raise ShapeError(
                    f"Normalizer was fitted on {d} features but got a tensor of shape {tuple(x.shape)}; "
                    f"the last dimension must be {d}"
                )
            out_dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
            work = torch.float32 if out_dtype in (torch.float16, torch.bfloat16) else out_dtype
            xs = x.to(work)
            s = torch.as_tensor(shift, dtype=work, device=x.device)
            c = torch.as_tensor(scale, dtype=work, device=x.device)
            y = xs * c + s if inverse else (xs - s) / c
            return y.to(out_dtype)
        arr = np.asarray(x)
        if arr.ndim == 0 or arr.shape[-1] != d:
            raise ShapeError(
                f"Normalizer was fitted on {d} features but got an array of shape {tuple(arr.shape)}; "
                f"the last dimension must be {d}"
            )
        if arr.dtype.kind not in "fiub":
            raise DataError(f"Normalizer needs numbers, got dtype {arr.dtype}; convert the data to float")
        out_dtype = arr.dtype if arr.dtype.kind == "f" else np.dtype(np.float64)
        y = arr * scale + shift if inverse else (arr - shift) / scale
        return y.astype(out_dtype, copy=False)

    def state_dict(self) -> dict[str, Any]:
        """JSON-serializable state; restore with :meth:`from_state`."""
        shift, scale = self._params()
        return {
            "kind": self.kind,
            "eps": self.eps,
            "shift": [float(v) for v in shift],
            "scale": [float(v) for v in scale],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Normalizer:
        """Rebuild a fitted Normalizer from :meth:`state_dict` output."""
        if not isinstance(state, dict):
            raise ConfigError(
                f"Normalizer state must be a dict from state_dict(), got {type(state).__name__}"
            )
        missing = [k for k in ("kind", "shift", "scale") if k not in state]
        if missing:
            raise ConfigError(
                f"Normalizer state lacks {missing}; pass the dict returned by Normalizer.state_dict()"
            )
        norm = cls(kind=state["kind"], eps=state.get("eps", 1e-8))
        vectors = {}
        for key in ("shift", "scale"):
            v = state[key]
            if (
                not isinstance(v, list)
                or not v
                or not all(
                    isinstance(e, (int, float)) and not isinstance(e, bool) and math.isfinite(e) for e in v
                )
            ):
                raise ConfigError(f"Normalizer state[{key!r}] must be a non-empty list of finite numbers")
            vectors[key] = np.asarray(v, dtype=np.float64)
        if len(vectors["shift"]) != len(vectors["scale"]):
            raise ConfigError(
                f"Normalizer state has {len(vectors['shift'])} shifts but {len(vectors['scale'])} scales; "
                "the state is corrupt - re-fit the normalizer"
            )
        if (vectors["scale"] <= 0).any():
            col = int(np.argmax(vectors["scale"] <= 0))
            raise ConfigError(
                f"Normalizer state['scale'][{col}] is {vectors['scale'][col]}; scales must be > 0"
            )
        norm.shift, norm.scale = vectors["shift"], vectors["scale"]
        return norm
