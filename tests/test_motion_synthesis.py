"""Trained motion models: forecasting beats zero velocity, guides make samples physical, label conditioning with
classifier-free guidance, endless streaming far past the training window, and the CLI's forecast and sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from trajdiff import api
from trajdiff.cli import app
from trajdiff.core.model import DiffusionModel
from trajdiff.plugins.motion import metrics
from trajdiff.plugins.motion.bvh import read_bvh
from trajdiff.plugins.motion.encoder import MotionEncoder
from trajdiff.plugins.motion.features import encode_positions
from trajdiff.plugins.motion.loader import load_motion
from trajdiff.plugins.motion.synthesis import sample_forecasts, synthesize, train_motion

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MB2 = SHARED_DATA / "cmu_mocap" / "mb2"
pytestmark = pytest.mark.skipif(not MB2.is_dir(), reason=f"shared data folder {MB2} is absent")
TINY = {"kind": "transformer", "width": 48, "depth": 2, "heads": 4}
HISTORY, HORIZON = 10, 20


def _root_speed(motions: np.ndarray, fps: float) -> float:
    root = motions.reshape(*motions.shape[:-1], -1, 3)[..., 0, :][..., [0, 2]]
    return float(np.linalg.norm(np.diff(root, axis=-2), axis=-1).mean() * fps)


@pytest.fixture(scope="module")
def walks():
    clips = [MB2 / "07" / f"07_{n:02d}.bvh" for n in (3, 4, 5, 6, 7, 8)] + [MB2 / "08" / "08_01.bvh"]
    return load_motion(clips)


@pytest.fixture(scope="module")
def forecaster(walks, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("motion") / "forecast"
    train_motion(walks.select(range(6)), out, mode="forecast", history=HISTORY, horizon=HORIZON, patch=2, steps=300,
                 batch_size=32, lr=2e-3, stride=2, network=TINY)
    return out


@pytest.fixture(scope="module")
def streamer(walks, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    standing = load_motion([MB2 / "02" / "02_05.bvh", MB2 / "02" / "02_10.bvh"])
    data = type(walks)(walks.sequences[:6] + standing.sequences, walks.columns, walks.ids[:6] + standing.ids,
                       walks.meta[:6] + standing.meta)
    assert {m["category"] for m in data.meta} == {"walk", "other"}
    out = tmp_path_factory.mktemp("motion") / "stream"
    train_motion(data, out, mode="stream", history=8, horizon=8, patch=2, steps=400, batch_size=32, lr=2e-3,
                 stride=2, network=TINY, cond_dropout=0.2)
    return out


def test_trained_forecaster_beats_zero_velocity_on_a_held_out_clip(walks, forecaster) -> None:
    model = DiffusionModel.load(forecaster)
    encoder = MotionEncoder.from_state(model.extra["encoder"])
    clip = walks.sequences[6]  # 08_01, not seen in training
    windows = np.stack([clip[s:s + HISTORY + HORIZON] for s in range(0, len(clip) - HISTORY - HORIZON, 10)])
    encoded = [encoder.encode(w, HISTORY) for w in windows]
    drawn = sample_forecasts(model, encoder, np.stack([e[0] for e in encoded]), HISTORY // 2, samples=4, nfe=10)
    futures = np.stack([encoder.decode(drawn[:, j], e[1])[:, HISTORY:] for j, e in enumerate(encoded)], axis=1)
    truth = windows[:, HISTORY:]
    zero = np.repeat(windows[:, HISTORY - 1:HISTORY], HORIZON, axis=1)[None]
    assert metrics.ade(futures, truth, best=False) < 0.7 * metrics.ade(zero, truth)
    assert metrics.apd(futures) > 0.0


def test_guides_make_forecasts_physical(walks, forecaster) -> None:
    model = DiffusionModel.load(forecaster)
    encoder = MotionEncoder.from_state(model.extra["encoder"])
    window = walks.sequences[6][:HISTORY + HORIZON]
    tokens, frame = encoder.encode(window, HISTORY)
    plain = encoder.decode(sample_forecasts(model, encoder, tokens[None], HISTORY // 2, samples=6, nfe=10)[:, 0], frame)
    guided = encoder.decode(sample_forecasts(model, encoder, tokens[None], HISTORY // 2, samples=6, nfe=10,
                                             constraints=("bone_lengths", "ground", "foot_lock"))[:, 0], frame)
    assert metrics.bone_length_error(encoder.layout, plain) > 0.005
    assert metrics.bone_length_error(encoder.layout, guided) < 1e-3  # under 1 mm
    assert metrics.ground_penetration(guided[:, HISTORY:]) < 1e-6  # the observed history may touch below y = 0
    np.testing.assert_allclose(guided[:, :HISTORY], np.repeat(window[None, :HISTORY], 6, 0), atol=1e-4)


def test_label_and_guidance_steer_the_stream(streamer) -> None:
    model = DiffusionModel.load(streamer)
    encoder = MotionEncoder.from_state(model.extra["encoder"])
    seed = np.asarray(model.extra["motion"]["seeds"]["other"], dtype=np.float32)  # standing still
    speeds = {label: _root_speed(synthesize(model, encoder, seconds=4, label=label, samples=4, guidance=2.0,
                                            context=seed, constraints=(), seed=1)[:, 8:], encoder.fps)
              for label in ("walk", "other")}
    assert speeds["walk"] > 0.6 and speeds["other"] < 0.6 * speeds["walk"]


def test_stream_runs_far_past_the_training_window_without_freezing_or_drifting(streamer) -> None:
    model = DiffusionModel.load(streamer)
    encoder = MotionEncoder.from_state(model.extra["encoder"])
    seconds = 16.0  # 30x the 16-frame training window
    motions = synthesize(model, encoder, seconds=seconds, label="walk", samples=2, guidance=1.5, seed=2)
    assert motions.shape == (2, int(seconds * encoder.fps), 93) and np.isfinite(motions).all()
    joints = motions.reshape(2, -1, 31, 3)
    for block in np.split(joints[:, 60:], 4, axis=1):  # four 3.5-s blocks after the seed and warm-up
        head = block[..., 16, 1].mean()
        assert 1.2 < head < 1.8  # upright: no collapse, no drift upwards
        assert 0.3 < _root_speed(block.reshape(2, len(block[0]), -1), encoder.fps) < 3.0  # still walking
        assert metrics.bone_length_error(encoder.layout, block) < 1e-3
        assert metrics.ground_penetration(block) < 1e-6


def test_cli_sample_and_forecast_write_motion_files(walks, forecaster, streamer, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["sample", "--model", str(streamer), "--domain", "motion", "--seconds", "2",
                                 "--label", "walk", "--out", str(tmp_path / "walk.bvh")])
    assert result.exit_code == 0, result.output
    clip = read_bvh(tmp_path / "walk.bvh")
    assert clip.frames == 60 and clip.skeleton.joints == 31
    result = runner.invoke(app, ["sample", "--model", str(streamer), "--seconds", "1", "--samples", "2", "--out",
                                 str(tmp_path / "walk.csv"), "--data", str(MB2 / "07" / "07_03.bvh")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "walk.csv")
    assert len(table) == 60 and list(table.columns[:3]) == ["sample", "time", "Hips_x"]
    # the first 8 frames are the clip's first 8, moved on the ground (the features ignore where and which way)
    layout = MotionEncoder.from_state(DiffusionModel.load(streamer).extra["encoder"]).layout
    seed = load_motion(MB2 / "07" / "07_03.bvh").sequences[0][:8].reshape(8, 31, 3)
    first = table[table["sample"] == 1].to_numpy()[:8, 2:].reshape(8, 31, 3)
    np.testing.assert_allclose(encode_positions(layout, first)[0], encode_positions(layout, seed)[0], atol=1e-3)
    result = runner.invoke(app, ["sample", "--model", str(streamer), "--seconds", "1", "--out",
                                 str(tmp_path / "walk.csv"), "--label", "fly"])
    assert result.exit_code == 2 and "unknown label 'fly'" in result.output
    loaded = api.load_model(forecaster, domain="motion")
    assert loaded.encoder.dim == 128 and loaded.defaults.history == HISTORY
    result = runner.invoke(app, ["forecast", "--model", str(forecaster), "--data", str(MB2 / "08" / "08_01.bvh"),
                                 "--out", str(tmp_path / "f.bvh"), "--samples", "2", "--nfe", "4",
                                 "--plot", str(tmp_path / "f.png")])
    assert result.exit_code == 0, result.output
    assert read_bvh(tmp_path / "f.bvh").frames == HISTORY + HORIZON and (tmp_path / "f_s1.bvh").is_file()
    assert (tmp_path / "f.png").stat().st_size > 0


def test_cli_trains_the_stream_recipe_for_sample(tmp_path: Path) -> None:
    runner = CliRunner()
    clips = str(MB2 / "07" / "07_03.bvh")
    result = runner.invoke(app, ["train", "--domain", "motion", "--recipe", "stream", "--data", clips,
                                 "--out", str(tmp_path / "stream"), "--steps", "3"])
    assert result.exit_code == 0, result.output
    assert "for 3 steps" in result.output
    extra = DiffusionModel.load(tmp_path / "stream").extra["motion"]
    assert extra["mode"] == "stream" and "walk" in extra["categories"]
    result = runner.invoke(app, ["sample", "--model", str(tmp_path / "stream"), "--seconds", "2", "--label", "walk",
                                 "--out", str(tmp_path / "s.bvh")])
    assert result.exit_code == 0, result.output
    assert read_bvh(tmp_path / "s.bvh").frames == 60  # the 1 s seed and 1 s generated
    result = runner.invoke(app, ["train", "--domain", "motion", "--recipe", "dance", "--data", clips,
                                 "--out", str(tmp_path / "x"), "--steps", "1"])
    assert result.exit_code == 2 and "no training recipe 'dance'" in result.output and "stream (" in result.output
    result = runner.invoke(app, ["train", "--domain", "motion", "--recipe", "stream", "--data", clips,
                                 "--out", str(tmp_path / "x"), "--steps", "1", "--history", "4"])
    assert result.exit_code == 2 and "sets its own history" in result.output
    result = runner.invoke(app, ["train", "--domain", "rl", "--recipe", "stream", "--data", clips,
                                 "--out", str(tmp_path / "x"), "--steps", "1"])
    assert result.exit_code == 2 and "domain 'rl' has no training recipe 'stream'; its recipes: none" in result.output
