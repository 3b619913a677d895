"""The built-in ``traffic``  plugin (work in progress: registers nothing yet)."""

from __future__ import annotations

from trajdiff.plugins.spec import DatasetCard, Domain, hookimpl


@hookimpl
def trajdiff_domains() -> list[Domain]:
    """No domain yet."""
    return []


@hookimpl
def trajdiff_datasets() -> list[DatasetCard]:
    """No data sets yet."""
    return []
