"""Physical constraints for guided sampling: projections and differentiable costs on motion tokens.

All act on normalized tokens ``[B, T, D]`` of a fitted `MotionEncoder` (decoded to features inside):

- `bone_projection`: every bone gets its skeleton length, keeping its direction (a pass from the root
  down; positions already at the right lengths are unchanged, so it is idempotent);
- `ground_projection`: a frame whose lowest joint is below the floor is lifted onto it (PhysDiff's
  penetration correction without a simulator);
- `foot_lock_projection`: in frames where a foot is in contact in this and the previous frame, the root's
  planar step is chosen so that the contact foot does not slide (both feet: their mean);
- costs: ``penetration``, ``skating`` (contact-weighted foot slide), ``bone_length``, ``joint_limits``
  (angles between consecutive bones outside the range seen in training), and `root_path_cost` that makes the
  root follow a 2-D path.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from trajdiff.errors import ConfigError
from trajdiff.plugins.motion.encoder import MotionEncoder
from trajdiff.plugins.motion.features import local_pose, root_trajectory, with_local_pose

__all__ = [
    "CONTACT_MARGIN",
    "angle_cost",
    "bone_cost",
    "bone_projection",
    "contact_weights",
    "foot_lock_projection",
    "ground_projection",
    "joint_angles",
    "path_targets",
    "penetration_cost",
    "root_path_cost",
    "skating_cost",
    "world_positions",
]

CONTACT_MARGIN = 0.03
"""A foot joint is in contact within this many metres of its lowest height seen in training."""

Fn = Callable[[Tensor], Tensor]


def _features(encoder: MotionEncoder, x: Tensor) -> Tensor:
    return encoder.from_tokens(x)


def project_lengths(encoder: MotionEncoder, local: Tensor) -> Tensor:
    """Positions ``[..., K, 3]`` with every bone set to its length along its current direction."""
    layout = encoder._layout()
    lengths = torch.as_tensor(layout.bone_length, dtype=local.dtype, device=local.device)
    joints = [local[..., 0, :]]
    for k in range(1, len(layout.kept)):
        p = layout.kept_parent[k]
        bone = local[..., k, :] - local[..., p, :]
        norm = bone.norm(dim=-1, keepdim=True)
        direction = bone / norm.clamp_min(1e-9)
        joints.append(joints[p] + lengths[k] * direction)
    return torch.stack(joints, dim=-2)


def bone_projection(encoder: MotionEncoder) -> Fn:
    """Projection onto poses with the skeleton's bone lengths."""

    def project(x: Tensor) -> Tensor:
        features = _features(encoder, x)
        local = project_lengths(encoder, local_pose(encoder._layout(), features))
        return encoder.tokens_from_features(with_local_pose(encoder._layout(), features, local)).to(x.dtype)

    return project


def ground_projection(encoder: MotionEncoder, ground: float = 0.0) -> Fn:
    """Lifts every frame whose lowest joint is below ``ground`` (metres) onto it."""

    def project(x: Tensor) -> Tensor:
        features = _features(encoder, x)
        local = local_pose(encoder._layout(), features)
        lift = (ground - local[..., 1].min(dim=-1).values).clamp_min(0.0)
        local = local + torch.stack([torch.zeros_like(lift), lift, torch.zeros_like(lift)], dim=-1).unsqueeze(-2)
        return encoder.tokens_from_features(with_local_pose(encoder._layout(), features, local)).to(x.dtype)

    return project


def contact_weights(encoder: MotionEncoder, heights: Tensor, sharpness: float = 0.0) -> Tensor:
    """Contact of each foot joint ``[..., T, feet]`` from its heights: 1 within `CONTACT_MARGIN` of its
    floor, else 0 (a sigmoid of width ``sharpness`` metres when > 0, for smooth costs)."""
    floor = torch.as_tensor(encoder.foot_floor, dtype=heights.dtype, device=heights.device)
    gap = floor + CONTACT_MARGIN - heights
    if sharpness > 0:
        return torch.sigmoid(gap / sharpness)
    return (gap > 0).to(heights.dtype)


