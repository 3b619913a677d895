"""The motion representation: root motion separated from the pose, invertible back to joint positions.

Per frame t (Y up, heading h_t = the facing direction on the ground, from the left-minus-right vector of
the skeleton's paired joints: forward = across x up, h = atan2(forward_x, forward_z)):

- root motion: planar velocity ``(vx, vz)`` = R_y(-h_{t-1}) (root_t - root_{t-1}) on the ground, expressed in
  the previous frame's heading; heading change ``dh = wrap(h_t - h_{t-1})``; root height;
- pose: every kept joint's bone vector (its position minus its parent's) in the frame's own heading; summed
  down the tree from the root at (0, height, 0) they give the joints' positions relative to the root's ground
  point (y is the height above the floor).

Why positions rather than joint rotations: joint-position metrics (ADE/FDE), the bone-length projection (each
bone vector rescaled to its length), the floor and foot-contact guides are then closed-form on the features, and
20 kept CMU joints give 64 numbers per frame (6-D rotations of 31 joints would need 190). Bone vectors rather
than root-relative positions: a model's error in one feature then changes one bone's length by at most that
error, where an error in a hand's root-relative position (std about 0.3 m) stretches the forearm by all of it.
BVH output goes through
`kinematics.inverse_kinematics`, exact for positions with the skeleton's bone lengths (twist about
single-child bones is not observable from positions). Joints with a zero offset coincide with their
parent and are not stored. The first frame's velocity and heading change repeat the second frame's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from trajdiff.errors import ShapeError
from trajdiff.plugins.motion.bvh import Skeleton
from trajdiff.plugins.motion.kinematics import rest_positions

__all__ = ["ROOT_FEATURES", "Layout", "decode_world", "encode_positions", "heading_of"]

ROOT_FEATURES = 4  # vx, vz, dh, height
_SIDE = re.compile(r"^(Left|Right|L|R)(?=[A-Z_])|^(left|right)_?")


@dataclass
class Layout:
    """Which joints the features hold and how they relate (built from a skeleton in metres)."""

    skeleton: Skeleton
    kept: list[int]  # joint indices stored in the features (the root first)
    kept_parent: list[int]  # per kept joint, the index (into kept) of its nearest kept ancestor, -1 for the root
    bone_length: np.ndarray  # [K] metres from the kept parent (0 for the root)
    source_of: list[int]  # per joint, the kept index whose position it shares
    pairs: list[tuple[int, int]]  # (left, right) joint indices for the heading
    feet: list[int]  # kept indices of the joints that touch the floor (lowest in the rest pose)
    angle_triples: list[tuple[int, int, int]]  # kept (parent, joint, child) for joint-angle limits

    @classmethod
    def from_skeleton(cls, skeleton: Skeleton) -> Layout:
        lengths = np.linalg.norm(skeleton.offsets, axis=1)
        tiny = 1e-9 * max(float(lengths.max()), 1e-9)
        kept, source = [], []
        for j, parent in enumerate(skeleton.parents):
            if parent < 0 or lengths[j] > tiny:
                kept.append(j)
                source.append(len(kept) - 1)
            else:
                source.append(source[parent])
        index = {j: n for n, j in enumerate(kept)}
        kept_parent = [-1 if skeleton.parents[j] < 0 else source[skeleton.parents[j]] for j in kept]
        bone = np.array([0.0 if skeleton.parents[j] < 0 else lengths[j] for j in kept])
        pairs = _side_pairs(skeleton.names)
        rest = rest_positions(skeleton)
        height = rest[:, 1].max() - rest[:, 1].min()
        low = [index[j] for j in kept if rest[j, 1] - rest[:, 1].min() < 0.15 * height and skeleton.parents[j] >= 0]
        children: dict[int, list[int]] = {}
        for n, p in enumerate(kept_parent):
            children.setdefault(p, []).append(n)
        triples = [(kept_parent[n], n, kids[0]) for n, kids in children.items()
                   if n >= 0 and kept_parent[n] >= 0 and len(kids) == 1]
        return cls(skeleton, kept, kept_parent, bone, source, pairs, low, triples)

    @property
    def frame_dim(self) -> int:
        """Features per frame: 4 root-motion numbers + 3 per kept joint other than the root."""
        return ROOT_FEATURES + 3 * (len(self.kept) - 1)


def _side_pairs(names: list[str]) -> list[tuple[int, int]]:
    """(left, right) joint pairs whose names differ only by a Left/Right (or L/R) prefix."""
    keyed: dict[tuple[str, str], int] = {}
    for j, name in enumerate(names):
        m = _SIDE.match(name)
        if m:
            side = (m.group(1) or m.group(2)).lower()[0]
            keyed[(side, name[m.end():].lower())] = j
    return [(keyed[("l", rest)], keyed[("r", rest)]) for side, rest in keyed if side == "l" and ("r", rest) in keyed]


def heading_of(positions: np.ndarray, pairs: list[tuple[int, int]]) -> np.ndarray:
    """Facing angle ``[T]`` (radians, 0 = +Z) from joint positions ``[T, J, 3]``; 0 without left/right pairs."""
    if not pairs:
        return np.zeros(positions.shape[0])
    left = positions[:, [a for a, _ in pairs]].sum(axis=1)
    right = positions[:, [b for _, b in pairs]].sum(axis=1)
    across = left - right
    return np.arctan2(-across[:, 2], across[:, 0])


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


def _rot_y(points: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotates ``[..., 3]`` points about +Y by ``angle`` (broadcast over the leading axes)."""
    c, s = np.cos(angle)[..., None], np.sin(angle)[..., None]
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return np.stack([c[..., 0] * x + s[..., 0] * z, y, -s[..., 0] * x + c[..., 0] * z], axis=-1)


