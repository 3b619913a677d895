"""The built-in ``vessel`` plugin: AIS vessel trajectories (NOAA MarineCadastre CSV, tracktable .traj).

Registered through the entry point ``vessel = "trajdiff.plugins.vessel"`` in the group
``trajdiff.plugins``, like any third-party plugin.
"""

from __future__ import annotations

from trajdiff.plugins.spec import DatasetCard, Domain, hookimpl
from trajdiff.plugins.vessel.baselines import constant_turn_rate, constant_velocity
from trajdiff.plugins.vessel.domain import VesselDomain, dataset_cards
from trajdiff.plugins.vessel.encoder import VesselEncoder
from trajdiff.plugins.vessel.guides import VesselGuides, vessel_guides
from trajdiff.plugins.vessel.loader import load_ais

__all__ = [
    "VesselDomain",
    "VesselEncoder",
    "VesselGuides",
    "constant_turn_rate",
    "constant_velocity",
    "load_ais",
    "trajdiff_datasets",
    "trajdiff_domains",
    "vessel_guides",
]


@hookimpl
def trajdiff_domains() -> list[Domain]:
    """The ``vessel`` domain."""
    return [VesselDomain()]


@hookimpl
def trajdiff_datasets() -> list[DatasetCard]:
    """The New York Harbor AIS samples from tracktable-data."""
    return dataset_cards()
