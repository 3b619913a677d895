"""trajdiff plugin: the pendulum domain and a total-variation cost for the time-series domain."""

from __future__ import annotations

from torch import Tensor

from trajdiff.plugins.spec import Cost, DatasetCard, Domain, hookimpl
from trajdiff_pendulum.domain import PendulumDomain, write_pendulum_dataset


def total_variation(x: Tensor) -> Tensor:
    """Mean absolute change between consecutive tokens, per sample: favours calmer forecasts."""
    return (x[:, 1:] - x[:, :-1]).abs().mean(dim=(1, 2))


@hookimpl
def trajdiff_domains() -> list[Domain]:
    return [PendulumDomain()]


@hookimpl
def trajdiff_costs(domain: Domain) -> dict[str, Cost]:
    return {"total_variation": total_variation} if domain.name == "timeseries" else {}


@hookimpl
def trajdiff_datasets() -> list[DatasetCard]:
    return [DatasetCard(name="pendulum-damped", domain="pendulum",
                        summary="damped pendulum runs, 0.05 s steps (generated)",
                        columns=["time", "run", "theta", "omega"], make=write_pendulum_dataset)]
