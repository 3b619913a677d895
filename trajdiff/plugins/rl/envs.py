"""Gymnasium environments by id, with gymnasium-robotics registered and clear errors."""

from __future__ import annotations

import contextlib
import io
from typing import Any

from trajdiff.errors import ConfigError


def register_robotics() -> None:
    """Registers gymnasium-robotics' environments in gymnasium's registry: its first import does, a later one is
    a no-op of Python's import system (the notice that import prints is kept quiet)."""
    import gymnasium as gym

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        import gymnasium_robotics

    gym.register_envs(gymnasium_robotics)


def make_env(env_id: str, **kwargs: Any) -> Any:
    """``gymnasium.make(env_id, **kwargs)``; an unknown id raises ConfigError listing close matches."""
    import difflib

    import gymnasium as gym

    register_robotics()
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=5, cutoff=0.5)
        hint = f"; did you mean {close}?" if close else "; see gymnasium.registry for the installed ids"
        raise ConfigError(f"unknown environment id {env_id!r}{hint}")
    return gym.make(env_id, **kwargs)
