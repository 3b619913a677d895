"""Trained motion models: forecasting beats zero velocity, guides make samples physical, label conditioning with
classifier-free guidance, endless streaming far past the training window, and the CLI's forecast and sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from trajdiff import api
from trajdiff.cli import app
from trajdiff.core.model import DiffusionModel
from trajdiff.errors import ConfigError
from trajdiff.plugins.manager import get_plugins
from trajdiff.plugins.motion import metrics
from trajdiff.plugins.motion.bvh import read_bvh
from trajdiff.plugins.motion.encoder import MotionEncoder
from trajdiff.plugins.motion.features import encode_positions
from trajdiff.plugins.motion.loader import CATEGORIES, load_motion
from trajdiff.plugins.motion.synthesis import sample_forecasts, synthesize

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
    api.train("motion", walks.select(range(6)), out, recipe="forecast", history=HISTORY, horizon=HORIZON, steps=300,
              batch_size=32, lr=2e-3, stride=2, network=TINY, progress=False)
    return out


@pytest.fixture(scope="module")
def streamer(walks, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    standing = load_motion([MB2 / "02" / "02_05.bvh", MB2 / "02" / "02_10.bvh"])
    data = type(walks)(walks.sequences[:6] + standing.sequences, walks.columns, walks.ids[:6] + standing.ids,
                       walks.meta[:6] + standing.meta)
    assert {m["category"] for m in data.meta} == {"walk", "other"}
    out = tmp_path_factory.mktemp("motion") / "stream"
    api.train("motion", data, out, recipe="stream", history=8, horizon=8, steps=400, batch_size=32, lr=2e-3,
              stride=2, network=TINY, progress=False)
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
    seed = np.asarray(model.extra["recipe"]["stored"]["seeds"]["other"], dtype=np.float32)  # standing still
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
    result = runner.invoke(app, ["sample", "--model", str(streamer), "--seconds", "1", "--out",
                                 str(tmp_path / "slow.csv"), "--plan-option", "substeps=3"])
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "slow.csv")) == 30
    for args, message in ((["--plan", "pyramid"], "only the rolling plan"),
                          (["--plan-option", "window=3"], "takes the option substeps"),
                          (["--plan-option", "substeps=0"], "substeps must be a whole number >= 1")):
        result = runner.invoke(app, ["sample", "--model", str(streamer), "--seconds", "1", "--out",
                                     str(tmp_path / "x.csv"), *args])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    loaded = api.load_model(forecaster, domain="motion")
    assert loaded.encoder.dim == 128 and loaded.defaults.history == HISTORY
    result = runner.invoke(app, ["forecast", "--model", str(forecaster), "--data", str(MB2 / "08" / "08_01.bvh"),
                                 "--out", str(tmp_path / "f.bvh"), "--samples", "2", "--nfe", "4",
                                 "--plot", str(tmp_path / "f.png")])
    assert result.exit_code == 0, result.output
    assert read_bvh(tmp_path / "f.bvh").frames == HISTORY + HORIZON and (tmp_path / "f_s1.bvh").is_file()
    assert (tmp_path / "f.png").stat().st_size > 0


def test_recipes_are_configurations_that_api_train_runs(forecaster, streamer, tmp_path: Path) -> None:
    """Both recipes go through the one training path and give its general options: a label (one-hot over the
    categories, dropped for classifier-free guidance), shared or rolling noise, and what the recipe stores."""
    stream = json.loads((streamer / "config.json").read_text())
    defaults = stream["extra"]["defaults"]
    assert defaults["label"] == "category" and defaults["labels"] == list(CATEGORIES)
    assert defaults["noise"] == "rolling" and defaults["history"] == 8 and defaults["network"]["cond_dim"] == 6
    training = stream["training"]
    assert (training["noise"], training["window"], training["history"], training["cond_dropout"]) == \
        ("rolling", 4, 4, 0.1)
    recipe = stream["extra"]["recipe"]
    assert recipe["name"] == "stream" and set(recipe["stored"]["seeds"]) == {"walk", "other"}
    dim = MotionEncoder.from_state(stream["extra"]["encoder"]).dim
    assert np.asarray(recipe["stored"]["seeds"]["walk"]).shape == (4, dim)  # the history tokens of one window
    forecast = json.loads((forecaster / "config.json").read_text())
    assert forecast["extra"]["recipe"] == {"name": "forecast", "stored": {}}
    assert (forecast["training"]["noise"], forecast["training"]["history"], forecast["training"]["history_prob"]) \
        == ("shared", HISTORY // 2, 0.9)
    with pytest.raises(ConfigError, match=r"no training recipe 'dance'; its recipes: forecast \(.*stream \("):
        api.train("motion", MB2 / "07" / "07_03.bvh", tmp_path / "x", recipe="dance")


def test_two_loaded_models_each_keep_their_own_encoder(tmp_path: Path) -> None:
    """Loading a second motion model leaves the first one's domain (writers, time stamps, loader) on its own
    encoder; the registry's shared instance holds none."""
    options = {"steps": 1, "history": 4, "horizon": 4, "network": TINY, "progress": False}
    api.train("motion", MB2 / "07" / "07_01.bvh", tmp_path / "a", **options)
    api.train("motion", MB2 / "02" / "02_05.bvh", tmp_path / "b", load_options={"fps": 15}, **options)
    a, b = api.load_model(tmp_path / "a"), api.load_model(tmp_path / "b")
    assert (a.encoder.fps, b.encoder.fps) == (30.0, 15.0) and not np.allclose(a.encoder.mean, b.encoder.mean)
    assert a.domain.encoder() is a.encoder and b.domain.encoder() is b.encoder
    clip = MB2 / "07" / "07_03.bvh"
    for loaded, fps in ((a, 30.0), (b, 15.0)):
        np.testing.assert_allclose(np.diff(loaded.domain.future_times(np.array([0.0]), 3)), 1 / fps)
        episodes = loaded.domain.load(clip)  # read at the model's own frame rate
        assert episodes.meta[0]["fps"] == fps
        motion = episodes.sequences[0]
        written = loaded.domain.write_forecast(tmp_path / f"{fps:g}.bvh", {"c": motion[:10]},
                                               {"c": motion[None, 10:20]}, episodes.columns)
        assert read_bvh(written).fps == pytest.approx(fps, rel=1e-4)
        tokens, frame = loaded.encoder.encode(motion[:8], 4)
        np.testing.assert_allclose(loaded.encoder.decode(tokens, frame), motion[:8], atol=1e-4)
    tokens, frame = a.encoder.encode(load_motion(clip).sequences[0][:8], 4)
    assert not np.allclose(a.encoder.decode(tokens, frame), b.encoder.decode(tokens, frame), atol=1e-3)
    with pytest.raises(ConfigError, match="need a fitted encoder"):
        get_plugins().domain("motion").costs()["skating"](torch.zeros(1, 4, a.encoder.dim))


