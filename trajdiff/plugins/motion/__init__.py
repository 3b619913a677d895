"""The built-in ``motion`` plugin: human motion from BVH motion capture.

Registered through the entry point ``motion = "trajdiff.plugins.motion"`` in the group
``trajdiff.plugins``, like any third-party plugin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trajdiff.plugins.motion.bvh import BvhClip, Skeleton, read_bvh, write_bvh
from trajdiff.plugins.motion.domain import MotionDomain, dataset_cards
from trajdiff.plugins.motion.encoder import MotionEncoder
from trajdiff.plugins.motion.loader import load_motion
from trajdiff.plugins.spec import CommandContext, DatasetCard, Domain, hookimpl

if TYPE_CHECKING:
    import typer

__all__ = [
    "BvhClip",
    "MotionDomain",
    "MotionEncoder",
    "Skeleton",
    "load_motion",
    "read_bvh",
    "trajdiff_commands",
    "trajdiff_datasets",
    "trajdiff_domains",
    "write_bvh",
]


@hookimpl
def trajdiff_domains() -> list[Domain]:
    """The ``motion`` domain."""
    return [MotionDomain()]


@hookimpl
def trajdiff_datasets() -> list[DatasetCard]:
    """The CMU motion capture subset."""
    return dataset_cards()


@hookimpl
def trajdiff_commands(app: typer.Typer, cli: CommandContext) -> None:
    """``trajdiff sample``: motion of any length through the rolling plan."""
    from trajdiff.plugins.motion.commands import add_commands

    add_commands(app, cli)
