"""Motion prediction as a residual over a body-centred constant velocity, mirrored training windows, chunked
endless streams from a prediction model, and MP4 output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from trajdiff import api
from trajdiff.core.model import DiffusionModel
from trajdiff.errors import ConfigError
from trajdiff.plugins.motion.chunked import synthesize_chunked
from trajdiff.plugins.motion.domain import MotionDomain
from trajdiff.plugins.motion.encoder import MotionEncoder
from trajdiff.plugins.motion.export import write_motion
from trajdiff.plugins.motion.loader import load_motion
from trajdiff.plugins.motion.residual import mirror_features, reference

MB2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "cmu_mocap" / "mb2"
pytestmark = pytest.mark.skipif(not MB2.is_dir(), reason=f"shared data folder {MB2} is absent")
HISTORY, HORIZON = 10, 20


@pytest.fixture(scope="module")
def walks():
    return load_motion([MB2 / "07" / f"07_{n:02d}.bvh" for n in (3, 4, 5)])


@pytest.fixture(scope="module")
def encoder(walks) -> MotionEncoder:
    return MotionEncoder(patch=2, history=HISTORY, horizon=HORIZON, residual=True, mirror=True).fit(walks)


def _mirrored_positions(encoder: MotionEncoder, window: np.ndarray) -> np.ndarray:
    assert encoder.layout is not None
    swap = list(range(encoder.layout.skeleton.joints))
    for left, right in encoder.layout.pairs:
        swap[left], swap[right] = right, left
    joints = window.reshape(len(window), -1, 3)[:, swap].copy()
    joints[..., 0] *= -1
    return joints.reshape(len(window), -1)


def test_residual_tokens_decode_back_and_are_zero_for_the_constant_velocity_guess(walks, encoder) -> None:
    window = walks.sequences[0][40:40 + HISTORY + HORIZON]
    tokens, frame = encoder.encode(window, HISTORY)
    np.testing.assert_allclose(encoder.decode(tokens, frame), window, atol=1e-5)
    features = encoder.from_tokens(torch.from_numpy(tokens).double())
    features[HISTORY:] = reference(features[:HISTORY])  # the future the guess makes: the residual is 0
    again = encoder.tokens_from_features(features).numpy()
    future = again[HISTORY // 2:].reshape(-1, len(encoder.res_mean))
    np.testing.assert_allclose(future, np.broadcast_to(-encoder.res_mean / encoder.res_std, future.shape), atol=1e-9)
    np.testing.assert_allclose(again[:HISTORY // 2], tokens[:HISTORY // 2], atol=1e-6)  # the history as it was
    restored = MotionEncoder.from_state(encoder.state_dict())
    np.testing.assert_allclose(restored.encode(window, HISTORY)[0], tokens)


def test_ridge_base_decodes_back_and_forecasts_training_windows_better_than_the_mean_residual(walks) -> None:
    plain = MotionEncoder(patch=2, history=HISTORY, horizon=HORIZON, residual=True).fit(walks)
    ridge = MotionEncoder(patch=2, history=HISTORY, horizon=HORIZON, residual=True, ridge=True).fit(walks)
    assert ridge.ridge_weights is not None and ridge.ridge_weights.shape == (len(ridge.mean), HISTORY + 1, HORIZON)
    errors = {"plain": [], "ridge": []}
    for s in range(0, len(walks.sequences[0]) - HISTORY - HORIZON, 7):
        window = walks.sequences[0][s:s + HISTORY + HORIZON]
        for name, enc in (("plain", plain), ("ridge", ridge)):
            tokens, frame = enc.encode(window, HISTORY)
            np.testing.assert_allclose(enc.decode(tokens, frame), window, atol=1e-5)
            tokens[HISTORY // 2:] = 0.0  # what the encoder forecasts when the model adds nothing
            errors[name].append(np.abs(enc.decode(tokens, frame)[HISTORY:] - window[HISTORY:]).mean())
    assert np.mean(errors["ridge"]) < np.mean(errors["plain"])
    restored = MotionEncoder.from_state(ridge.state_dict())
    np.testing.assert_array_equal(restored.encode(window, HISTORY)[0], ridge.encode(window, HISTORY)[0])
    with pytest.raises(ConfigError, match="set residual too"):
        MotionEncoder(history=10, ridge=True)


def test_mirrored_windows_are_the_windows_of_the_mirrored_motion(walks, encoder) -> None:
    windows = np.stack([encoder.encode(walks.sequences[0][s:s + HISTORY + HORIZON], HISTORY)[0] for s in (0, 50)])
    grown = MotionDomain().augment_windows(windows, encoder)
    assert grown.shape == (4, *windows.shape[1:]) and np.array_equal(grown[:2], windows)
    for n, s in enumerate((0, 50)):
        mirrored = _mirrored_positions(encoder, walks.sequences[0][s:s + HISTORY + HORIZON])
        expected = encoder.from_tokens(torch.from_numpy(encoder.encode(mirrored, HISTORY)[0]).double())
        got = encoder.from_tokens(torch.from_numpy(grown[2 + n]).double())
        np.testing.assert_allclose(got[1:].numpy(), expected[1:].numpy(), atol=1e-4)  # frame 0 copies frame 1
    twice = mirror_features(encoder._layout(), mirror_features(encoder._layout(), expected))
    assert torch.equal(twice, expected)
    plain = MotionEncoder(patch=2, history=HISTORY, horizon=HORIZON).fit(walks)
    assert MotionDomain().augment_windows(windows, plain) is windows


def test_encoder_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="residual must be true or false"):
        MotionEncoder(history=10, residual="yes")
    with pytest.raises(ConfigError, match="history of >= 2 frames"):
        MotionEncoder(history=0, residual=True)


@pytest.fixture(scope="module")
def mlp_model(walks, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("motion") / "mlp"
    api.train("motion", walks, out, recipe="forecast-mlp", history=HISTORY, horizon=HORIZON, steps=60,
              batch_size=32, stride=3, network={"kind": "window_mlp", "dim": None, "length": None, "width": 64,
                                                "depth": 1}, progress=False)
    return out


def test_chunked_stream_continues_the_seed_and_keeps_moving(walks, mlp_model: Path) -> None:
    model = DiffusionModel.load(mlp_model)
    enc = MotionEncoder.from_state(model.extra["encoder"])
    seed = walks.sequences[1][:HISTORY]
    context = np.repeat(enc.to_tokens(enc.features(seed))[None], 2, axis=0)
    motions = synthesize_chunked(model, enc, context, seconds=3.0, label="walk", keep=10, nfe=4,
                                 constraints=("bone_lengths",), seed=1)
    assert motions.shape == (2, 90, seed.shape[1]) and np.isfinite(motions).all()
    start = seed.reshape(HISTORY, -1, 3) - seed.reshape(HISTORY, -1, 3)[:1, :1] * np.array([1.0, 0.0, 1.0])
    shifted = motions[0, :HISTORY].reshape(HISTORY, -1, 3)
    # the seed comes first (turned to face +Z at the origin): the same pose heights, no step at the seam
    np.testing.assert_allclose(shifted[..., 1], start[..., 1], atol=1e-4)
    step = np.linalg.norm(np.diff(motions.reshape(2, 90, -1, 3), axis=1), axis=-1).mean(axis=-1)
    assert step[:, HISTORY - 1].max() < 5 * np.median(step[:, :HISTORY - 1]) + 0.01
    assert step[:, HISTORY:].mean() > 0.001  # not frozen
    with pytest.raises(ConfigError, match="keep must be a multiple"):
        synthesize_chunked(model, enc, context, seconds=2.0, keep=3)


def test_write_motion_writes_an_mp4_video(walks, tmp_path: Path) -> None:
    pytest.importorskip("imageio_ffmpeg", reason="MP4 output needs imageio-ffmpeg")
    import imageio.v2 as imageio

    skeleton = walks.meta[0]["skeleton"]
    motion = walks.sequences[0][:24]
    path = write_motion(tmp_path / "m.mp4", skeleton, [motion, walks.sequences[1][:20]], 30.0, labels=["a", "b"])
    assert path == tmp_path / "m.mp4" and path.read_bytes()[4:8] == b"ftyp"  # an MP4 container
    reader = imageio.get_reader(path, format="FFMPEG")
    frames = [frame for frame in reader]
    reader.close()
    assert len(frames) == 24 and frames[0].shape[0] % 2 == 0 and frames[0].shape[1] % 2 == 0
    assert float(np.abs(frames[3].astype(float) - frames[20].astype(float)).mean()) > 0.1  # it moves
    with pytest.raises(ConfigError, match=r"\.mp4"):
        write_motion(tmp_path / "m.avi", skeleton, [motion], 30.0)


def test_sample_command_streams_a_prediction_model(mlp_model: Path, tmp_path: Path) -> None:
    """`trajdiff sample` on a forecast-mlp model goes chunk by chunk from the model's stored seed for the label."""
    from typer.testing import CliRunner

    from trajdiff.cli import app

    out = tmp_path / "s.csv"
    result = CliRunner().invoke(app, ["sample", "--model", str(mlp_model), "--seconds", "2", "--label", "walk",
                                      "--samples", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert sorted(table["sample"].unique()) == [0, 1] and len(table) == 2 * 60
    assert np.isfinite(table.drop(columns=["sample", "time"]).to_numpy()).all()
