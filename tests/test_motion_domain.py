"""The motion domain: the representation's round trip, guides (exact projections, costs that point the right
way), metrics, outputs, and the plugin hooks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from trajdiff.errors import ConfigError
from trajdiff.plugins import motion as plugin
from trajdiff.plugins.manager import Plugins
from trajdiff.plugins.motion import guides, metrics
from trajdiff.plugins.motion.bvh import read_bvh
from trajdiff.plugins.motion.domain import MotionDomain
from trajdiff.plugins.motion.encoder import MotionEncoder
from trajdiff.plugins.motion.features import decode_world, encode_positions
from trajdiff.plugins.motion.kinematics import clip_positions
from trajdiff.plugins.motion.loader import load_motion

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MB2 = SHARED_DATA / "cmu_mocap" / "mb2"
needs_shared = pytest.mark.skipif(not MB2.is_dir(), reason=f"shared data folder {MB2} is absent")
pytestmark = needs_shared


@pytest.fixture(scope="module")
def walks():
    return load_motion([MB2 / "07" / "07_01.bvh", MB2 / "07" / "07_02.bvh", MB2 / "02" / "02_05.bvh"])


@pytest.fixture(scope="module")
def encoder(walks) -> MotionEncoder:
    return MotionEncoder(patch=2).fit(walks)


def _yaw(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return points @ rot.T


# ---------------------------------------------------------------------------------------- representation


def test_decode_of_encode_gives_back_every_joint(walks, encoder) -> None:
    window = walks.sequences[0][4:64]
    tokens, frame = encoder.encode(window, history=30)
    assert tokens.shape == (30, encoder.dim) and encoder.dim == 2 * (4 + 3 * 20)
    decoded = encoder.decode(np.stack([tokens, tokens]), frame)
    assert decoded.shape == (2, 60, 93)
    np.testing.assert_allclose(decoded[1], window, atol=1e-5)  # float32 tokens
    restored = MotionEncoder.from_state(encoder.state_dict())
    np.testing.assert_allclose(restored.decode(tokens, frame), window, atol=1e-5)


def test_features_ignore_where_the_motion_happens(walks, encoder) -> None:
    positions = walks.sequences[0][:40].reshape(40, -1, 3)
    moved = _yaw(positions, 1.1) + np.array([3.0, 0.0, -2.0])
    a, _ = encode_positions(encoder.layout, positions)
    b, heading = encode_positions(encoder.layout, moved)
    np.testing.assert_allclose(a, b, atol=1e-9)
    # and decoding from any frame's root and heading puts the motion back exactly
    world = decode_world(encoder.layout, torch.from_numpy(b), anchor=17,
                         origin=torch.tensor(moved[17, 0, [0, 2]]), heading=float(heading[17]))
    np.testing.assert_allclose(world.numpy(), moved[:, encoder.layout.kept], atol=1e-9)


def test_heading_follows_a_turn_on_the_spot(encoder) -> None:
    rest = clip_positions(read_bvh(MB2 / "07" / "07_01.bvh"), 0.0254 / 0.45)[10:11]
    centre = rest[0, 0] * np.array([1.0, 0.0, 1.0])
    turning = np.concatenate([_yaw(rest - centre, 0.05 * t) + centre for t in range(10)])
    features, _ = encode_positions(encoder.layout, turning)
    np.testing.assert_allclose(features[1:, 2], 0.05, atol=1e-9)  # heading change per frame
    np.testing.assert_allclose(features[1:, :2], 0.0, atol=1e-9)  # the root's ground point does not move


# ------------------------------------------------------------------------------------------------ guides


def _noisy(encoder, walks, scale: float = 0.3, seed: int = 0) -> tuple[torch.Tensor, dict]:
    tokens, frame = encoder.encode(walks.sequences[1][:60], 30)
    g = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(tokens).double()[None].repeat(4, 1, 1)
    return x + scale * torch.randn(x.shape, generator=g, dtype=x.dtype), frame


def test_bone_projection_makes_every_bone_exact_and_is_idempotent(walks, encoder) -> None:
    x, frame = _noisy(encoder, walks)
    before = metrics.bone_length_error(encoder.layout, encoder.decode(x.numpy(), frame))
    projected = guides.bone_projection(encoder)(x)
    after = metrics.bone_length_error(encoder.layout, encoder.decode(projected.numpy(), frame))
    assert before > 0.003 and after < 1e-9
    torch.testing.assert_close(guides.bone_projection(encoder)(projected), projected, atol=1e-9, rtol=0)
    clean = torch.from_numpy(encoder.encode(walks.sequences[1][:60], 30)[0]).double()[None]
    torch.testing.assert_close(guides.bone_projection(encoder)(clean), clean, atol=1e-5, rtol=0)  # float32 tokens


def test_ground_projection_lifts_frames_onto_the_floor(walks, encoder) -> None:
    x, frame = _noisy(encoder, walks, scale=1.0)
    assert metrics.ground_penetration(encoder.decode(x.numpy(), frame)) > 0.001
    lifted = guides.ground_projection(encoder)(x)
    decoded = encoder.decode(lifted.numpy(), frame).reshape(4, 60, -1, 3)
    assert decoded[..., 1].min() > -1e-9 and metrics.ground_penetration(decoded) < 1e-12
    # frames above the floor are untouched
    original = encoder.decode(x.numpy(), frame).reshape(4, 60, -1, 3)
    above = original[..., 1].min(axis=-1) > 0
    np.testing.assert_allclose(decoded[above], original[above], atol=1e-9)


def test_foot_lock_stops_contact_feet_from_sliding(walks, encoder) -> None:
    x, frame = _noisy(encoder, walks, scale=0.15)
    x = guides.ground_projection(encoder)(guides.bone_projection(encoder)(x))
    skate = metrics.foot_skating(encoder.layout, encoder.decode(x.numpy(), frame), encoder.foot_floor, encoder.fps)
    locked = guides.foot_lock_projection(encoder)(x)
    decoded = encoder.decode(locked.numpy(), frame)
    after = metrics.foot_skating(encoder.layout, decoded, encoder.foot_floor, encoder.fps)
    assert after < 0.8 * skate

    def planted_slide(positions: np.ndarray) -> np.ndarray:
        """Per frame pair with a foot joint in contact: the smallest slide (m/frame) among those joints."""
        feet = positions.reshape(*positions.shape[:-1], -1, 3)[..., encoder.layout.kept, :][..., encoder.layout.feet, :]
        contact = feet[..., 1] < np.asarray(encoder.foot_floor) + guides.CONTACT_MARGIN
        both = contact[:, 1:] & contact[:, :-1]
        slide = np.linalg.norm(np.diff(feet[..., [0, 2]], axis=1), axis=-1)
        return np.where(both, slide, np.inf).min(axis=-1)[both.any(axis=-1)]

    before_slide = planted_slide(encoder.decode(x.numpy(), frame))
    after_slide = planted_slide(decoded)
    assert np.median(after_slide) < 1e-6 < np.median(before_slide)  # the planted foot stays put
    assert metrics.bone_length_error(encoder.layout, decoded) < 1e-9  # only the root moved


@pytest.mark.parametrize("name", ["penetration", "skating", "bone_length", "joint_limits"])
def test_a_gradient_step_on_each_cost_lowers_it(walks, encoder, name: str) -> None:
    make = {"penetration": guides.penetration_cost, "skating": guides.skating_cost, "bone_length": guides.bone_cost,
            "joint_limits": guides.angle_cost}[name]
    cost = make(encoder)
    x, _ = _noisy(encoder, walks, scale=0.6, seed=1)
    leaf = x.clone().requires_grad_(True)
    value = cost(leaf)
    assert value.shape == (4,) and bool((value > 0).all())
    (grad,) = torch.autograd.grad(value.sum(), leaf)
    stepped = cost(x - 1e-3 * grad / grad.norm(dim=(1, 2), keepdim=True))
    assert bool((stepped < value.detach()).all())


def test_joint_limits_hold_on_training_motion(walks, encoder) -> None:
    x = torch.from_numpy(encoder.encode(walks.sequences[0][:60], 30)[0]).double()[None]
    assert float(guides.angle_cost(encoder)(x)) < 1e-4


def test_root_path_cost_pulls_the_root_towards_the_path(walks, encoder) -> None:
    x = torch.from_numpy(encoder.encode(walks.sequences[0][:60], 30)[0]).double()[None]
    path = np.array([[0.0, 0.0], [2.0, 0.0]])  # sideways (+x) from where frame 0 stands, facing +Z
    cost = guides.root_path_cost(encoder, path, anchor=0)
    x = x.clone()
    start = float(cost(x))
    for _ in range(30):
        leaf = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(cost(leaf).sum(), leaf)
        x = x - 0.05 * grad
    assert float(cost(x)) < 0.2 * start


# -------------------------------------------------------------------------------------- metrics, domain


def test_metrics_on_known_cases() -> None:
    truth = np.zeros((2, 5, 6))
    samples = np.stack([truth + 1.0, truth + np.array([3.0, 4.0, 0.0] * 2)])  # distances sqrt(3) and 5
    assert metrics.ade(samples, truth) == pytest.approx(math.sqrt(3))
    assert metrics.ade(samples, truth, best=False) == pytest.approx((math.sqrt(3) + 5) / 2)
    assert metrics.fde(samples, truth) == pytest.approx(math.sqrt(3))
    assert metrics.apd(samples) == pytest.approx(math.sqrt(4 + 9 + 1))
    assert metrics.ground_penetration(np.array([[[0.0, -0.02, 0.0], [0.0, 1.0, 0.0]]])) == pytest.approx(0.02)


def test_plugin_registers_the_domain_its_guides_and_the_card() -> None:
    registry = Plugins()
    domain = registry.domain("motion")
    assert isinstance(domain, MotionDomain) and registry.domain_plugin("motion") == "motion"
    assert set(registry.costs(domain)) >= {"penetration", "skating", "bone_length", "joint_limits"}
    assert set(domain.constraints()) == {"bone_lengths", "ground", "foot_lock"}
    assert "cmu_mocap" in registry.datasets()
    assert [d.name for d in plugin.trajdiff_domains()] == ["motion"]
    with pytest.raises(ConfigError, match="need a fitted encoder"):
        domain.costs()["skating"](torch.zeros(1, 4, 8))
    with pytest.raises(ConfigError, match="unknown motion loader option"):
        domain.load(MB2 / "07" / "07_01.bvh", frame_rate=30)


def test_write_forecast_writes_bvh_that_reads_back(walks, encoder, tmp_path: Path) -> None:
    domain = MotionDomain().with_encoder(MotionEncoder.from_state(encoder.state_dict()))
    history = walks.sequences[0][:30]
    futures = {"07_01": np.stack([walks.sequences[0][30:70], walks.sequences[0][30:70]])}
    written = domain.write_forecast(tmp_path / "f.bvh", {"07_01": history}, futures, walks.columns)
    assert written == tmp_path / "f.bvh" and (tmp_path / "f_s1.bvh").is_file()
    clip = read_bvh(written)
    assert clip.frames == 70 and clip.fps == pytest.approx(30, rel=1e-4)
    again = clip_positions(clip, encoder.unit).reshape(70, -1)
    np.testing.assert_allclose(again, walks.sequences[0][:70], atol=2e-4)  # exact up to file precision
    assert domain.plot_forecasts(tmp_path / "p.png", {"07_01": history}, futures, walks.columns).is_file()
    assert domain.write_forecast(tmp_path / "f.txt", {"07_01": history}, futures, walks.columns) is None


def test_write_forecast_writes_a_gif_with_the_motion_extra(walks, encoder, tmp_path: Path) -> None:
    pytest.importorskip("imageio", reason="needs trajdiff[motion]")
    domain = MotionDomain().with_encoder(MotionEncoder.from_state(encoder.state_dict()))
    history = walks.sequences[0][:30]
    futures = {"07_01": np.stack([walks.sequences[0][30:70], walks.sequences[0][30:70]])}
    assert domain.write_forecast(tmp_path / "f.gif", {"07_01": history}, futures, walks.columns).stat().st_size > 0
