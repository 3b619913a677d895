"""The motion domain's BVH layer: parsing, writing, forward and inverse kinematics, and every malformed-input case."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from trajdiff.errors import DataError
from trajdiff.plugins.motion.bvh import format_bvh, read_bvh
from trajdiff.plugins.motion.kinematics import (
    channels_to_local,
    clip_positions,
    euler_from_matrix,
    euler_to_matrix,
    forward_kinematics,
    inverse_kinematics,
    local_to_channels,
)
from trajdiff.plugins.motion.loader import guess_unit, load_motion

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MOCAP = SHARED_DATA / "cmu_mocap"
needs_shared = pytest.mark.skipif(not MOCAP.is_dir(), reason=f"shared data folder {MOCAP} is absent")

CHAIN = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation
  JOINT Upper
  {
    OFFSET 1 0 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    JOINT Lower
    {
      OFFSET 1 0 0
      CHANNELS 3 Zrotation Yrotation Xrotation
      End Site
      {
        OFFSET 0.5 0 0
      }
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.0333333
0 0 0 0 0 0 0 0 0 0 0 0
1 2 3 90 0 0 90 0 0 0 0 0
"""


def _write(tmp_path: Path, text: str, name: str = "clip.bvh") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------ parsing


def test_parses_hierarchy_channels_and_frame_time(tmp_path: Path) -> None:
    clip = read_bvh(_write(tmp_path, CHAIN))
    sk = clip.skeleton
    assert sk.names == ["Hips", "Upper", "Lower"] and sk.parents == [-1, 0, 1]
    assert sk.channels[1] == ("Zrotation", "Xrotation", "Yrotation") and sk.channel_count == 12
    np.testing.assert_array_equal(sk.offsets, [[0, 0, 0], [1, 0, 0], [1, 0, 0]])
    assert len(sk.end_sites) == 1 and sk.end_sites[0][0] == 2
    assert clip.frames == 2 and clip.frame_time == pytest.approx(0.0333333) and clip.values.shape == (2, 12)


def test_forward_kinematics_of_a_two_bone_chain_is_closed_form(tmp_path: Path) -> None:
    clip = read_bvh(_write(tmp_path, CHAIN))
    rotations, translations = channels_to_local(clip.skeleton, clip.values)
    positions, _ = forward_kinematics(clip.skeleton, rotations, translations)
    np.testing.assert_allclose(positions[0], [[0, 0, 0], [1, 0, 0], [2, 0, 0]], atol=1e-12)
    # Root at (1, 2, 3) turned 90 deg about Z: the upper bone points up; the elbow adds another 90 deg about Z.
    np.testing.assert_allclose(positions[1], [[1, 2, 3], [1, 3, 3], [0, 3, 3]], atol=1e-12)


def test_euler_orders_round_trip_and_compose_in_channel_order() -> None:
    rng = np.random.default_rng(0)
    angles = rng.uniform(-85, 85, size=(200, 3))
    for order in ("XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX"):
        matrix = euler_to_matrix(angles, order)
        np.testing.assert_allclose(euler_from_matrix(matrix, order), angles, atol=1e-9)
    # "ZYX" means Rz @ Ry @ Rx: rotating (1, 0, 0) by Rx(90) leaves it, Rz(90) then takes it to (0, 1, 0)
    np.testing.assert_allclose(euler_to_matrix(np.array([90.0, 0.0, 90.0]), "ZYX") @ [1, 0, 0], [0, 1, 0], atol=1e-12)


def test_write_then_read_reproduces_the_file(tmp_path: Path) -> None:
    clip = read_bvh(_write(tmp_path, CHAIN))
    again = read_bvh(_write(tmp_path, format_bvh(clip.skeleton, clip.values, clip.frame_time), "again.bvh"))
    assert clip.skeleton.difference(again.skeleton) is None
    np.testing.assert_allclose(again.values, clip.values, atol=1e-6)
    assert again.frame_time == pytest.approx(clip.frame_time, rel=1e-6)


def test_inverse_kinematics_reproduces_positions_and_channels(tmp_path: Path) -> None:
    clip = read_bvh(_write(tmp_path, CHAIN))
    positions = clip_positions(clip)
    rotations, translations = inverse_kinematics(clip.skeleton, positions)
    again, _ = forward_kinematics(clip.skeleton, rotations, translations)
    np.testing.assert_allclose(again, positions, atol=1e-9)
    values = local_to_channels(clip.skeleton, *channels_to_local(clip.skeleton, clip.values))
    np.testing.assert_allclose(values, clip.values, atol=1e-9)


@needs_shared
def test_cmu_clip_round_trips_through_positions_and_bvh(tmp_path: Path) -> None:
    clip = read_bvh(MOCAP / "mb2" / "02" / "02_01.bvh")
    assert clip.skeleton.joints == 31 and clip.fps == pytest.approx(120, rel=1e-3)
    assert guess_unit(clip.skeleton) == "cmu"
    positions = clip_positions(clip)
    rotations, translations = inverse_kinematics(clip.skeleton, positions)
    assert np.abs(forward_kinematics(clip.skeleton, rotations, translations)[0] - positions).max() < 1e-9
    text = format_bvh(clip.skeleton, local_to_channels(clip.skeleton, rotations, translations), clip.frame_time)
    again = read_bvh(_write(tmp_path, text))
    assert np.abs(clip_positions(again) - positions).max() < 1e-4  # file precision: 6 decimals


