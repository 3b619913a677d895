"""Gymnasium environments by id, with gymnasium-robotics registered and clear errors.

gymnasium, gymnasium-robotics and minari come with the ``rl`` extra (``pip install 'trajdiff[rl]'``):
the rl plugin imports and lists without them, and every use that needs them calls `require_rl` first.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

from trajdiff.errors import ConfigError

RL_EXTRA = "the rl domain needs gymnasium and minari: pip install 'trajdiff[rl]'"
RL_MODULES = ("gymnasium", "gymnasium_robotics", "minari")


def require_rl() -> None:
    """Raises ConfigError (one line: what to install) unless the ``rl`` extra's packages are installed."""
    import importlib.util

    for module in RL_MODULES:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a blocked or half-imported module
            found = False
        if not found:
            raise ConfigError(RL_EXTRA)


def register_robotics() -> None:
    """Registers gymnasium-robotics' environments in gymnasium's registry: its first import does, a later one is
    a no-op of Python's import system (the notice that import prints is kept quiet)."""
    require_rl()
    import gymnasium as gym

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        import gymnasium_robotics

    gym.register_envs(gymnasium_robotics)


def make_env(env_id: str, **kwargs: Any) -> Any:
    """``gymnasium.make(env_id, **kwargs)``; an unknown id raises ConfigError listing close matches."""
    import difflib

    require_rl()
    register_robotics()
    import gymnasium as gym

    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=5, cutoff=0.5)
        hint = f"; did you mean {close}?" if close else "; see gymnasium.registry for the installed ids"
        raise ConfigError(f"unknown environment id {env_id!r}{hint}")
    return gym.make(env_id, **kwargs)
