"""The pendulum domain: load logs, encode windows, score forecasts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trajdiff.core.data import Episodes, Normalizer
from trajdiff.errors import DataError
from trajdiff.plugins.spec import Domain, Encoder, Metric, ModelDefaults

COLUMNS = ["theta", "omega"]


def write_pendulum_dataset(path: str | Path, runs: int = 40, steps: int = 200, dt: float = 0.05,
                           seed: int = 0) -> Path:
    """Simulates damped pendulums (theta'' = -g/l sin(theta) - c theta') and writes a CSV."""
    rng = np.random.default_rng(seed)
    frames = []
    for run in range(runs):
        theta, omega = rng.uniform(-2.5, 2.5), rng.uniform(-1, 1)
        damping, length = rng.uniform(0.05, 0.3), rng.uniform(0.8, 1.5)
        rows = []
        for _ in range(steps):
            rows.append((theta, omega))
            for _ in range(10):  # semi-implicit Euler substeps
                omega += dt / 10 * (-9.81 / length * np.sin(theta) - damping * omega)
                theta += dt / 10 * omega
        frame = pd.DataFrame(rows, columns=COLUMNS)
        frame.insert(0, "run", f"run{run:03d}")
        frame.insert(0, "time", np.round(np.arange(steps) * dt, 6))
        frames.append(frame)
    path = Path(path)
    pd.concat(frames).to_csv(path, index=False)
    return path


class PendulumEncoder(Encoder):
    """Standardizes theta and omega with training statistics."""

    def __init__(self, normalizer: Normalizer | None = None) -> None:
        self.normalizer = normalizer or Normalizer("standard")

    @property
    def dim(self) -> int:
        return len(COLUMNS)

    def fit(self, episodes: Episodes) -> PendulumEncoder:
        self.normalizer.fit(episodes)
        return self

    def encode(self, window: np.ndarray, history: int) -> tuple[np.ndarray, dict[str, Any]]:
        return self.normalizer.transform(np.asarray(window, dtype=np.float64)), {}

    def decode(self, x: np.ndarray, frame: dict[str, Any]) -> np.ndarray:
        return self.normalizer.inverse(np.asarray(x, dtype=np.float64))

    def state_dict(self) -> dict[str, Any]:
        return {"normalizer": self.normalizer.state_dict()}


def _angle_error(samples: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute error of the median sampled angle (radians)."""
    return float(np.abs(np.median(samples[..., 0], axis=0) - truth[..., 0]).mean())


class PendulumDomain(Domain):
    name = "pendulum"
    summary = "damped pendulum logs: theta, omega per run (example plugin)"

    def load(self, source: Any, **options: Any) -> Episodes:
        frame = source if isinstance(source, pd.DataFrame) else pd.read_csv(source)
        missing = [c for c in ["time", "run", *COLUMNS] if c not in frame.columns]
        if missing:
            raise DataError(f"{source}: missing column(s) {missing}; a pendulum log has time, run, theta, omega")
        sequences, ids, meta = [], [], []
        for run, group in frame.groupby("run", sort=True):
            group = group.sort_values("time")
            sequences.append(group[COLUMNS].to_numpy(dtype=np.float64))
            ids.append(str(run))
            meta.append({"times": group["time"].to_numpy(), "entity": str(run)})
        return Episodes(sequences, list(COLUMNS), ids, meta)

    def make_encoder(self, **options: Any) -> PendulumEncoder:
        return PendulumEncoder()

    def encoder_from_state(self, state: dict[str, Any]) -> PendulumEncoder:
        return PendulumEncoder(Normalizer.from_state(state["normalizer"]))

    def defaults(self) -> ModelDefaults:
        return ModelDefaults(history=10, horizon=20, steps=400, batch_size=64, lr=2e-3, stride=2, nfe=10,
                             samples=8, network={"kind": "transformer", "width": 48, "depth": 2, "heads": 4})

    def metrics(self) -> dict[str, Metric]:
        return {"angle_mae": _angle_error}
