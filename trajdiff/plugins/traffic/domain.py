"""The ``traffic`` domain: multi-agent tracks (pedestrians, vehicles) in an agent-centred frame.

Each agent track is one episode whose columns are its own ``x, y`` and, per frame, the ``K`` nearest
other agents' relative position and velocity with a presence flag (`load_tracks`); the history part
of a window therefore carries the neighbours' histories as clean context, and the model forecasts
the agent's own positions (`TrackEncoder`). Agents of one scene at one time are sampled together
(`trajdiff.plugins.traffic.joint.sample_joint`, or ``trajdiff forecast --cost collision=0.5``, which
groups agents by file and last observed frame) so that the ``collision`` cost couples them; ``speed``
penalizes steps faster than a limit.

Also the ETH/UCY data set cards (real; obtained by the user) with a checksum per scene folder.
"""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path
from typing import Any

import numpy as np

from trajdiff.core.data import Episodes
from trajdiff.core.metrics import ade, fde, min_ade, min_fde
from trajdiff.errors import ConfigError
from trajdiff.plugins.spec import Baseline, Cost, DatasetCard, Domain, Metric, ModelDefaults, Recipe
from trajdiff.plugins.traffic.baselines import constant_velocity
from trajdiff.plugins.traffic.costs import CollisionCost, SpeedCost
from trajdiff.plugins.traffic.encoder import TrackEncoder
from trajdiff.plugins.traffic.loader import load_tracks
from trajdiff.plugins.traffic.plot import plot_tracks

__all__ = ["ETH_UCY_SHA256", "ETH_UCY_SOURCE", "TrafficDomain", "dataset_cards", "folder_sha256"]

ETH_UCY_SOURCE = "https://github.com/StanfordASL/Trajectron-plus-plus (experiments/pedestrians/raw)"
ETH_UCY_SHA256 = {  # folder_sha256 of each scene folder <scene>/{train,val,test}/*.txt
    "eth": "f80660e6e53f7fbc7089a54a5a4a03faf1996a7a0a8e3239858eb450dd14383c",
    "hotel": "9d064c6cd1808890885eafe8a6f5cf07b71eb23db41649822e2327b7299f0721",
    "univ": "baa5adf74d70d81c064fe42ae4c095e518dc828f5461e1b9b90176cb86ef8e8a",
    "zara1": "2933e88f7fa9448404f57cc3fb7ac4f13a9594f40580b33aa6263b3cfa6b6e13",
    "zara2": "fe8d1e49e9fba91550086c8128882eb16878782ab2a2bcbe1441f779f273032a",
}


