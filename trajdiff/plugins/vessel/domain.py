"""The ``vessel`` domain: AIS vessel tracks, forecast in a local metric frame, drawn on a map.

Also the data sets it knows: the New York Harbor AIS samples of the tracktable-data package.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np

from trajdiff.core.data import Episodes
from trajdiff.errors import ConfigError
from trajdiff.plugins.recipes import window_mlp_recipe
from trajdiff.plugins.spec import Baseline, Cost, DatasetCard, Domain, Metric, ModelDefaults, Recipe
from trajdiff.plugins.vessel.baselines import ctr_baseline, cv_baseline
from trajdiff.plugins.vessel.encoder import VesselEncoder
from trajdiff.plugins.vessel.geo import to_local
from trajdiff.plugins.vessel.guides import (
    COST_NAMES,
    GUIDE_LOAD_OPTIONS,
    GUIDE_OPTIONS,
    BindableCost,
    VesselGuides,
    guide_settings,
    vessel_guides,
)
from trajdiff.plugins.vessel.loader import load_ais
from trajdiff.plugins.vessel.metrics import METRICS

__all__ = ["AIS_FILES", "VesselDomain", "dataset_cards"]

TRACKTABLE = "PyPI package tracktable-data 1.7.3.1 (https://pypi.org/project/tracktable-data/1.7.3.1/)"
OBTAIN = ("pip install tracktable-data==1.7.3.1; python -c \"from tracktable_data.data import retrieve; "
          "print(retrieve('FILE'))\" prints the file's path; check its sha256 (datasets/ais.md)")
AIS_FILES = {
    "ais-nyharbor-hour": ("NYHarbor_2020_06_30_first_hour.csv",
                          "5b81f49dae4063dca6170a9b96dfcf5d10d680edc1529bbe68170180b23a8329",
                          "AIS reports, New York Harbor, 2020-06-30 00:00-01:00, NOAA MarineCadastre CSV: 8,689 rows, "
                          "295 vessels",
                          ["BaseDateTime", "LON", "LAT", "MMSI", "SOG", "COG", "Heading", "VesselName", "IMO",
                           "CallSign", "VesselType", "Status", "Length", "Width", "Draft", "Cargo",
                           "TranscieverClass", "ETA"]),
    "ais-nyharbor-day": ("NYHarbor_2020_12_08.traj",
                         "b23de3fd5442a941eb1a025308681d60cb086ab1bd0151a26b2726ea820aee5c",
                         "AIS trajectories, New York Harbor, 2020-12-08, tracktable .traj: 38 trajectories, "
                         "9,091 points, 37 vessels",
                         ["MMSI", "timestamp", "lon", "lat"]),
    "ais-nyharbor-week": ("NYHarbor_2020_12_first_week.traj",
                          "9b18238f5df37fb2c7cae4bbc111dfcbcfbff77ad707b36eb7537826b2308658",
                          "AIS trajectories, New York Harbor, 2020-12-01 to 12-07, tracktable .traj: 513 "
                          "trajectories, 172,679 points, 140 vessels",
                          ["MMSI", "timestamp", "lon", "lat"]),
}


class VesselDomain(Domain):
    """AIS vessel trajectories: positions resampled per track, forecast as lat/lon with time stamps."""

    name = "vessel"
    summary = "AIS vessel tracks (NOAA CSV, tracktable .traj); map forecasts, keep-out/speed/turn/waypoint guides"

    def load(self, source: Any, **options: Any) -> Episodes:
        """Reads an AIS log; options as `load_ais` (interval, gap, max_speed_knots, min_rows, tracks, bad_rows,
        hold_out), plus the settings of the guiding costs (keep_out, margin_m, speed_limit_knots,
        max_turn_deg_per_min, waypoint, waypoint_weight), stored in each episode's meta "guide"."""
        known = [name for name in inspect.signature(load_ais).parameters if name != "source"]
        unknown = sorted(set(options) - set(known) - set(GUIDE_LOAD_OPTIONS))
        if unknown:
            raise ConfigError(f"unknown vessel loader option(s) {unknown}; valid options: "
                              f"{known + list(GUIDE_LOAD_OPTIONS)}")
        options = dict(options)
        settings = guide_settings(options)
        episodes = load_ais(source, **options)
        if settings:
            for meta in episodes.meta or []:
                meta["guide"] = settings
        return episodes

    def costs(self) -> dict[str, Cost]:
        """keep_out, max_speed, max_turn and waypoint: bound per forecast batch (see `guides`)."""
        return {name: BindableCost(name) for name in COST_NAMES}

    def make_encoder(self, **options: Any) -> VesselEncoder:
        """A fresh encoder; options ``history``, ``horizon`` (rows), ``velocity_steps``, ``patch``, ``place``,
        ``rotate``, ``residual``."""
        known = {"history", "horizon", "velocity_steps", "patch", "place", "rotate", "residual"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown vessel encoder option(s) {unknown}; valid options: {sorted(known)}")
        return VesselEncoder(**options)

    def encoder_from_state(self, state: dict[str, Any]) -> VesselEncoder:
        return VesselEncoder.from_state(state)

    def defaults(self) -> ModelDefaults:
        """30 rows of history and 30 ahead (30 minutes each at the loader's default 1-minute interval) in
        patches of 5 rows (12 tokens); a transformer of width 64, depth 3, 4 heads; v-prediction, cosine
        schedule; DPM-Solver++(2M) with 10 function evaluations."""
        return ModelDefaults(
            history=30,
            horizon=30,
            network={"kind": "transformer", "dim": None, "width": 64, "depth": 3, "heads": 4},
            steps=6000,
            batch_size=128,
            lr=1e-3,
            stride=2,
            nfe=10,
            encoder={"velocity_steps": 1, "patch": 5},
        )

    def recipes(self) -> dict[str, Recipe]:
        """``window-mlp``: `trajdiff.plugins.recipes.window_mlp_recipe` (width 256, depth 3), for full-sequence
        forecasts; `benchmarks/throughput.py` compares it with the default."""
        return {"window-mlp": window_mlp_recipe()}

    def metrics(self) -> dict[str, Metric]:
        return dict(METRICS)

    def baselines(self) -> dict[str, Baseline]:
        """constant_velocity and constant_turn_rate, dead-reckoned along great circles (see `baselines`)."""
        return {"constant_velocity": cv_baseline, "constant_turn_rate": ctr_baseline}

    def point_metrics(self) -> list[str]:
        """The errors of the samples' geometric median (see `metrics`)."""
        return ["ade_m", "fde_m"]

    def make_guides(self, encoder: VesselEncoder, **options: Any) -> VesselGuides:
        """Guides for `api.forecast(..., guides={...})`: keep_out (GeoJSON), margin_m, max_speed_knots,
        max_turn_deg_per_min, waypoint (LAT,LON), waypoint_weight, inner_steps, stop_level."""
        unknown = sorted(set(options) - set(GUIDE_OPTIONS))
        if unknown:
            raise ConfigError(f"unknown vessel guide option(s) {unknown}; valid options: {list(GUIDE_OPTIONS)}")
        return vessel_guides(encoder, **options)

    def endpoints(self, futures: np.ndarray, columns: list[str]) -> np.ndarray:
        """Final positions of each sample in metres (east, north) around their mean: k-means in degrees
        would stretch the north-south axis."""
        end = np.asarray(futures)[:, -1]
        lat, lon = end[:, columns.index("lat")], end[:, columns.index("lon")]
        return to_local(lat, lon, float(lat.mean()), float(lon.mean()))

    def plot_forecasts(
        self, path: Path, histories: dict[str, np.ndarray], futures: dict[str, np.ndarray], columns: list[str],
        truths: dict[str, np.ndarray] | None = None,
    ) -> Path | None:
        from trajdiff.plugins.vessel.plot import plot_map

        return plot_map(path, histories, futures, truths)


def dataset_cards() -> list[DatasetCard]:
    """The three New York Harbor AIS samples (real; the user obtains them, see datasets/ais.md)."""
    return [
        DatasetCard(name=name, domain="vessel", summary=summary, source=f"{TRACKTABLE}, file {file}",
                    licence="BSD-2-Clause", sha256=sha, columns=columns,
                    obtain=OBTAIN.replace("FILE", file) + f"; then `trajdiff train --domain vessel --data {file}`")
        for name, (file, sha, summary, columns) in AIS_FILES.items()
    ]
