"""Model directories: safetensors for tensors, JSON for everything else, never pickle.

A model directory looks like this::

    config.json            the caller's config plus format, format_version, trajdiff_version,
                           step and files ({name: {"sha256": ..., "bytes": ...}} for every other file)
    <stem>.safetensors     one per entry of ``tensors`` (e.g. weights.safetensors, ema.safetensors)
    optimizer.safetensors  optimizer state tensors, keys "state.<param_index>.<name>"   (optional)
    optimizer.json         the rest of the optimizer state (param_groups, non-tensor state) (optional)
    metrics.json           (optional)

Why: ``torch.load`` unpickles, which can run arbitrary code from a file someone sent you; reading a
model directory only parses JSON and safetensors. Checksums catch truncated or corrupt copies, and
saving builds the directory next to the target and swaps it in, so an interrupted save never leaves
a half-written model behind.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

import trajdiff
from trajdiff.errors import CheckpointError, ConfigError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Checkpoint",
    "load_checkpoint",
    "restore_optimizer",
    "save_checkpoint",
]

FORMAT = "trajdiff-model"
FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = frozenset({1})

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
OPTIMIZER_TENSORS_FILE = "optimizer.safetensors"
OPTIMIZER_JSON_FILE = "optimizer.json"

_RESERVED_CONFIG_KEYS = ("format", "format_version", "trajdiff_version", "step", "files")
_STEM_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_TENSOR_TAG = "__tensor__"
_TUPLE_TAG = "__tuple__"
_FLOAT_TAG = "__float__"
_HASH_CHUNK = 1 << 20
_WHERE_FROM = "a directory written by `trajdiff train` (or trajdiff.core.checkpoint.save_checkpoint)"


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` read from a model directory.

    ``config`` is the config given to :func:`save_checkpoint` (the bookkeeping keys format,
    format_version, trajdiff_version, step and files are removed); ``tensors`` maps a file stem
    ("weights", "ema", ...) to its state dict; ``optimizer_state`` is ready for
    :func:`restore_optimizer` (None if the model was saved without an optimizer).
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
            prepared = _prepare_tensors(state, f"tensors[{stem!r}]")
            _write_safetensors(tmp / name, prepared)
            files[name] = _file_record(tmp / name)
        if optimizer is not None:
            opt_json, opt_tensors = _encode_optimizer(optimizer)
            _write_safetensors(tmp / OPTIMIZER_TENSORS_FILE, _prepare_tensors(opt_tensors, "optimizer state"))
            files[OPTIMIZER_TENSORS_FILE] = _file_record(tmp / OPTIMIZER_TENSORS_FILE)
            _write_json(tmp / OPTIMIZER_JSON_FILE, opt_json, "optimizer state")
            files[OPTIMIZER_JSON_FILE] = _file_record(tmp / OPTIMIZER_JSON_FILE)
        if metrics is not None:
            _write_json(tmp / METRICS_FILE, dict(metrics), "metrics", allow_nan=True)
            files[METRICS_FILE] = _file_record(tmp / METRICS_FILE)
        full_config = {
            **config,
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "trajdiff_version": trajdiff.__version__,
            "step": int(step),
            "files": files,
        }
        _write_json(tmp / CONFIG_FILE, full_config, "config")
        _fsync_dir(tmp)
        _swap_in(tmp, target)
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


def _prepare_tensors(state: Any, what: str) -> dict[str, torch.Tensor]:
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


def _encode_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    sd = optimizer.state_dict()
    sink: dict[str, torch.Tensor] = {}
    state = []
    for index, entry in sd["state"].items():
        state.append([index, _encode(entry, f"state.{index}", sink)])
    groups = _encode(sd["param_groups"], "param_groups", sink)
    return {"class": type(optimizer).__name__, "state": state, "param_groups": groups}, sink


def _encode(obj: Any, path: str, sink: dict[str, torch.Tensor]) -> Any:
    """JSON-encode optimizer state; tensors go to ``sink`` under ``path`` and leave a placeholder."""
    if isinstance(obj, torch.Tensor):
        if path in sink:
            raise ConfigError(f"optimizer state has two tensors named {path!r}; cannot save it unambiguously")
        sink[path] = obj
        return {_TENSOR_TAG: path}
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {_FLOAT_TAG: repr(obj)}
    if isinstance(obj, np.generic):
        return _encode(obj.item(), path, sink)
    if isinstance(obj, tuple):
        return {_TUPLE_TAG: [_encode(v, f"{path}.{i}", sink) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{path}.{i}", sink) for i, v in enumerate(obj)]
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise ConfigError(
                    f"optimizer state at {path!r} has a non-string key {key!r}; it cannot be saved as JSON"
                )
            out[key] = _encode(value, f"{path}.{key}", sink)
        return out
    raise ConfigError(
        f"optimizer state entry {path!r} is a {type(obj).__name__}, which cannot be saved without pickle; "
        "only tensors, numbers, strings, lists, tuples and dicts are supported"
    )


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _write_json(path: Path, obj: Any, what: str, *, allow_nan: bool = False) -> None:
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


def _write_safetensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    save_file(tensors, str(path), metadata={"format": "pt"})
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _file_record(path: Path) -> dict[str, Any]:
    return {"sha256": _sha256(path), "bytes": path.stat().st_size}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _checkpoint_owned(name: str) -> bool:
    """Whether a file name is one a checkpoint writes (the rest of a model directory is the user's)."""
    return name.endswith(".safetensors") or name in (CONFIG_FILE, METRICS_FILE, OPTIMIZER_JSON_FILE)


def _swap_in(tmp: Path, target: Path) -> None:
    """Replace ``target`` by ``tmp``: move the old one aside, rename, then delete the old one.

    Files in the old directory that are not part of the new checkpoint (a user's evaluation.json, a
    plan's results, notes) are carried over into the new one rather than deleted with the old one.
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
    _fsync_dir(target.parent)
    if old is not None:
        if old.is_symlink():
            old.unlink()
        else:
            for entry in old.iterdir():  # keep the user's files; the checkpoint's own are replaced
                if not _checkpoint_owned(entry.name) and not (target / entry.name).exists():
                    os.rename(entry, target / entry.name)
            shutil.rmtree(old, ignore_errors=True)
        if old.exists() or old.is_symlink():
            warnings.warn(
                f"the new model is saved at {target}, but the previous version could not be removed "
                f"from {old}; delete it yourself",
                stacklevel=3,
            )


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
    meta = _read_json(config_path)
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

    tensors: dict[str, dict[str, torch.Tensor]] = {}
    for name in files:
        if name.endswith(".safetensors") and name != OPTIMIZER_TENSORS_FILE:
            tensors[name[: -len(".safetensors")]] = _read_safetensors(path / name, device)

    optimizer_state = None
    if OPTIMIZER_JSON_FILE in files:
        opt_tensors = (
            _read_safetensors(path / OPTIMIZER_TENSORS_FILE, "cpu") if OPTIMIZER_TENSORS_FILE in files else {}
        )
        optimizer_state = _decode_optimizer(_read_json(path / OPTIMIZER_JSON_FILE), opt_tensors, path)

    metrics = None
    if METRICS_FILE in files:
        metrics = _read_json(path / METRICS_FILE)
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


def _read_json(path: Path) -> Any:
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


def _verify_file(directory: Path, name: Any, record: Any) -> None:
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
            "was modified; re-copy it or re-train"
        )
    if _sha256(file) != record["sha256"]:
        raise CheckpointError(
            f"{file} does not match the sha256 recorded in {CONFIG_FILE}: the file is corrupt; re-copy it "
            "or re-train"
        )


def _read_safetensors(path: Path, device: str | torch.device) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device=str(device))
    except Exception as e:  # safetensors raises its own error types plus OSError/RuntimeError
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({e}); re-copy it or re-train"
        ) from e


def _decode_optimizer(obj: Any, tensors: dict[str, torch.Tensor], directory: Path) -> dict[str, Any]:
    file = directory / OPTIMIZER_JSON_FILE
    if (
        not isinstance(obj, dict)
        or not isinstance(obj.get("state"), list)
        or not isinstance(obj.get("param_groups"), list)
    ):
        raise CheckpointError(f"{file} lacks 'state' and 'param_groups' lists; re-copy or re-train")
    state: dict[int, Any] = {}
    for item in obj["state"]:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], int)):
            raise CheckpointError(f"{file} has a malformed state entry {item!r}; re-copy or re-train")
        state[item[0]] = _decode(item[1], tensors, file)
    result: dict[str, Any] = {"state": state, "param_groups": _decode(obj["param_groups"], tensors, file)}
    if isinstance(obj.get("class"), str):
        result["optimizer_class"] = obj["class"]
    return result


def _decode(obj: Any, tensors: dict[str, torch.Tensor], file: Path) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors, file) for v in obj]
    if isinstance(obj, dict):
        if len(obj) == 1 and _TENSOR_TAG in obj:
            key = obj[_TENSOR_TAG]
            if key not in tensors:
                raise CheckpointError(
                    f"{file} refers to tensor {key!r}, which {OPTIMIZER_TENSORS_FILE} lacks; "
                    "re-copy or re-train"
                )
            return tensors[key]
        if len(obj) == 1 and _TUPLE_TAG in obj:
            return tuple(_decode(v, tensors, file) for v in obj[_TUPLE_TAG])
        if len(obj) == 1 and _FLOAT_TAG in obj:
            return float(obj[_FLOAT_TAG])
        return {k: _decode(v, tensors, file) for k, v in obj.items()}
    return obj


def restore_optimizer(optimizer: torch.optim.Optimizer, optimizer_state: dict[str, Any] | None) -> None:
    """Load ``Checkpoint.optimizer_state`` into ``optimizer`` (built over the same parameters).

    Tensors are copied, so one loaded state can seed several optimizers without aliasing.
    """
    if optimizer_state is None:
        raise CheckpointError(
            "this checkpoint has no optimizer state (it was saved without optimizer=); "
            "start with a fresh optimizer instead of restoring one"
        )
    if (
        not isinstance(optimizer_state, Mapping)
        or "state" not in optimizer_state
        or "param_groups" not in optimizer_state
    ):
        raise CheckpointError("optimizer_state must be Checkpoint.optimizer_state from load_checkpoint")
    saved_class = optimizer_state.get("optimizer_class")
    if saved_class is not None and saved_class != type(optimizer).__name__:
        raise CheckpointError(
            f"the checkpoint holds {saved_class} state but the optimizer is {type(optimizer).__name__}; "
            f"build a {saved_class} to resume, or start the new optimizer fresh"
        )
    saved_sizes = [len(g.get("params", [])) for g in optimizer_state["param_groups"]]
    sizes = [len(g["params"]) for g in optimizer.param_groups]
    if saved_sizes != sizes:
        raise CheckpointError(
            f"the saved optimizer had parameter groups of sizes {saved_sizes} but this one has {sizes}; "
            "build the optimizer over the same model (same architecture config) before restoring"
        )
    state = {
        index: {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in entry.items()}
        for index, entry in optimizer_state["state"].items()
    }
    try:
        optimizer.load_state_dict({"state": state, "param_groups": optimizer_state["param_groups"]})
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"cannot restore the optimizer state: {e}; start with a fresh optimizer") from e
