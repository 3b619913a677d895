"""Small networks stored beside a planner in its model folder (its value, its inverse dynamics): the weights as
safetensors and a JSON record (the constructor's ``config`` plus training figures), written and read through the
checkpoint I/O so that a partial or corrupt file is a one-line error, never a half-loaded network."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from trajdiff.core.checkpoint_io import prepare_tensors, read_json, read_safetensors, write_json, write_safetensors
from trajdiff.errors import CheckpointError, ConfigError


def save_side_net(model_dir: str | Path, net: nn.Module, files: tuple[str, str], record: dict[str, Any],
                  what: str) -> None:
    """Writes ``net``'s weights and ``record`` as ``files`` (weights, record) in ``model_dir``."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    write_safetensors(model_dir / files[0], prepare_tensors(net.state_dict(), what))
    write_json(model_dir / files[1], record, what, allow_nan=True)


def has_side_net(model_dir: str | Path, files: tuple[str, str]) -> bool:
    """Whether ``model_dir`` holds both ``files``."""
    return all((Path(model_dir) / name).is_file() for name in files)


def load_side_net(model_dir: str | Path, files: tuple[str, str], build: Callable[..., nn.Module], what: str,
                  how_to_fit: str) -> nn.Module:
    """The network ``build(**record["config"])`` with the weights in ``files``, in eval mode; a missing pair is a
    `ConfigError` saying ``how_to_fit``, an unreadable one a `CheckpointError`."""
    model_dir = Path(model_dir)
    if not has_side_net(model_dir, files):
        raise ConfigError(f"{model_dir} has no {what} ({files[0]}); {how_to_fit}")
    record = read_json(model_dir / files[1])
    try:
        net = build(**record["config"])
        net.load_state_dict(read_safetensors(model_dir / files[0], "cpu"))
    except (KeyError, TypeError, RuntimeError) as error:
        raise CheckpointError(f"cannot read the {what} in {model_dir}: {error}") from None
    return net.eval()
