"""Model directories: safetensors for tensors, JSON for everything else, never pickle.

A model directory looks like this::

    config.json            the caller's config plus format, format_version, trajdiff_version,
                           step and files ({name: {"sha256": ..., "bytes": ...}} for every other file)
    <stem>.safetensors     one per entry of ``tensors`` (e.g. weights.safetensors, ema.safetensors)
    optimizer.safetensors  optimizer state tensors, keys "state.<param_index>.<name>"   (optional)
    optimizer.json         the rest of the optimizer state (param_groups, non-tensor state) (optional)
    metrics.json           (optional)
    calibration.json ...   files added after training (`attach_file`): their sha256/bytes are recorded in
                           config.json's ``attached`` table and checked by their reader (`verify_attached`)

Why: ``torch.load`` unpickles, which can run arbitrary code from a file someone sent you; reading a
model directory only parses JSON and safetensors. Checksums catch truncated or corrupt copies, and
saving builds the directory next to the target and swaps it in, so an interrupted save never leaves
a half-written model behind.

This module owns the layout and its validation; :mod:`trajdiff.core.checkpoint_io` does the durable
writes and checked reads, and :mod:`trajdiff.core.optimizer_state` encodes the optimizer state
(resume with :func:`trajdiff.core.optimizer_state.restore_optimizer`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import trajdiff
from trajdiff.core.checkpoint_io import (
    file_record,
    fsync_dir,
    prepare_tensors,
    read_json,
    read_safetensors,
    sha256,
    swap_in,
    write_json,
    write_safetensors,
)
from trajdiff.core.optimizer_state import decode_optimizer, encode_optimizer
from trajdiff.errors import CheckpointError, ConfigError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Checkpoint",
    "attach_file",
    "load_checkpoint",
    "save_checkpoint",
    "verify_attached",
]

FORMAT = "trajdiff-model"
FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = frozenset({1})

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
OPTIMIZER_TENSORS_FILE = "optimizer.safetensors"
OPTIMIZER_JSON_FILE = "optimizer.json"

_RESERVED_CONFIG_KEYS = ("format", "format_version", "trajdiff_version", "step", "files", "attached")
_STEM_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_WHERE_FROM = "a directory written by `trajdiff train` (or trajdiff.core.checkpoint.save_checkpoint)"


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` read from a model directory.

    ``config`` is the config given to :func:`save_checkpoint` (the bookkeeping keys format,
    format_version, trajdiff_version, step and files are removed); ``tensors`` maps a file stem
    ("weights", "ema", ...) to its state dict; ``optimizer_state`` is ready for
    :func:`trajdiff.core.optimizer_state.restore_optimizer` (None if the model was saved without an optimizer).
    """

    config: dict[str, Any]
    tensors: dict[str, dict[str, torch.Tensor]]
    step: int
    metrics: dict[str, Any] | None
    optimizer_state: dict[str, Any] | None
    path: Path | None = None
    trajdiff_version: str | None = None


# --------------------------------------------------------------------------------------------- save


