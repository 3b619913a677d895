"""The built-in ``rl`` plugin: Minari data sets, D4RL-style PointMaze data generation, Diffuser-style planning.

Registered through the entry point ``rl = "trajdiff.plugins.rl"`` in the group ``trajdiff.plugins``.
"""

from __future__ import annotations

from trajdiff.plugins.rl.domain import RLDomain, dataset_cards
from trajdiff.plugins.spec import DatasetCard, Domain, hookimpl

__all__ = ["RLDomain", "trajdiff_datasets", "trajdiff_domains"]


@hookimpl
def trajdiff_domains() -> list[Domain]:
    """The ``rl`` domain."""
    return [RLDomain()]


@hookimpl
def trajdiff_datasets() -> list[DatasetCard]:
    """PointMaze umaze / medium / large and Pendulum data sets, generated locally."""
    return dataset_cards()
