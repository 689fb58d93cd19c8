"""The one rotation sampler of vol3d, and the finite rotation groups of the voxel cube.

Rotations are 3x3 matrices acting on column vectors in vol3d's axis convention: a volume
``v[i, j, k]`` has axis 0 = x, axis 1 = y, axis 2 = z (z is "up" for ModelNet-style meshes). A rotation
``R`` maps a point ``p`` to ``R @ p``; rotating a volume by ``R`` means the voxel at position ``p``
(relative to the grid centre) moves to ``R @ p``.

Groups (the ``group`` argument everywhere in vol3d):

==============  ==========================================================
``none``        the identity only
``z``           rotations about the z axis by a uniform angle (SO(2))
``so3``         uniform (Haar) random rotations in SO(3)
``o3``          ``so3`` composed with the point reflection ``-I`` with probability 1/2
``octa``        the 24 rotations of the cube (exact on voxel grids)
``full_octa``   the 48 rotations and reflections of the cube
==============  ==========================================================
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np

from .errors import UsageError

GROUPS = ("none", "z", "so3", "o3", "octa", "full_octa")


@lru_cache(maxsize=None)
def _signed_permutations() -> np.ndarray:
    """All 48 signed permutation matrices (the full octahedral group O_h), in a fixed order."""
    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = np.zeros((3, 3), dtype=np.int64)
            m[np.arange(3), perm] = signs
            mats.append(m)
    out = np.stack(mats)
    out.setflags(write=False)
    return out


def cube_rotations() -> np.ndarray:
    """The 24 proper rotations of the cube as integer matrices ``(24, 3, 3)``; index 0 is the identity."""
    m = _signed_permutations()
    return m[np.round(np.linalg.det(m)).astype(int) == 1]


def cube_symmetries() -> np.ndarray:
    """The 48 rotations and reflections of the cube ``(48, 3, 3)``; the first 24 are the rotations."""
    m = _signed_permutations()
    det = np.round(np.linalg.det(m)).astype(int)
    return np.concatenate([m[det == 1], m[det == -1]])


def rotation_about_z(angle) -> np.ndarray:
    """Rotation matrices about the z axis, ``angle`` in radians (scalar or array) -> ``(..., 3, 3)``."""
    a = np.asarray(angle, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    out = np.zeros(a.shape + (3, 3))
    out[..., 0, 0], out[..., 0, 1] = c, -s
    out[..., 1, 0], out[..., 1, 1] = s, c
    out[..., 2, 2] = 1.0
    return out


def quaternion_to_matrix(q) -> np.ndarray:
    """Unit quaternions ``(..., 4)`` as ``(w, x, y, z)`` -> rotation matrices ``(..., 3, 3)``."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def as_generator(seed_or_rng=None) -> np.random.Generator:
    """A numpy Generator from a seed, an existing Generator (returned as is) or None (fresh entropy)."""
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    return np.random.default_rng(seed_or_rng)


def sample_rotations(n: int, group: str = "so3", rng=None, *, replace: bool = True) -> np.ndarray:
    """Draw ``n`` random elements of ``group`` (see the module docstring) as ``(n, 3, 3)`` float64.

    ``so3`` is uniform under the Haar measure: normalized 4D Gaussian vectors are uniform unit
    quaternions. The same ``rng`` seed always gives the same matrices, so evaluations that share a
    seed see the same rotations. ``replace=False`` draws distinct elements of the finite groups
    (``octa``: n <= 24, ``full_octa``: n <= 48); it is ignored for the continuous ones.
    """
    if group not in GROUPS:
        raise UsageError(f"unknown rotation group {group!r}; choose one of {', '.join(GROUPS)}")
    rng = as_generator(rng)
    if group == "none":
        return np.broadcast_to(np.eye(3), (n, 3, 3)).copy()
    if group == "z":
        return rotation_about_z(rng.uniform(0.0, 2 * np.pi, size=n))
    if group in ("so3", "o3"):
        mats = quaternion_to_matrix(rng.standard_normal((n, 4)))
        if group == "o3":
            mats = mats * rng.choice([1.0, -1.0], size=(n, 1, 1))
        return mats
    table = cube_rotations() if group == "octa" else cube_symmetries()
    if not replace and n > len(table):
        raise UsageError(f"group {group!r} has only {len(table)} distinct elements, {n} were asked for")
    index = rng.integers(0, len(table), size=n) if replace else rng.permutation(len(table))[:n]
    return table[index].astype(np.float64)


def rotation_angle(mats) -> np.ndarray:
    """Rotation angle in radians, in ``[0, pi]``, of rotation matrices ``(..., 3, 3)``.

    For an improper matrix (a reflection, det = -1) the angle of its rotation part ``-R`` is returned.
    """
    mats = np.asarray(mats, dtype=np.float64)
    det = np.linalg.det(mats)
    proper = mats * np.sign(det)[..., None, None]
    cos = (np.trace(proper, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.arccos(np.clip(cos, -1.0, 1.0))
