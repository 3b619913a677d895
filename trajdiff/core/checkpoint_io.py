"""Durable file I/O for model directories: fsynced writes, checksums, an atomic directory swap.

Why: a model directory must never be left half-written by an interrupted save, and a truncated or
corrupt copy must be caught before it is parsed. Every write here is flushed and fsynced, every file
gets a size and sha256 record, the finished directory replaces the old one by rename, and reads go
through JSON and safetensors only (never pickle), raising :class:`CheckpointError` with what to do.
:mod:`trajdiff.core.checkpoint` decides which files a model directory holds; this module only writes
and reads them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from trajdiff.errors import CheckpointError, ConfigError

__all__ = [
    "file_record",
    "fsync_dir",
    "prepare_tensors",
    "read_json",
    "read_safetensors",
    "sha256",
    "swap_in",
    "write_json",
    "write_safetensors",
]

_HASH_CHUNK = 1 << 20


# -------------------------------------------------------------------------------------------- write


def prepare_tensors(state: Any, what: str) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU tensors with no shared storage (safetensors refuses aliasing)."""
    if not isinstance(state, Mapping):
        raise ConfigError(f"{what} must be a dict of tensors (a state_dict), got {type(state).__name__}")
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in state.items():
        if not isinstance(key, str):
            raise ConfigError(f"{what}: key {key!r} is not a string; state dict keys must be strings")
        if not isinstance(value, torch.Tensor):
            raise ConfigError(
                f"{what}: entry {key!r} is a {type(value).__name__}, not a tensor; safetensors files "
                "hold tensors only, so put other values in config or metrics"
            )
        t = value.detach().cpu().contiguous()
        ptr = t.untyped_storage().data_ptr()
        if t.numel() and ptr in seen:
            t = t.clone()
            ptr = t.untyped_storage().data_ptr()
        if t.numel():
            seen.add(ptr)
        out[key] = t
    return out


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def write_json(path: Path, obj: Any, what: str, *, allow_nan: bool = False) -> None:
    """Write ``obj`` as indented JSON (numpy values, tensors and paths converted) and fsync it."""
    try:
        text = json.dumps(obj, indent=2, allow_nan=allow_nan, default=_json_default)
    except (TypeError, ValueError) as e:
        raise ConfigError(
            f"{what} cannot be written as JSON ({e}); use only numbers, strings, booleans, None, lists and "
            "dicts with string keys" + ("" if allow_nan else ", and no NaN or infinity")
        ) from e
    _write_bytes(path, (text + "\n").encode("utf-8"))


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write prepared tensors (see :func:`prepare_tensors`) as a safetensors file and fsync it."""
    save_file(tensors, str(path), metadata={"format": "pt"})
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def file_record(path: Path) -> dict[str, Any]:
    """The ``{"sha256": ..., "bytes": ...}`` record that config.json keeps for a file."""
    return {"sha256": sha256(path), "bytes": path.stat().st_size}


def sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (new or renamed files) durable; a no-op off POSIX."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def swap_in(tmp: Path, target: Path, *, carry_over: Callable[[str], bool]) -> None:
    """Replace ``target`` by ``tmp``: move the old one aside, rename, then delete the old one.

    Entries of the old directory for which ``carry_over(name)`` is true and that the new one lacks
    (a user's evaluation.json, a plan's results, notes) are moved into the new one rather than
    deleted with the old one.
    """
    old: Path | None = None
    if target.exists() or target.is_symlink():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:12]}")
        os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)
        raise
    fsync_dir(target.parent)
    if old is not None:
        if old.is_symlink():
            old.unlink()
        else:
            for entry in old.iterdir():
                if carry_over(entry.name) and not (target / entry.name).exists():
                    os.rename(entry, target / entry.name)
            shutil.rmtree(old, ignore_errors=True)
        if old.exists() or old.is_symlink():
            warnings.warn(
                f"the new model is saved at {target}, but the previous version could not be removed "
                f"from {old}; delete it yourself",
                stacklevel=3,
            )


# --------------------------------------------------------------------------------------------- read


def read_json(path: Path) -> Any:
    """Parse a JSON file; a corrupt or unreadable file raises :class:`CheckpointError`."""
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except json.JSONDecodeError as e:
        raise CheckpointError(
            f"{path} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); the file is corrupt - "
            "re-copy the model directory or re-train"
        ) from e
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{path} is not UTF-8 text; the file is corrupt - re-copy or re-train") from e
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e}") from e


def read_safetensors(path: Path, device: str | torch.device) -> dict[str, torch.Tensor]:
    """Load a safetensors file onto ``device``; an unreadable file raises :class:`CheckpointError`."""
    try:
        return load_file(str(path), device=str(device))
    except Exception as e:  # safetensors raises its own error types plus OSError/RuntimeError
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({e}); re-copy it or re-train"
        ) from e
