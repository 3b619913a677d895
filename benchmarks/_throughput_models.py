"""Data and models of `throughput.py`: the held-out windows of each domain as episodes that `api.forecast` reads
(one episode per window, cut to its history), their true futures, and the teacher / student models trained with
`api.train`.

Domains: ``pedestrians`` (ETH/UCY zara1 left out, Social-GAN windows as `eth_ucy.py` builds them), ``vessels``
(New York Harbor AIS, 20% of the vessels held out as `vessel.py` does) and ``etth1`` (the test months, as
`etth1.py`). A window's history keeps what the model's loader gave it (neighbour columns, speeds, time stamps),
so the forecast sees what a forecast over the whole file would.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from _eth_ucy_full import social_gan_groups

from trajdiff import api
from trajdiff.core import metrics
from trajdiff.core.data import Episodes
from trajdiff.plugins.timeseries import TimeSeriesDomain
from trajdiff.plugins.traffic import TrafficDomain
from trajdiff.plugins.vessel import VesselDomain
from trajdiff.plugins.vessel.geo import haversine_m

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
ETH_UCY = SHARED / "eth_ucy"
ETTH1 = SHARED / "ett" / "ETTh1.csv"
AIS_DATA = SHARED / "ais" / "NYHarbor_2020_12_first_week.traj"
AIS_VALIDATION = SHARED / "ais" / "NYHarbor_2020_12_08.traj"
SCENE = "zara1"
OBS, PRED = 8, 12
TRAFFIC_TEACHER = {"kind": "transformer", "width": 64, "depth": 3, "heads": 4}
"""The network of the ETH/UCY CPU benchmark (`eth_ucy_cpu.json`)."""
ETTH1_TEACHER = {"kind": "transformer", "width": 128, "depth": 3, "heads": 4, "dropout": 0.1}
"""The network of the ETTh1 benchmark (`etth1.py`)."""
ETTH1_CONTEXT, ETTH1_HORIZON = 96, 96
ETTH1_TRAIN_END, ETTH1_VAL_END, ETTH1_TEST_END = 12 * 30 * 24, 16 * 30 * 24, 20 * 30 * 24


@dataclass
class Windows:
    """Held-out windows as episodes cut to their histories (what `api.forecast` reads) and their futures."""

    episodes: Episodes
    truth: np.ndarray  # [N, H, F] the true futures, user units
    metric: str  # the quality metric's name
    columns: list[int]  # the columns the metric reads from the forecast
    distance: str = "euclidean"  # "euclidean" (metres), "haversine" (lat, lon) or "crps" (standardized values)


def pedestrian_windows(max_groups: int, split: str = "test") -> Windows:
    """zara1's Social-GAN test windows (every agent present in all 20 frames of a window with at least two such
    agents; ``max_groups`` evenly spaced windows): each agent's 8 observed rows with its neighbour columns as the
    whole file gives them. ``split="val"``: the validation files of the training scenes instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        episodes = TrafficDomain().load(ETH_UCY / SCENE / split)
    keys, by_group = social_gan_groups(episodes, OBS + PRED, 2, max_groups)
    sequences, ids, metas, truth = [], [], [], []
    for g, key in enumerate(keys):
        for i, s in by_group[key]:
            sequences.append(episodes.sequences[i][s:s + OBS])
            ids.append(f"w{g}:{episodes.ids[i]}")
            metas.append({**episodes.meta[i], "times": episodes.meta[i]["times"][s:s + OBS], "entity": ids[-1]})
            truth.append(episodes.sequences[i][s + OBS:s + OBS + PRED, :2])
    return Windows(Episodes(sequences, list(episodes.columns), ids=ids, meta=metas), np.stack(truth),
                   "minADE20/minFDE20 (m)", [0, 1])


def pedestrian_training() -> Episodes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return TrafficDomain().load(ETH_UCY / SCENE / "train")


