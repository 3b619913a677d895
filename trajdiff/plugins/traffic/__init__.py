"""The built-in ``traffic`` plugin: multi-agent tracks (pedestrians, vehicles) and the ETH/UCY data sets.

Registered through the entry point ``traffic = "trajdiff.plugins.traffic"`` in the group
``trajdiff.plugins``, like any third-party plugin.
"""

from __future__ import annotations

from trajdiff.plugins.spec import DatasetCard, Domain, hookimpl
from trajdiff.plugins.traffic.costs import CollisionCost, SpeedCost, collision_penalty, world_positions
from trajdiff.plugins.traffic.domain import TrafficDomain, dataset_cards, folder_sha256
from trajdiff.plugins.traffic.encoder import TrackEncoder
from trajdiff.plugins.traffic.joint import encode_scene, sample_joint
from trajdiff.plugins.traffic.loader import load_tracks, neighbour_columns

__all__ = [
    "CollisionCost",
    "SpeedCost",
    "TrackEncoder",
    "TrafficDomain",
    "collision_penalty",
    "encode_scene",
    "folder_sha256",
    "load_tracks",
    "neighbour_columns",
    "sample_joint",
    "trajdiff_datasets",
    "trajdiff_domains",
    "world_positions",
]


@hookimpl
def trajdiff_domains() -> list[Domain]:
    """The ``traffic`` domain."""
    return [TrafficDomain()]


@hookimpl
def trajdiff_datasets() -> list[DatasetCard]:
    """The ETH/UCY leave-one-scene-out splits (real data, obtained by the user)."""
    return dataset_cards()