def encode_positions(layout: Layout, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Global joint positions ``[T, J, 3]`` (metres, T >= 2) -> features ``[T, frame_dim]`` and headings ``[T]``."""
    if positions.ndim != 3 or positions.shape[0] < 2:
        raise ShapeError(f"positions must be [T >= 2, J, 3], got {positions.shape}")
    heading = heading_of(positions, layout.pairs)
    root = positions[:, layout.kept[0]]
    dh = _wrap(np.diff(heading))
    step = root[1:] - root[:-1]
    step[:, 1] = 0.0
    velocity = _rot_y(step, -heading[:-1])[:, [0, 2]]
    dh = np.concatenate([dh[:1], dh])
    velocity = np.concatenate([velocity[:1], velocity])
    ground = root.copy()
    ground[:, 1] = 0.0
    local = _rot_y(positions[:, layout.kept] - ground[:, None], -heading[:, None])
    bones = local[:, 1:] - local[:, layout.kept_parent[1:]]
    features = np.concatenate([velocity, dh[:, None], root[:, 1:2], bones.reshape(len(root), -1)], axis=1)
    return features, heading


def _rot_y_t(points: Tensor, angle: Tensor) -> Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return torch.stack([c * x + s * z, y, -s * x + c * z], dim=-1)


def local_pose(layout: Layout, features: Tensor) -> Tensor:
    """Kept-joint positions in each frame's heading frame, root's ground point at 0: ``[..., T, K, 3]``."""
    height = features[..., 3:4]
    bones = features[..., ROOT_FEATURES:].unflatten(-1, (len(layout.kept) - 1, 3))
    joints = [torch.cat([torch.zeros_like(height), height, torch.zeros_like(height)], dim=-1)]
    for k in range(1, len(layout.kept)):  # parents precede children
        joints.append(joints[layout.kept_parent[k]] + bones[..., k - 1, :])
    return torch.stack(joints, dim=-2)


def with_local_pose(layout: Layout, features: Tensor, local: Tensor) -> Tensor:
    """Features with the pose replaced by ``local`` ``[..., T, K, 3]`` (root height from its y)."""
    bones = local[..., 1:, :] - local[..., layout.kept_parent[1:], :]
    return torch.cat([features[..., :3], local[..., 0, 1:2], bones.flatten(-2)], dim=-1)


def root_trajectory(features: Tensor, anchor: int = 0, origin: Tensor | None = None,
                    heading: float | Tensor = 0.0) -> tuple[Tensor, Tensor]:
    """Integrates root motion: ground positions ``[..., T, 2]`` (x, z) and headings ``[..., T]`` with frame
    ``anchor`` at ``origin`` facing ``heading``: h_t = h_a + C_t - C_a (C = cumulative dh), and the root
    moves by R_y(h_{t-1}) (vx, vz) from frame t-1 to t."""
    dh = features[..., 2].clone()
    dh[..., 0] = 0.0
    cum = torch.cumsum(dh, dim=-1)
    h = heading + cum - cum[..., anchor:anchor + 1]
    v = features[..., :2]
    c, s = torch.cos(h[..., :-1]), torch.sin(h[..., :-1])
    step = torch.stack([c * v[..., 1:, 0] + s * v[..., 1:, 1], -s * v[..., 1:, 0] + c * v[..., 1:, 1]], dim=-1)
    step = torch.cat([torch.zeros_like(step[..., :1, :]), step], dim=-2)
    path = torch.cumsum(step, dim=-2)
    path = path - path[..., anchor:anchor + 1, :]
    if origin is not None:
        path = path + origin
    return path, h


def decode_world(layout: Layout, features: Tensor, anchor: int = 0, origin: Tensor | None = None,
                 heading: float | Tensor = 0.0) -> Tensor:
    """Features ``[..., T, frame_dim]`` -> global positions of the kept joints ``[..., T, K, 3]``."""
    path, h = root_trajectory(features, anchor, origin, heading)
    world = _rot_y_t(local_pose(layout, features), h.unsqueeze(-1))
    shift = torch.stack([path[..., 0], torch.zeros_like(path[..., 0]), path[..., 1]], dim=-1)
    return world + shift.unsqueeze(-2)