# ----------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda t: t.replace("      End Site", "      End Site\n      {", 1), r"clip\.bvh, line \d+: .*(brace|\})"),
        (lambda t: t.replace("  }\n}\nMOTION", "  }\nMOTION"), r"clip\.bvh, line \d+: .*(unbalanced|'\}' is missing)"),
        (lambda t: t.replace("  }\n}\nMOTION", "  }\n}\n}\nMOTION"), r"clip\.bvh, line 21: .*extra '\}'"),
        (lambda t: t.replace("1 2 3 90 0 0 90 0 0 0 0 0", "1 2 3 90 0 0 90 0 0 0 0"),
         r"clip\.bvh, line 25: 11 values but the hierarchy has 12 channels"),
        (lambda t: t.replace("1 2 3 90 0 0 90", "1 2 abc 90 0 0 90"),
         r"clip\.bvh, line 25, value 3: 'abc' is not a number"),
        (lambda t: t.replace("Frame Time: 0.0333333", "Frame Time: 0"), r"clip\.bvh, line 23: the frame time is 0"),
        (lambda t: t.replace("Frames: 2", "Frames: 3"), r"'Frames:' says 3 but the file has 2 motion rows"),
        (lambda t: t.replace("CHANNELS 3 Zrotation Xrotation", "CHANNELS 3 Zrotation Wrotation"),
         r"clip\.bvh, line 9: unknown channel 'Wrotation'"),
        (lambda t: t.replace("    OFFSET 1 0 0\n    CHANNELS 3 Zrotation X",
                             "    OFFSET 1 zero 0\n    CHANNELS 3 Zrotation X"),
         r"clip\.bvh, line 8: OFFSET of joint 'Upper' must be a number, found 'zero'"),
        (lambda t: t.split("MOTION")[0], r"clip\.bvh: no MOTION section"),
    ],
    ids=["missing-brace-in-end-site", "unbalanced-missing-close", "extra-close", "channel-count", "non-numeric",
         "zero-frame-time", "frame-count", "unknown-channel", "bad-offset", "no-motion"],
)
def test_malformed_bvh_names_file_and_line(tmp_path: Path, change, match: str) -> None:
    path = _write(tmp_path, change(CHAIN))
    with pytest.raises(DataError, match=match):
        read_bvh(path)


def test_clips_with_different_skeletons_in_one_data_set_are_refused(tmp_path: Path) -> None:
    _write(tmp_path, CHAIN, "a.bvh")
    _write(tmp_path, CHAIN.replace("JOINT Lower", "JOINT Forearm"), "b.bvh")
    with pytest.raises(DataError, match=r"b\.bvh, line 1: its skeleton differs from .*a\.bvh's \(joint names differ"):
        load_motion(tmp_path)
    (tmp_path / "b.bvh").write_text(CHAIN.replace("      OFFSET 1 0 0\n      CHANNELS 3 Zrotation Y",
                                                  "      OFFSET 2 0 0\n      CHANNELS 3 Zrotation Y"))
    with pytest.raises(DataError,
                       match=r"joint 'Lower' has offset \[2\.0, 0\.0, 0\.0\] instead of \[1\.0, 0\.0, 0\.0\]"):
        load_motion(tmp_path, retarget=False)
    # Same joints, other proportions (another subject): retargeted onto the first clip's bones by default
    episodes = load_motion(tmp_path, unit=1.0, drop_tpose=False)
    assert [m["report"]["retargeted"] for m in episodes.meta] == [False, True]
    a, b = (seq.reshape(2, 3, 3) for seq in episodes.sequences)
    np.testing.assert_allclose(b - b[:, :1], a - a[:, :1], atol=1e-12)  # a's bones, b's rotations (the same)
    np.testing.assert_allclose(b[:, 0], a[:, 0] * 2 / 3, atol=1e-12)  # root moves scale with total bone length 2 vs 3


@needs_shared
def test_real_clips_of_two_skeletons_are_refused() -> None:
    with pytest.raises(DataError, match=r"131_01\.bvh, line 1: its skeleton differs from .*02_01\.bvh's"):
        load_motion([MOCAP / "mb2" / "02" / "02_01.bvh", MOCAP / "max_scaled" / "131_01.bvh"])


def test_loader_resamples_and_reports(tmp_path: Path) -> None:
    rows = "\n".join(" ".join(["0"] * 3 + [str(10.0 * i)] + ["0"] * 8) for i in range(9))
    text = CHAIN.split("MOTION")[0] + f"MOTION\nFrames: 9\nFrame Time: 0.0083333\n{rows}\n"
    episodes = load_motion(_write(tmp_path, text), fps=30.0, unit=1.0, drop_tpose=False)
    assert episodes.lengths == [3] and episodes.columns[:3] == ["Hips_x", "Hips_y", "Hips_z"]
    meta = episodes.meta[0]
    assert meta["report"]["resampled"] and not meta["report"]["tpose_dropped"]
    np.testing.assert_allclose(meta["times"], [0, 1 / 30, 2 / 30])
    # frame 4 of the file (root turned 40 deg about Z): the upper joint sits at (cos 40, sin 40, 0)
    angle = math.radians(40)
    np.testing.assert_allclose(episodes.sequences[0][1, 3:6], [math.cos(angle), math.sin(angle), 0], atol=1e-9)


@needs_shared
def test_loader_reads_cmu_clips_with_labels_in_metres() -> None:
    episodes = load_motion([MOCAP / "mb2" / "02" / "02_01.bvh", MOCAP / "mb2" / "02" / "02_03.bvh"])
    assert episodes.ids == ["02_01", "02_03"] and len(episodes.columns) == 93
    assert [m["category"] for m in episodes.meta] == ["walk", "run"] and episodes.meta[0]["label"] == "walk"
    assert all(m["report"]["tpose_dropped"] for m in episodes.meta)
    hips_height = episodes.sequences[0][:, 1]
    assert 0.8 < float(np.median(hips_height)) < 1.1  # metres
