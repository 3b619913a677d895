"""The full ETH/UCY protocol's pieces (benchmarks/_eth_ucy_full.py, _eth_ucy_scale.py): Social-GAN's window count
on a hand-counted file and on the real eth test file against the benchmark's own windows, LED's rows, and the speed
normalisation and sample spread."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _eth_ucy_full import LED, led_rows, social_gan_windows  # noqa: E402
from _eth_ucy_scale import file_factors, length_columns, rescale, spread  # noqa: E402

from trajdiff.core.data import Episodes  # noqa: E402

ETH_TEST = ROOT.parent / "shared" / "data" / "eth_ucy" / "eth" / "test"


def write_tracks(path: Path, tracks: dict[int, range]) -> None:
    rows = [(frame * 10, agent, 0.1 * frame + agent, 0.0) for agent, frames in tracks.items() for frame in frames]
    path.write_text("".join(f"{f:.1f}\t{a:.1f}\t{x:.2f}\t{y:.2f}\n" for f, a, x, y in sorted(rows)))


def test_social_gan_count_by_hand(tmp_path: Path) -> None:
    # frames 0..24: agents 1 and 2 span 0..24 (6 windows of 20 frames each), agent 3 spans 3..22 (one window:
    # start 3), agent 4 spans 0..10 (none). Windows 0..5 with >= 2 complete agents: each has agents 1, 2; start
    # 3 also agent 3 -> 6 * 2 + 1 = 13.
    write_tracks(tmp_path / "a.txt", {1: range(25), 2: range(25), 3: range(3, 23), 4: range(11)})
    assert social_gan_windows(tmp_path) == 13
    # a lone complete agent makes no window (min_ped): only agent 1 left -> 0
    write_tracks(tmp_path / "a.txt", {1: range(25), 4: range(11)})
    assert social_gan_windows(tmp_path) == 0


@pytest.mark.skipif(not ETH_TEST.is_dir(), reason="ETH/UCY data not in ../shared/data/eth_ucy")
def test_benchmark_windows_equal_social_gan_count_on_eth() -> None:
    from eth_ucy import test_windows

    from trajdiff.plugins.traffic import TrafficDomain

    domain = TrafficDomain()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        encoder = domain.make_encoder().fit(domain.load(ETH_TEST))
    loaded = SimpleNamespace(domain=domain, encoder=encoder)
    windows = test_windows(ETH_TEST, loaded)  # type: ignore[arg-type]
    assert len(windows.groups) == social_gan_windows(ETH_TEST) == 181
    scaled = test_windows(ETH_TEST, loaded, speed_ref=0.4)  # type: ignore[arg-type]
    assert np.allclose(scaled.factor, scaled.factor[0]) and 0.7 < scaled.factor[0] < 0.85  # histories: 0.52 m a step
    assert np.allclose(scaled.truth, windows.truth)  # truths stay in metres


def test_led_rows_average_the_published_scenes() -> None:
    rows = led_rows(list(LED))
    average = rows[-1]
    assert average["scene"] == "average" and (average["ade"], average["fde"]) == (0.214, 0.332)
    assert len(led_rows(["eth"])) == 1  # no average for a subset


def test_rescale_multiplies_lengths_not_flags() -> None:
    columns = ["x", "y", "n1_dx", "n1_dy", "n1_dvx", "n1_dvy", "n1_on"]
    assert length_columns(columns).tolist() == [True] * 6 + [False]
    seq = np.tile(np.arange(7.0), (3, 1))
    seq[:, 0] = [0.0, 1.0, 2.0]  # one unit per step along x
    episodes = Episodes([seq, 2 * seq], columns, meta=[{"scene": "a"}, {"scene": "b"}])
    factors = file_factors(episodes, 0.5)
    assert factors == pytest.approx({"a": 0.5, "b": 0.25})
    out = rescale(episodes, factors)
    assert np.allclose(out.sequences[0][:, :6], 0.5 * seq[:, :6]) and np.allclose(out.sequences[0][:, 6], 6.0)
    assert np.allclose(out.sequences[1][:, :6], 0.5 * seq[:, :6])  # both files now step 0.5
    assert file_factors(episodes, 1.0, {"a": [seq[:2]]}) == {"a": 1.0}  # from the given pieces only


def test_spread_keeps_the_mean_and_scales_deviations() -> None:
    pred = np.random.default_rng(0).normal(size=(4, 20, 12, 2))
    wide = spread(pred, 1.5)
    assert np.allclose(wide.mean(1), pred.mean(1))
    assert np.allclose(wide - wide.mean(1, keepdims=True), 1.5 * (pred - pred.mean(1, keepdims=True)))


def test_learned_set_covers_both_modes() -> None:
    """Futures that go +1 or -1 from the same history: a set of 2 trained on the best of the 2 puts one future on
    each (the mean of the two, what a single regression learns, is 1 away from both)."""
    import torch
    from _eth_ucy_init import train_set

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    x = np.zeros((512, 6, 3), dtype=np.float32)
    x[:, :2] = rng.normal(scale=0.01, size=(512, 2, 3))
    x[:, 2:, :2] = np.where(rng.random(512) < 0.5, 1.0, -1.0)[:, None, None]
    net, info = train_set(x, 2, k=2, steps=300, width=32, depth=2, batch_size=64, lr=3e-3)
    with torch.no_grad():
        pred = net(torch.from_numpy(x[:8, :2])).numpy()  # [8, 2, 4, 2]
    assert info["set_steps"] == 300
    ends = np.sort(pred[:, :, -1, 0], axis=1)
    assert np.allclose(ends[:, 0], -1.0, atol=0.2) and np.allclose(ends[:, 1], 1.0, atol=0.2)
