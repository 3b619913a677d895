"""Rotations, forward kinematics and a position-driven inverse kinematics for BVH skeletons.

Conventions: Y is up, rotations are right-handed, a joint's local rotation is the product of its
rotation channels in file order (``Zrotation Yrotation Xrotation`` -> Rz(z) @ Ry(y) @ Rx(x)), and the
translation of a joint with position channels is those values (components without a channel keep the
OFFSET); other joints are translated by their OFFSET.
"""

from __future__ import annotations

import numpy as np

from trajdiff.plugins.motion.bvh import BvhClip, Skeleton

__all__ = [
    "axis_rotation",
    "channels_to_local",
    "euler_from_matrix",
    "euler_to_matrix",
    "forward_kinematics",
    "inverse_kinematics",
    "local_to_channels",
    "rest_positions",
]

_AXIS = {"X": 0, "Y": 1, "Z": 2}


def axis_rotation(axis: int, angle: np.ndarray) -> np.ndarray:
    """Rotation matrices ``[..., 3, 3]`` about axis 0/1/2 by ``angle`` radians."""
    angle = np.asarray(angle, float)
    c, s = np.cos(angle), np.sin(angle)
    out = np.zeros(angle.shape + (3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    out[..., axis, axis] = 1.0
    out[..., i, i] = c
    out[..., j, j] = c
    out[..., i, j] = -s
    out[..., j, i] = s
    return out


def euler_to_matrix(degrees: np.ndarray, order: str) -> np.ndarray:
    """``[..., n]`` angles in degrees about the axes of ``order`` (e.g. "ZYX") -> R = R_a R_b R_c."""
    radians = np.deg2rad(np.asarray(degrees, float))
    out = np.broadcast_to(np.eye(3), radians.shape[:-1] + (3, 3)).copy()
    for n, axis in enumerate(order):
        out = out @ axis_rotation(_AXIS[axis], radians[..., n])
    return out


def euler_from_matrix(matrix: np.ndarray, order: str) -> np.ndarray:
    """Inverse of `euler_to_matrix` for a three-axis (Tait-Bryan) order: ``[..., 3, 3]`` -> degrees ``[..., 3]``.

    For R = R_i(a) R_j(b) R_k(c) with s = +1 for cyclic orders (XYZ, YZX, ZXY), -1 otherwise:
    b = asin(s R[i,k]), a = atan2(-s R[j,k], R[k,k]), c = atan2(-s R[i,j], R[i,i]).
    """
    i, j, k = (_AXIS[a] for a in order)
    s = 1.0 if (j - i) % 3 == 1 else -1.0
    m = np.asarray(matrix, float)
    b = np.arcsin(np.clip(s * m[..., i, k], -1.0, 1.0))
    a = np.arctan2(-s * m[..., j, k], m[..., k, k])
    c = np.arctan2(-s * m[..., i, j], m[..., i, i])
    gimbal = np.abs(s * m[..., i, k]) > 1 - 1e-9
    if gimbal.any():  # a and c rotate about the same axis: put everything into a, c = 0
        a = np.where(gimbal, np.arctan2(s * m[..., k, j], m[..., j, j]), a)
        c = np.where(gimbal, 0.0, c)
    return np.rad2deg(np.stack([a, b, c], axis=-1))


def _rotation_order(channels: tuple[str, ...]) -> tuple[str, list[int]]:
    """The rotation axes in channel order and their columns within the joint's channels."""
    axes, columns = "", []
    for n, ch in enumerate(channels):
        if ch.endswith("rotation"):
            axes += ch[0]
            columns.append(n)
    return axes, columns


def channels_to_local(skeleton: Skeleton, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Motion rows ``[F, C]`` -> local rotations ``[F, J, 3, 3]`` and local translations ``[F, J, 3]``."""
    frames = values.shape[0]
    rotations = np.broadcast_to(np.eye(3), (frames, skeleton.joints, 3, 3)).copy()
    translations = np.broadcast_to(skeleton.offsets, (frames, skeleton.joints, 3)).copy()
    for j, (chans, cols) in enumerate(zip(skeleton.channels, skeleton.channel_slices(), strict=True)):
        block = values[:, cols]
        axes, rot_cols = _rotation_order(chans)
        if axes:
            rotations[:, j] = euler_to_matrix(block[:, rot_cols], axes)
        for n, ch in enumerate(chans):
            if ch.endswith("position"):
                translations[:, j, _AXIS[ch[0]]] = block[:, n]
    return rotations, translations


def local_to_channels(skeleton: Skeleton, rotations: np.ndarray, translations: np.ndarray) -> np.ndarray:
    """Inverse of `channels_to_local`: channel values ``[F, C]`` (degrees, file units). A joint with fewer
    than three rotation channels keeps only the angles about its own axes (the rest is dropped)."""
    frames = rotations.shape[0]
    out = np.zeros((frames, skeleton.channel_count))
    for j, (chans, cols) in enumerate(zip(skeleton.channels, skeleton.channel_slices(), strict=True)):
        axes, rot_cols = _rotation_order(chans)
        block = np.zeros((frames, len(chans)))
        if axes:
            full = axes + "".join(a for a in "XYZ" if a not in axes)
            angles = euler_from_matrix(rotations[:, j], full)
            block[:, rot_cols] = angles[:, : len(axes)]
        for n, ch in enumerate(chans):
            if ch.endswith("position"):
                block[:, n] = translations[:, j, _AXIS[ch[0]]]
        out[:, cols] = block
    return out


def forward_kinematics(
    skeleton: Skeleton, rotations: np.ndarray, translations: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Global joint positions ``[F, J, 3]`` and global rotations ``[F, J, 3, 3]`` from local ones:
    G_j = G_parent R_j and p_j = p_parent + G_parent t_j."""
    frames, joints = rotations.shape[:2]
    positions = np.zeros((frames, joints, 3))
    globals_ = np.zeros((frames, joints, 3, 3))
    for j, parent in enumerate(skeleton.parents):
        if parent < 0:
            globals_[:, j] = rotations[:, j]
            positions[:, j] = translations[:, j]
        else:
            globals_[:, j] = globals_[:, parent] @ rotations[:, j]
            positions[:, j] = positions[:, parent] + np.einsum("fab,fb->fa", globals_[:, parent], translations[:, j])
    return positions, globals_


def clip_positions(clip: BvhClip, scale: float = 1.0) -> np.ndarray:
    """Global joint positions ``[F, J, 3]`` of a clip, multiplied by ``scale`` (e.g. to metres)."""
    rotations, translations = channels_to_local(clip.skeleton, clip.values)
    return forward_kinematics(clip.skeleton, rotations, translations)[0] * scale


def rest_positions(skeleton: Skeleton) -> np.ndarray:
    """Joint positions ``[J, 3]`` of the rest pose (all rotations identity, root at its offset)."""
    rot = np.broadcast_to(np.eye(3), (1, skeleton.joints, 3, 3))
    return forward_kinematics(skeleton, rot, skeleton.offsets[None])[0][0]


def _swing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation ``[F, 3, 3]`` taking unit directions a ``[3]`` to b ``[F, 3]`` (Rodrigues)."""
    a = a / np.linalg.norm(a)
    b = b / np.clip(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12, None)
    v = np.cross(a, b)
    c = b @ a
    vx = np.zeros(b.shape[:-1] + (3, 3))
    vx[..., 0, 1], vx[..., 0, 2], vx[..., 1, 2] = -v[..., 2], v[..., 1], -v[..., 0]
    vx = vx - np.swapaxes(vx, -1, -2)
    factor = 1.0 / np.clip(1.0 + c, 1e-9, None)
    out = np.eye(3) + vx + vx @ vx * factor[..., None, None]
    opposite = c < -1 + 1e-9
    if opposite.any():  # a half turn about any axis orthogonal to a
        axis = np.cross(a, [1.0, 0.0, 0.0])
        if np.linalg.norm(axis) < 1e-6:
            axis = np.cross(a, [0.0, 1.0, 0.0])
        axis = axis / np.linalg.norm(axis)
        out[opposite] = 2 * np.outer(axis, axis) - np.eye(3)
    return out


def _kabsch(rest: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Best rotations ``[F, 3, 3]`` taking rest vectors ``[n, 3]`` onto targets ``[F, n, 3]`` (least squares)."""
    h = np.einsum("na,fnb->fab", rest, target)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(np.swapaxes(vt, -1, -2) @ np.swapaxes(u, -1, -2)))
    fix = np.broadcast_to(np.eye(3), h.shape).copy()
    fix[:, 2, 2] = d
    return np.swapaxes(vt, -1, -2) @ fix @ np.swapaxes(u, -1, -2)


def inverse_kinematics(skeleton: Skeleton, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local rotations ``[F, J, 3, 3]`` and translations ``[F, J, 3]`` whose forward kinematics reproduce
    global joint positions ``[F, J, 3]`` (in the skeleton's units).

    Each joint turns so that its children land on their target positions: the smallest rotation (no twist)
    when one child has a non-zero offset, the least-squares rotation (Kabsch) for several. Positions with
    the skeleton's bone lengths and a rigid child layout are reproduced exactly; twist about a bone with a
    single child is not observable from positions and is set to zero.
    """
    frames, joints = positions.shape[:2]
    rotations = np.broadcast_to(np.eye(3), (frames, joints, 3, 3)).copy()
    translations = np.broadcast_to(skeleton.offsets, (frames, joints, 3)).copy()
    globals_ = np.zeros((frames, joints, 3, 3))
    tiny = 1e-9 * max(float(np.abs(skeleton.offsets).max()), 1e-9)
    for j, parent in enumerate(skeleton.parents):
        parent_rot = np.broadcast_to(np.eye(3), (frames, 3, 3)) if parent < 0 else globals_[:, parent]
        if parent < 0:
            translations[:, j] = positions[:, j]
        kids = [c for c in skeleton.children(j) if np.linalg.norm(skeleton.offsets[c]) > tiny]
        if kids:
            rest = skeleton.offsets[kids]  # [n, 3] in j's frame
            target = np.einsum("fba,fnb->fna", parent_rot, positions[:, kids] - positions[:, j:j + 1])
            spread = np.linalg.matrix_rank(rest, tol=1e-6 * np.abs(rest).max()) if len(kids) > 1 else 1
            rotations[:, j] = _swing(rest[0], target[:, 0]) if spread == 1 else _kabsch(rest, target)
        globals_[:, j] = parent_rot @ rotations[:, j]
    return rotations, translations