def folder_sha256(folder: str | Path) -> str:
    """sha256 of the lines ``"<sha256 of file>  <path relative to folder>\\n"`` of every ``*.txt`` below
    ``folder``, sorted by path; equal to ``find . -name '*.txt' | sed 's|^./||' | LC_ALL=C sort | xargs
    sha256sum | sha256sum`` run inside the folder."""
    folder = Path(folder)
    lines = []
    for path in sorted(folder.rglob("*.txt"), key=lambda p: p.relative_to(folder).as_posix().encode()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{digest}  {path.relative_to(folder).as_posix()}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _xy(samples: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(samples)[..., :2], np.asarray(truth)[..., :2]


def min_ade_metric(samples: np.ndarray, truth: np.ndarray) -> float:
    """Best-of-S average displacement error of x, y (user units)."""
    s, t = _xy(samples, truth)
    return float(min_ade(s, t))


def min_fde_metric(samples: np.ndarray, truth: np.ndarray) -> float:
    """Best-of-S final displacement error of x, y (user units)."""
    s, t = _xy(samples, truth)
    return float(min_fde(s, t))


def ade_mean_metric(samples: np.ndarray, truth: np.ndarray) -> float:
    """Average displacement error of the samples' mean trajectory (the point forecast), x, y."""
    s, t = _xy(samples, truth)
    return float(ade(s.mean(axis=0), t))


def fde_mean_metric(samples: np.ndarray, truth: np.ndarray) -> float:
    """Final displacement error of the samples' mean trajectory (the point forecast), x, y."""
    s, t = _xy(samples, truth)
    return float(fde(s.mean(axis=0), t))


class TrafficDomain(Domain):
    """Multi-agent tracks ``(frame, agent_id, x, y)``; each agent forecast from its own and its
    neighbours' histories; collision and speed-limit costs."""

    name = "traffic"
    summary = "multi-agent tracks (frame, agent_id, x, y): pedestrians and vehicles; ETH/UCY"

    def load(self, source: Any, **options: Any) -> Episodes:
        """Reads a track file, a folder of them or a DataFrame; options as `load_tracks` (neighbours,
        frame_step, fps)."""
        known = [name for name in inspect.signature(load_tracks).parameters if name != "source"]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ConfigError(f"unknown traffic loader option(s) {unknown}; valid options: {known}")
        return load_tracks(source, **options)

    def make_encoder(self, **options: Any) -> TrackEncoder:
        """A fresh agent-frame encoder (options: rotate, residual, history, horizon)."""
        return TrackEncoder(**options)

    def encoder_from_state(self, state: dict[str, Any]) -> TrackEncoder:
        return TrackEncoder.from_state(state)

    def defaults(self) -> ModelDefaults:
        """The ETH/UCY protocol: 8 observed and 12 forecast steps of tokens of own position plus 4 neighbours;
        the window MLP (`trajdiff.core.networks.window_mlp`, width 128, depth 2) predicting the clean window, one
        noise level per window and the history always clean; 20 samples at 10 NFE of DPM-Solver++(2M) (on
        ETH/UCY as good as 100 NFE). On held-out windows it forecast as well as the transformer it replaced, at a
        tenth of the cost per trajectory (`benchmarks/throughput.py`, BENCHMARKS.md); that transformer is the
        ``transformer`` recipe."""
        return ModelDefaults(
            history=8,
            horizon=12,
            network={"kind": "window_mlp", "dim": None, "length": None, "width": 128, "depth": 2},
            parametrization="x0",
            steps=4000,
            batch_size=256,
            lr=1e-3,
            solver="dpmpp2m",
            nfe=10,
            samples=20,
            noise="shared",  # one level per window (full-sequence sampling)
            history_prob=1.0,  # the 8 observed steps are always given when forecasting
            encoder={"rotate": True, "residual": "cv"},
        )

    def recipes(self) -> dict[str, Recipe]:
        """``transformer``: the earlier default, a transformer (width 128, depth 4, 1.2 M parameters; v
        parametrization) whose cost grows with the tokens; any plan of per-token levels suits it as far as its
        training noise (one level per window) does. On 2 CPU cores expect about 100-200 steps a minute;
        ``benchmarks/eth_ucy.py`` trains it on a GPU (about 4,000 steps a minute)."""
        return {"transformer": Recipe("transformer of width 128, depth 4 (the default before the window MLP)",
                                      {"network": {"kind": "transformer", "dim": None, "width": 128, "depth": 4,
                                                   "heads": 4}, "parametrization": "v"})}

    def augment_windows(self, windows: np.ndarray, encoder: Any) -> np.ndarray:
        """Adds each training window's mirror image across the heading axis (heading-aligned frames
        only), doubling the data as the ETH/UCY benchmark does."""
        if not getattr(encoder, "rotate", False):
            return windows
        return np.concatenate([windows, encoder.mirrored(windows)])

    def costs(self) -> dict[str, Cost]:
        """``collision`` (agents of one scene sampled jointly) and ``speed`` (a speed limit); both bind
        to the batch's frames (see `trajdiff.plugins.traffic.costs`)."""
        return {"collision": CollisionCost(), "speed": SpeedCost()}

    def metrics(self) -> dict[str, Metric]:
        """Best-of-S (min_ade, min_fde) and the samples' mean trajectory (ade_mean, fde_mean), in user units."""
        return {"min_ade": min_ade_metric, "min_fde": min_fde_metric, "ade_mean": ade_mean_metric,
                "fde_mean": fde_mean_metric}

    def baselines(self) -> dict[str, Baseline]:
        """constant_velocity: each agent keeps its last observed step."""
        return {"constant_velocity": constant_velocity}

    def point_metrics(self) -> list[str]:
        return ["ade_mean", "fde_mean"]

    def endpoints(self, futures: np.ndarray, columns: list[str]) -> np.ndarray:
        """Final positions (x, y) of each sample: where representative samples are chosen."""
        return np.asarray(futures)[:, -1, :2]

    def plot_forecasts(
        self, path: Path, histories: dict[str, np.ndarray], futures: dict[str, np.ndarray], columns: list[str],
        truths: dict[str, np.ndarray] | None = None,
    ) -> Path | None:
        """Tracks drawn in the x-y plane: history, sampled futures and, when given, the true future."""
        return plot_tracks(path, histories, futures, truths)


def dataset_cards() -> list[DatasetCard]:
    """One card per ETH/UCY leave-one-scene-out split (the scene's test file; train/val hold the others)."""
    cards = []
    for scene, digest in ETH_UCY_SHA256.items():
        cards.append(DatasetCard(
            name=f"eth_ucy_{scene}",
            domain="traffic",
            summary=f"ETH/UCY pedestrians, leave-one-scene-out split '{scene}' (Social-GAN): "
                    "train/val on the other scenes, test on this one; 0.4 s steps, metres",
            source=ETH_UCY_SOURCE,
            licence="ETH: none stated; UCY: free for use with credit to the original authors",
            sha256=digest,
            columns=["frame", "agent_id", "x", "y"],
            obtain=f"copy experiments/pedestrians/raw/{scene} of the Trajectron++ repository; check it with "
                   "trajdiff.plugins.traffic.domain.folder_sha256 (see datasets/eth_ucy.md)",
        ))
    return cards