def test_cli_trains_the_stream_recipe_for_sample(tmp_path: Path) -> None:
    runner = CliRunner()
    clips = str(MB2 / "07" / "07_03.bvh")
    result = runner.invoke(app, ["train", "--domain", "motion", "--recipe", "stream", "--data", clips,
                                 "--out", str(tmp_path / "stream"), "--steps", "3"])
    assert result.exit_code == 0, result.output
    assert "for 3 steps" in result.output
    extra = DiffusionModel.load(tmp_path / "stream").extra
    assert extra["recipe"]["name"] == "stream" and "walk" in extra["defaults"]["labels"]
    result = runner.invoke(app, ["sample", "--model", str(tmp_path / "stream"), "--seconds", "2", "--label", "walk",
                                 "--out", str(tmp_path / "s.bvh")])
    assert result.exit_code == 0, result.output
    assert read_bvh(tmp_path / "s.bvh").frames == 60  # the 1 s seed and 1 s generated
    result = runner.invoke(app, ["train", "--domain", "motion", "--recipe", "dance", "--data", clips,
                                 "--out", str(tmp_path / "x"), "--steps", "1"])
    assert result.exit_code == 2 and "no training recipe 'dance'" in result.output and "stream (" in result.output
    result = runner.invoke(app, ["train", "--domain", "motion", "--recipe", "stream", "--data", clips,
                                 "--out", str(tmp_path / "x"), "--steps", "1", "--history", "4"])
    assert result.exit_code == 0, result.output  # the caller's settings override the recipe's
    defaults = DiffusionModel.load(tmp_path / "x").extra["defaults"]
    assert defaults["history"] == 4 and defaults["horizon"] == 30 and defaults["noise"] == "rolling"
    result = runner.invoke(app, ["train", "--domain", "rl", "--recipe", "stream", "--data", clips,
                                 "--out", str(tmp_path / "y"), "--steps", "1"])
    assert result.exit_code == 2 and "domain 'rl' has no training recipe 'stream'; its recipes: window-mlp (" in \
        result.output
    result = runner.invoke(app, ["plugins"])
    assert "--recipe stream: label-conditioned endless synthesis" in result.output, result.output
