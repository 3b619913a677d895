"""The built-in ``timeseries`` plugin: a domain for regular multivariate series and its data sets.

Registered through the entry point ``timeseries = "trajdiff.plugins.timeseries"`` in the group
``trajdiff.plugins``, like any third-party plugin.
"""

from __future__ import annotations

from trajdiff.plugins.spec import DatasetCard, Domain, hookimpl
from trajdiff.plugins.timeseries.chaotic import chaotic_series, write_chaotic_dataset
from trajdiff.plugins.timeseries.domain import TimeSeriesDomain, dataset_cards
from trajdiff.plugins.timeseries.encoder import SeriesEncoder
from trajdiff.plugins.timeseries.loader import load_series

__all__ = [
    "SeriesEncoder",
    "TimeSeriesDomain",
    "chaotic_series",
    "load_series",
    "trajdiff_datasets",
    "trajdiff_domains",
    "write_chaotic_dataset",
]


@hookimpl
def trajdiff_domains() -> list[Domain]:
    """The ``timeseries`` domain."""
    return [TimeSeriesDomain()]


@hookimpl
def trajdiff_datasets() -> list[DatasetCard]:
    """ETTh1 (real) and the generated chaotic-flow data sets."""
    return dataset_cards()