def _rot(v: Tensor, angle: Tensor) -> Tensor:
    """Rotates planar (x, z) vectors ``[..., 2]`` about +Y by ``angle``."""
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([c * v[..., 0] + s * v[..., 1], -s * v[..., 0] + c * v[..., 1]], dim=-1)


def foot_lock_projection(encoder: MotionEncoder, max_speed: float = 1.5) -> Fn:
    """Removes foot sliding by moving the root: for frames t where a foot is in contact at t-1 and t (near its
    floor and sliding slower than ``max_speed`` m/s, so a foot swinging low is not caught), the root step is
    set so that the lowest such foot joint keeps its planar world position."""
    layout = encoder._layout()
    feet = layout.feet

    def project(x: Tensor) -> Tensor:
        features = _features(encoder, x)
        local = local_pose(layout, features)[..., feet, :]  # [..., T, F, 3]
        contact = contact_weights(encoder, local[..., 1])
        both = contact[..., 1:, :] * contact[..., :-1, :]  # [..., T-1, F]
        if not bool(both.any()):
            return x
        _, h = root_trajectory(features)
        planar = local[..., [0, 2]]
        foot_now = _rot(planar[..., 1:, :, :], h[..., 1:, None])  # world offsets from the root, frame t
        foot_before = _rot(planar[..., :-1, :, :], h[..., :-1, None])
        needed = -(foot_now - foot_before)  # root step that keeps each foot still, world frame
        step_now = _rot(features[..., 1:, :2], h[..., :-1])[..., None, :]
        slide = (step_now - needed).norm(dim=-1) * encoder.fps
        both = both * (slide < max_speed).to(both.dtype)
        # Lock the lowest foot joint among those in contact (several joints of one foot disagree slightly).
        heights = local[..., 1:, :, 1].masked_fill(both == 0, float("inf"))
        weight = torch.nn.functional.one_hot(heights.argmin(dim=-1), len(feet)).to(x.dtype) * both
        step = (needed * weight[..., None]).sum(dim=-2)
        locked = _rot(step, -h[..., :-1])  # into the previous frame's heading
        any_contact = (both.sum(dim=-1, keepdim=True) > 0).to(x.dtype)
        velocity = features[..., 1:, :2] * (1 - any_contact) + locked * any_contact
        velocity = torch.cat([velocity[..., :1, :], velocity], dim=-2)
        changed = torch.cat([velocity, features[..., 2:]], dim=-1)
        return encoder.tokens_from_features(changed).to(x.dtype)

    return project


def world_positions(encoder: MotionEncoder, x: Tensor, anchor: int = 0) -> Tensor:
    """Kept-joint positions ``[B, T, K, 3]`` with frame ``anchor``'s root at the origin, facing +Z."""
    from trajdiff.plugins.motion.features import decode_world

    return decode_world(encoder._layout(), _features(encoder, x), anchor)


def penetration_cost(encoder: MotionEncoder, ground: float = 0.0) -> Fn:
    """Mean squared depth (metres) of joints below ``ground``: ``[B, T, D] -> [B]``."""

    def cost(x: Tensor) -> Tensor:
        heights = local_pose(encoder._layout(), _features(encoder, x))[..., 1]
        return (ground - heights).clamp_min(0.0).square().sum(dim=-1).mean(dim=-1)

    return cost


def skating_cost(encoder: MotionEncoder) -> Fn:
    """Mean squared planar slide (metres per frame) of foot joints, weighted by (soft) contact."""
    layout = encoder._layout()

    def cost(x: Tensor) -> Tensor:
        world = world_positions(encoder, x)[..., layout.feet, :]
        slide = (world[..., 1:, :, :] - world[..., :-1, :, :])[..., [0, 2]].square().sum(dim=-1)
        weight = contact_weights(encoder, world[..., 1:, :, 1], sharpness=0.01)
        weight = weight * contact_weights(encoder, world[..., :-1, :, 1], sharpness=0.01)
        return (slide * weight).sum(dim=(-1, -2)) / x.shape[-2]

    return cost


