"""The built-in ``rl`` plugin: Minari data sets, D4RL-style PointMaze data generation, Diffuser-style planning.

Registered through the entry point ``rl = "trajdiff.plugins.rl"`` in the group ``trajdiff.plugins``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trajdiff.plugins.rl.domain import RLDomain, dataset_cards
from trajdiff.plugins.spec import CommandContext, DatasetCard, Domain, hookimpl

if TYPE_CHECKING:
    import typer

__all__ = ["RLDomain", "trajdiff_commands", "trajdiff_datasets", "trajdiff_domains"]


@hookimpl
def trajdiff_domains() -> list[Domain]:
    """The ``rl`` domain."""
    return [RLDomain()]


@hookimpl
def trajdiff_datasets() -> list[DatasetCard]:
    """PointMaze umaze / medium / large and Pendulum data sets, generated locally."""
    return dataset_cards()


@hookimpl
def trajdiff_commands(app: typer.Typer, cli: CommandContext) -> None:
    """``trajdiff plan`` (closed-loop planning in gymnasium environments), ``fit-value`` and ``fit-inverse``."""
    from trajdiff.plugins.rl.commands import add_commands

    add_commands(app, cli)
