"""Optimizer state without pickle: encode it as JSON plus named tensors, decode it, restore it.

Why: ``optimizer.state_dict()`` mixes tensors (moments, step counts) with Python values (param
groups, betas as tuples, infinite floats), and ``torch.save`` would pickle the lot. Here tensors are
taken out under dotted names (``state.<param_index>.<name>``) for a safetensors file and replaced
by placeholders in a JSON tree that also tags tuples and non-finite floats, so a model directory can
resume training exactly while loading it never executes code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trajdiff.errors import CheckpointError, ConfigError

__all__ = ["decode_optimizer", "encode_optimizer", "restore_optimizer"]

_TENSOR_TAG = "__tensor__"
_TUPLE_TAG = "__tuple__"
_FLOAT_TAG = "__float__"


def encode_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Split ``optimizer.state_dict()`` into a JSON-ready dict and the tensors it refers to by name."""
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


def decode_optimizer(
    obj: Any, tensors: dict[str, torch.Tensor], json_file: Path, tensors_file: Path
) -> dict[str, Any]:
    """Rebuild the state :func:`encode_optimizer` split up, ready for :func:`restore_optimizer`.

    ``obj`` is the parsed ``json_file``; ``tensors`` what ``tensors_file`` holds (the paths only
    name the files in error messages).
    """
    if (
        not isinstance(obj, dict)
        or not isinstance(obj.get("state"), list)
        or not isinstance(obj.get("param_groups"), list)
    ):
        raise CheckpointError(f"{json_file} lacks 'state' and 'param_groups' lists; re-copy or re-train")
    state: dict[int, Any] = {}
    for item in obj["state"]:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], int)):
            raise CheckpointError(f"{json_file} has a malformed state entry {item!r}; re-copy or re-train")
        state[item[0]] = _decode(item[1], tensors, json_file, tensors_file)
    result: dict[str, Any] = {
        "state": state,
        "param_groups": _decode(obj["param_groups"], tensors, json_file, tensors_file),
    }
    if isinstance(obj.get("class"), str):
        result["optimizer_class"] = obj["class"]
    return result


def _decode(obj: Any, tensors: dict[str, torch.Tensor], json_file: Path, tensors_file: Path) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors, json_file, tensors_file) for v in obj]
    if isinstance(obj, dict):
        if len(obj) == 1 and _TENSOR_TAG in obj:
            key = obj[_TENSOR_TAG]
            if key not in tensors:
                raise CheckpointError(
                    f"{json_file} refers to tensor {key!r}, which {tensors_file.name} lacks; "
                    "re-copy or re-train"
                )
            return tensors[key]
        if len(obj) == 1 and _TUPLE_TAG in obj:
            return tuple(_decode(v, tensors, json_file, tensors_file) for v in obj[_TUPLE_TAG])
        if len(obj) == 1 and _FLOAT_TAG in obj:
            return float(obj[_FLOAT_TAG])
        return {k: _decode(v, tensors, json_file, tensors_file) for k, v in obj.items()}
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
