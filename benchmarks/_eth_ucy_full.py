"""The full ETH/UCY protocol of `eth_ucy.py --full`: every Social-GAN window of every test scene, checked against
Social-GAN's own counting, with LED's published per-scene figures beside trajdiff's rows.

Why a second count: the benchmark builds its windows from the traffic loader's tracks (split at gaps, duplicates
dropped); `social_gan_windows` counts them the way Social-GAN's data loader does, straight from the text files
(consecutive distinct frames of a file, an agent counted when its rows span all 20 of them, windows with more than
one such agent), so a loader that dropped or added windows shows up as a difference per scene.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trajdiff.core.data import Episodes

LED = {  # minADE20 / minFDE20 (m) per scene, Mao et al., "Leapfrog Diffusion Model", CVPR 2023, table 1
    "eth": (0.39, 0.58), "hotel": (0.11, 0.17), "univ": (0.26, 0.43), "zara1": (0.18, 0.26), "zara2": (0.13, 0.22),
}
PROTOCOL_WINDOWS = 33654  # agent windows of the five test scenes under the Social-GAN windowing
ROW_KEYS = ("scene", "method", "samples", "windows", "ade", "fde", "train_cpu_minutes", "sample_seconds")


def social_gan_groups(episodes: Episodes, length: int, min_agents: int = 2, max_groups: int = 0
                      ) -> tuple[list[tuple[str, float]], dict[tuple[str, float], list[tuple[int, int]]]]:
    """The Social-GAN windows of loaded tracks: (scene, start time) keys of the windows where at least ``min_agents``
    agents are present in all ``length`` frames (``max_groups`` evenly spaced ones when given; 0: all), in order,
    and each key's (episode, start row) pairs."""
    by_group: dict[tuple[str, float], list[tuple[int, int]]] = {}
    for i, seq in enumerate(episodes.sequences):
        times = episodes.meta[i]["times"]
        for s in range(len(seq) - length + 1):
            by_group.setdefault((episodes.meta[i]["scene"], float(times[s])), []).append((i, s))
    keys = [k for k in sorted(by_group) if len(by_group[k]) >= min_agents]
    if max_groups and len(keys) > max_groups:
        keys = [keys[j] for j in np.linspace(0, len(keys) - 1, max_groups).round().astype(int)]
    return keys, by_group


def social_gan_windows(folder: Path, length: int = 20, min_agents: int = 2) -> int:
    """Agent windows of the ``*.txt`` files in ``folder`` counted as Social-GAN's loader counts them."""
    total = 0
    for path in sorted(folder.glob("*.txt")):
        data = np.loadtxt(path, ndmin=2)
        frames = np.unique(data[:, 0])
        index = np.searchsorted(frames, data[:, 0])  # each row's position among the distinct frames
        for start in range(len(frames) - length + 1):
            rows = (index >= start) & (index < start + length)
            agents, first = np.unique(data[rows, 1], return_index=True)
            last = len(data[rows]) - 1 - np.unique(data[rows, 1][::-1], return_index=True)[1]
            spans = index[rows][last] - index[rows][first] + 1
            complete = int((spans == length).sum())
            total += complete if complete >= min_agents else 0
    return total


def led_rows(scenes: list[str]) -> list[dict]:
    """LED's published per-scene rows and their average (over ``scenes`` when all five are run)."""
    rows = [{"scene": s, "method": "LED (published)", "samples": 20, "ade": LED[s][0], "fde": LED[s][1],
             "published": True} for s in scenes]
    if set(scenes) == set(LED):
        rows.append({"scene": "average", "method": "LED (published)", "samples": 20,
                     "ade": round(float(np.mean([v[0] for v in LED.values()])), 3),
                     "fde": round(float(np.mean([v[1] for v in LED.values()])), 3), "published": True})
    return rows


def window_check(scenes: list[str], data: Path, counted: dict[str, int]) -> dict:
    """Windows the benchmark evaluated per scene beside Social-GAN's count of the same files."""
    expected = {s: social_gan_windows(data / s / "test") for s in scenes}
    return {"evaluated": counted, "social_gan": expected, "total_evaluated": sum(counted.values()),
            "total_social_gan": sum(expected.values()), "protocol_total": PROTOCOL_WINDOWS,
            "excluded": {s: expected[s] - counted.get(s, 0) for s in scenes if expected[s] != counted.get(s, 0)}}