def bone_cost(encoder: MotionEncoder) -> Fn:
    """Mean squared bone-length error (metres)."""
    layout = encoder._layout()

    def cost(x: Tensor) -> Tensor:
        local = local_pose(layout, _features(encoder, x))
        parents = torch.as_tensor(layout.kept_parent[1:])
        bones = (local[..., 1:, :] - local[..., parents, :]).norm(dim=-1)
        lengths = torch.as_tensor(layout.bone_length[1:], dtype=x.dtype)
        return (bones - lengths).square().mean(dim=(-1, -2))

    return cost


def joint_angles(encoder: MotionEncoder, local: Tensor) -> Tensor:
    """Angles (radians) between consecutive bones at each triple joint: ``[..., K, 3] -> [..., triples]``."""
    layout = encoder._layout()
    a = torch.as_tensor([t[0] for t in layout.angle_triples])
    b = torch.as_tensor([t[1] for t in layout.angle_triples])
    c = torch.as_tensor([t[2] for t in layout.angle_triples])
    u = local[..., b, :] - local[..., a, :]
    v = local[..., c, :] - local[..., b, :]
    cos = (u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1)).clamp_min(1e-9)
    return torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6))


def angle_cost(encoder: MotionEncoder) -> Fn:
    """Mean squared excess (radians) of joint angles outside the training range [angle_min, angle_max]."""

    def cost(x: Tensor) -> Tensor:
        angles = joint_angles(encoder, local_pose(encoder._layout(), _features(encoder, x)))
        lo = torch.as_tensor(encoder.angle_min, dtype=x.dtype)
        hi = torch.as_tensor(encoder.angle_max, dtype=x.dtype)
        excess = (lo - angles).clamp_min(0.0) + (angles - hi).clamp_min(0.0)
        return excess.square().sum(dim=-1).mean(dim=-1)

    return cost


def path_targets(path: np.ndarray, count: int) -> np.ndarray:
    """``count`` points ``[count, 2]`` walked along a polyline at constant speed, the last one at its end."""
    path = np.asarray(path, float)
    lengths = np.linalg.norm(np.diff(path, axis=0), axis=1)
    along = np.concatenate([[0.0], np.cumsum(lengths)])
    where = along[-1] * np.arange(1, count + 1) / count
    return np.stack([np.interp(where, along, path[:, 0]), np.interp(where, along, path[:, 1])], axis=1)


def root_path_cost(encoder: MotionEncoder, path: np.ndarray | Tensor, anchor: int = 0, start: int = 0,
                   goal_weight: float = 1.0, timed: bool = False) -> Fn:
    """Squared distance (metres) of the root's ground position to a 2-D polyline ``path [P, 2]`` (x, z in the
    frame where frame ``anchor``'s root is at the origin facing +Z), over frames from ``start``, plus
    ``goal_weight`` times the squared distance of the last frame to the path's end. ``timed=True`` instead
    compares frame n with the point n / N of the way along the path (constant speed, arriving at the end)."""
    points = torch.as_tensor(np.asarray(path), dtype=torch.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 2:
        raise ConfigError(f"a root path must be [P >= 2, 2] points (x, z), got {tuple(points.shape)}")
    a, b = points[:-1], points[1:]

    def cost(x: Tensor) -> Tensor:
        root, _ = root_trajectory(_features(encoder, x), anchor)
        root = root[..., start:, :]
        if timed:
            targets = torch.as_tensor(path_targets(points.numpy(), root.shape[-2]), dtype=x.dtype)
            return (root - targets).square().sum(-1).mean(-1)
        pa, ba = root[..., None, :] - a.to(x.dtype), (b - a).to(x.dtype)
        t = ((pa * ba).sum(-1) / ba.square().sum(-1).clamp_min(1e-12)).clamp(0.0, 1.0)
        dist = (pa - t[..., None] * ba).square().sum(-1).min(dim=-1).values
        goal = (root[..., -1, :] - b[-1].to(x.dtype)).square().sum(-1)
        return dist.mean(dim=-1) + goal_weight * goal

    return cost