def vessel_split(seed: int = 0) -> tuple[Episodes, Episodes]:
    """(training, held-out) tracks of the New York Harbor week, vessels split 80/20 by MMSI (`vessel.py`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        episodes = VesselDomain().load(AIS_DATA)
    vessels = sorted({m["mmsi"] for m in episodes.meta})
    held = set(np.random.default_rng(seed).choice(vessels, size=max(1, round(len(vessels) * 0.2)),
                                                  replace=False).tolist())
    return (episodes.select([i for i, m in enumerate(episodes.meta) if m["mmsi"] not in held]),
            episodes.select([i for i, m in enumerate(episodes.meta) if m["mmsi"] in held]))


def vessel_windows(test: Episodes, stride: int = 30, history: int = 30, horizon: int = 30) -> Windows:
    """Every window of ``history + horizon`` rows (step ``stride``) of the held-out tracks, cut to its history."""
    sequences, ids, metas, truth = [], [], [], []
    for i, seq in enumerate(test.sequences):
        for s in range(0, len(seq) - history - horizon + 1, stride):
            sequences.append(seq[s:s + history])
            ids.append(f"{test.ids[i]}+{s}")
            meta = dict(test.meta[i])
            for key, value in meta.items():
                if isinstance(value, np.ndarray) and len(value) == len(seq):
                    meta[key] = value[s:s + history]
            metas.append({**meta, "entity": ids[-1]})
            truth.append(seq[s + history:s + history + horizon, :2])
    return Windows(Episodes(sequences, list(test.columns), ids=ids, meta=metas), np.stack(truth),
                   "minADE20/minFDE20 (m; FDE at 30 min)", [0, 1], "haversine")


def vessel_validation() -> Episodes:
    """Every track of the New York Harbor log of 2020-12-08, the day after the training week: validation windows."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return VesselDomain().load(AIS_VALIDATION)


def etth1_frames(split: str = "test") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training months, test or validation months with 96 rows of context before them) of ETTh1 as the CSV gives
    them."""
    frame = pd.read_csv(ETTH1)
    lo, hi = (ETTH1_VAL_END, ETTH1_TEST_END) if split == "test" else (ETTH1_TRAIN_END, ETTH1_VAL_END)
    return (frame.iloc[:ETTH1_TRAIN_END].reset_index(drop=True),
            frame.iloc[lo - ETTH1_CONTEXT:hi].reset_index(drop=True))


def etth1_windows(test: pd.DataFrame, max_windows: int) -> Windows:
    """``max_windows`` evenly spread test windows of 96 + 96 hours, as episodes of their 96 observed hours."""
    episodes = TimeSeriesDomain().load(test)
    seq = episodes.sequences[0]
    length = ETTH1_CONTEXT + ETTH1_HORIZON
    starts = np.arange(len(seq) - length + 1)
    if max_windows and len(starts) > max_windows:
        starts = starts[np.linspace(0, len(starts) - 1, max_windows).round().astype(int)]
    meta0 = episodes.meta[0] if episodes.meta else {}
    sequences, ids, metas = [], [], []
    for s in starts:
        sequences.append(seq[s:s + ETTH1_CONTEXT])
        ids.append(f"t{s}")
        meta = {key: (value[s:s + ETTH1_CONTEXT] if isinstance(value, np.ndarray) and len(value) == len(seq)
                      else value) for key, value in meta0.items()}
        metas.append({**meta, "entity": ids[-1]})
    truth = np.stack([seq[s + ETTH1_CONTEXT:s + length] for s in starts])
    return Windows(Episodes(sequences, list(episodes.columns), ids=ids, meta=metas), truth, "CRPS (standardized)",
                   list(range(truth.shape[-1])), "crps")


def quality(windows: Windows, samples: dict[str, np.ndarray], standardize: tuple[np.ndarray, np.ndarray] | None = None
            ) -> list[float]:
    """The windows' quality metric of `api.forecast`'s samples (entity -> ``[S, H, F]``): [minADE, minFDE] (metres)
    for tracks, [CRPS] on standardized values (``standardize``: training mean and std) for ETTh1."""
    futures = np.stack([samples[entity] for entity in windows.episodes.ids], axis=1)  # [S, N, H, F]
    futures, truth = futures[..., windows.columns], windows.truth[..., windows.columns]
    if windows.distance == "crps":
        assert standardize is not None
        mean, std = standardize
        s, t = torch.from_numpy((futures - mean) / std).float(), torch.from_numpy((truth - mean) / std).float()
        return [float(metrics.crps_samples(s, t).mean())]
    if windows.distance == "haversine":
        dist = haversine_m(futures[..., 0], futures[..., 1], truth[None, ..., 0], truth[None, ..., 1])
    else:
        dist = np.linalg.norm(futures - truth[None], axis=-1)  # [S, N, H]
    return [float(dist.mean(-1).min(0).mean()), float(dist[..., -1].min(0).mean())]


def etth1_standardization(train: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the training months per column (the protocol's standardization)."""
    values = train.drop(columns=["date"]).to_numpy(dtype=np.float64)
    return values.mean(0), values.std(0)


def train_model(domain: str, data: Any, out: Path, network: dict[str, Any], *, minutes: float, steps: int,
                seed: int = 0, **options: Any) -> dict[str, Any]:
    """`api.train` with the domain's defaults and ``network``; what it did as a dict."""
    summary = api.train(domain, data, out, network=network, minutes=minutes, steps=steps, seed=seed, progress=False,
                        overwrite=True, **options)
    return {"model": str(out), "domain": domain, "network": network, "steps": summary.steps,
            "seconds": round(summary.seconds, 1), "final_loss": summary.final_loss, "windows": summary.windows}