def save_checkpoint(
    directory: str | Path,
    *,
    config: dict[str, Any],
    tensors: Mapping[str, Mapping[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer | None = None,
    metrics: dict[str, Any] | None = None,
    step: int = 0,
) -> Path:
    """Write a model directory atomically and return its path.

    ``tensors`` maps a file stem to a state dict: ``{"weights": model.state_dict()}`` becomes
    weights.safetensors. The directory is built in a hidden sibling, fsynced, then swapped in; an
    existing model directory at ``directory`` is replaced only after the new one is complete.
    A non-empty directory that is not a trajdiff model is never replaced.
    """
    target = Path(directory).expanduser().absolute()
    _check_config(config)
    _check_step(step)
    if metrics is not None and not isinstance(metrics, Mapping):
        raise ConfigError(f"metrics must be a dict of JSON values, got {type(metrics).__name__}")
    if not isinstance(tensors, Mapping):
        raise ConfigError(
            f"tensors must be a dict such as {{'weights': model.state_dict()}}, got {type(tensors).__name__}"
        )
    for stem in tensors:
        _check_stem(stem, optimizer is not None)
    _check_replaceable(target)

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        files: dict[str, dict[str, Any]] = {}
        for stem, state in tensors.items():
            name = f"{stem}.safetensors"
            prepared = prepare_tensors(state, f"tensors[{stem!r}]")
            write_safetensors(tmp / name, prepared)
            files[name] = file_record(tmp / name)
        if optimizer is not None:
            opt_json, opt_tensors = encode_optimizer(optimizer)
            write_safetensors(tmp / OPTIMIZER_TENSORS_FILE, prepare_tensors(opt_tensors, "optimizer state"))
            files[OPTIMIZER_TENSORS_FILE] = file_record(tmp / OPTIMIZER_TENSORS_FILE)
            write_json(tmp / OPTIMIZER_JSON_FILE, opt_json, "optimizer state")
            files[OPTIMIZER_JSON_FILE] = file_record(tmp / OPTIMIZER_JSON_FILE)
        if metrics is not None:
            write_json(tmp / METRICS_FILE, dict(metrics), "metrics", allow_nan=True)
            files[METRICS_FILE] = file_record(tmp / METRICS_FILE)
        full_config = {
            **config,
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "trajdiff_version": trajdiff.__version__,
            "step": int(step),
            "files": files,
        }
        write_json(tmp / CONFIG_FILE, full_config, "config")
        fsync_dir(tmp)
        swap_in(tmp, target, carry_over=_users_file)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _check_config(config: Any) -> None:
    if not isinstance(config, Mapping):
        raise ConfigError(f"config must be a dict of JSON values, got {type(config).__name__}")
    for key in config:
        if not isinstance(key, str):
            raise ConfigError(f"config key {key!r} is not a string; JSON object keys must be strings")
        if key in _RESERVED_CONFIG_KEYS:
            raise ConfigError(
                f"config key {key!r} is reserved for the model directory's bookkeeping "
                f"({', '.join(_RESERVED_CONFIG_KEYS)}); rename it"
            )


def _check_step(step: Any) -> None:
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ConfigError(f"step must be a non-negative integer, got {step!r}")


def _check_stem(stem: Any, has_optimizer: bool) -> None:
    if not isinstance(stem, str) or not _STEM_RE.match(stem) or stem.endswith("."):
        raise ConfigError(
            f"tensors key {stem!r} cannot be a file name; use letters, digits, '_', '-' or '.' "
            "such as 'weights' or 'ema'"
        )
    if has_optimizer and stem == "optimizer":
        raise ConfigError("tensors key 'optimizer' clashes with the optimizer state file; rename it")


def _check_replaceable(target: Path) -> None:
    """Refuse to replace anything but a missing path, an empty directory or a trajdiff model."""
    if target.is_symlink() and not target.exists():
        raise CheckpointError(f"{target} is a broken symbolic link; remove it or choose another directory")
    if not target.exists():
        return
    if not target.is_dir():
        raise CheckpointError(
            f"{target} exists and is not a directory; choose a directory path for the model"
        )
    if not any(target.iterdir()):
        return
    try:
        meta = json.loads((target / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(
            f"refusing to replace {target}: it is not empty and is not a trajdiff model directory "
            f"(no {CONFIG_FILE} with format {FORMAT!r}); choose a new directory or empty this one first"
        )


def _users_file(name: str) -> bool:
    """Whether a file name is not one a checkpoint writes: the rest of a model directory is the user's,
    and a new save carries it over."""
    return not (name.endswith(".safetensors") or name in (CONFIG_FILE, METRICS_FILE, OPTIMIZER_JSON_FILE))


# --------------------------------------------------------------------------------------------- load


def load_checkpoint(directory: str | Path, *, device: str | torch.device = "cpu") -> Checkpoint:
    """Read and verify a model directory written by :func:`save_checkpoint`.

    Every file listed in config.json is checked against its recorded size and sha256 before it is
    parsed. Only JSON and ``safetensors.torch.load_file`` are used: nothing is unpickled.
    Raises :class:`CheckpointError` naming the file and what to do when anything is off.
    """
    path = Path(directory).expanduser()
    if not path.exists():
        raise CheckpointError(
            f"model directory {path} does not exist; pass {_WHERE_FROM}" + _interrupted_hint(path)
        )
    if not path.is_dir():
        raise CheckpointError(
            f"{path} is not a directory; pass the model directory itself ({_WHERE_FROM}), not a file in it"
        )
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(
            f"{config_path} is missing, so {path} is not a complete trajdiff model; it should be "
            f"{_WHERE_FROM} - re-copy the whole directory or re-train"
        )
    meta = read_json(config_path)
    if not isinstance(meta, dict):
        raise CheckpointError(
            f"{config_path} holds a JSON {type(meta).__name__}, not an object; re-copy or re-train"
        )
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{config_path} has format {meta.get('format')!r}, not {FORMAT!r}, so {path} is not a trajdiff "
            f"model directory; pass {_WHERE_FROM}"
        )
    version = meta.get("format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS or isinstance(version, bool):
        raise CheckpointError(
            f"{config_path} has format_version {version!r} (written by trajdiff "
            f"{meta.get('trajdiff_version', 'unknown')}); this trajdiff {trajdiff.__version__} reads "
            f"{sorted(SUPPORTED_FORMAT_VERSIONS)}: install a matching trajdiff version or re-train"
        )
    step = meta.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(
            f"{config_path} has step {step!r}, not a non-negative integer; re-copy or re-train"
        )
    files = meta.get("files")
    if not isinstance(files, dict):
        raise CheckpointError(
            f"{config_path} has no valid 'files' table; re-copy the model directory or re-train"
        )

    for name, record in files.items():
        _verify_file(path, name, record)
    if not isinstance(meta.get("attached", {}), dict):
        raise CheckpointError(f"{config_path} has an invalid 'attached' table; re-copy the model directory or re-train")

    tensors: dict[str, dict[str, torch.Tensor]] = {}
    for name in files:
        if name.endswith(".safetensors") and name != OPTIMIZER_TENSORS_FILE:
            tensors[name[: -len(".safetensors")]] = read_safetensors(path / name, device)

    optimizer_state = None
    if OPTIMIZER_JSON_FILE in files:
        opt_tensors = (
            read_safetensors(path / OPTIMIZER_TENSORS_FILE, "cpu") if OPTIMIZER_TENSORS_FILE in files else {}
        )
        json_file, tensors_file = path / OPTIMIZER_JSON_FILE, path / OPTIMIZER_TENSORS_FILE
        optimizer_state = decode_optimizer(read_json(json_file), opt_tensors, json_file, tensors_file)

    metrics = None
    if METRICS_FILE in files:
        metrics = read_json(path / METRICS_FILE)
        if not isinstance(metrics, dict):
            raise CheckpointError(f"{path / METRICS_FILE} is not a JSON object; re-copy or re-train")

    config = {k: v for k, v in meta.items() if k not in _RESERVED_CONFIG_KEYS}
    return Checkpoint(
        config=config,
        tensors=tensors,
        step=step,
        metrics=metrics,
        optimizer_state=optimizer_state,
        path=path,
        trajdiff_version=meta.get("trajdiff_version"),
    )


def _interrupted_hint(path: Path) -> str:
    parent = path.parent
    if not parent.is_dir():
        return ""
    leftovers = sorted(parent.glob(f".{path.name}.old-*"))
    if not leftovers:
        return ""
    return (
        f" (a save into it seems to have been interrupted: the previous version is at {leftovers[-1]}; "
        "rename it back to use it)"
    )


def _verify_file(directory: Path, name: Any, record: Any, fix: str = "; re-copy it or re-train") -> None:
    config_path = directory / CONFIG_FILE
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or "/" in name
        or "\\" in name
        or name == CONFIG_FILE
    ):
        raise CheckpointError(f"{config_path} lists an invalid file name {name!r}; re-copy or re-train")
    if (
        not isinstance(record, dict)
        or not isinstance(record.get("sha256"), str)
        or isinstance(record.get("bytes"), bool)
        or not isinstance(record.get("bytes"), int)
    ):
        raise CheckpointError(
            f"{config_path} has no valid sha256/bytes record for {name}; re-copy or re-train"
        )
    file = directory / name
    if not file.is_file():
        raise CheckpointError(
            f"{file} is listed in {CONFIG_FILE} but missing: the model directory was copied incompletely; "
            "re-copy the whole directory or re-train"
        )
    size = file.stat().st_size
    if size != record["bytes"]:
        raise CheckpointError(
            f"{file} has {size} bytes but {CONFIG_FILE} records {record['bytes']}: the file is truncated or "
            f"was modified{fix}"
        )
    if sha256(file) != record["sha256"]:
        raise CheckpointError(
            f"{file} does not match the sha256 recorded in {CONFIG_FILE}: the file is corrupt{fix}"
        )


# ------------------------------------------------------------------------------- files added later


def attach_file(directory: str | Path, name: str) -> None:
    """Records the sha256 and size of ``name``, a file written into a saved model directory afterwards (the
    calibration ``trajdiff calibrate`` fits), in config.json's ``attached`` table; config.json is replaced
    atomically. A later save of the model drops the record (the file was made for the weights it replaces)."""
    path = Path(directory).expanduser()
    config_path = path / CONFIG_FILE
    meta = read_json(config_path)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{config_path} is not a trajdiff model's config; cannot record {name} in it")
    attached = meta.get("attached")
    meta["attached"] = {**(attached if isinstance(attached, dict) else {}), name: file_record(path / name)}
    tmp = path / f".{CONFIG_FILE}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        write_json(tmp, meta, "config")
        os.replace(tmp, config_path)
    except OSError as error:
        raise CheckpointError(f"cannot update {config_path}: {error.strerror or error}") from error
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path)


def verify_attached(directory: str | Path, name: str) -> bool:
    """Checks ``name`` in a model directory against the record `attach_file` made: True when it matches, False
    when ``directory`` holds no config.json (not a model directory, so nothing can be checked). Raises
    :class:`CheckpointError` when the file is unrecorded or differs from its record."""
    path = Path(directory).expanduser()
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        return False
    meta = read_json(config_path)
    attached = meta.get("attached") if isinstance(meta, dict) else None
    record = attached.get(name) if isinstance(attached, dict) else None
    if record is None:
        raise CheckpointError(
            f"{path / name} is not recorded in {config_path}: it was written before the model's last save (it "
            "was made for other weights), by hand or by an older trajdiff"
        )
    _verify_file(path, name, record, fix=" or was edited")
    return True
