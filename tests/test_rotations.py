"""The rotation sampler and the cube groups."""

import numpy as np
import pytest

from vol3d.errors import UsageError
from vol3d.rotations import (
    GROUPS,
    cube_rotations,
    cube_symmetries,
    rotation_angle,
    rotation_about_z,
    sample_rotations,
)


def _is_orthogonal(m):
    return np.allclose(m @ np.swapaxes(m, -1, -2), np.eye(3), atol=1e-10)


def test_cube_groups_are_closed_groups():
    for table, size in ((cube_rotations(), 24), (cube_symmetries(), 48)):
        assert table.shape == (size, 3, 3)
        assert len({m.tobytes() for m in table}) == size
        products = {(a @ b).tobytes() for a in table for b in table}
        assert products == {m.tobytes() for m in table}
    assert np.all(np.round(np.linalg.det(cube_rotations())) == 1)
    assert np.array_equal(cube_rotations()[0], np.eye(3, dtype=int))


@pytest.mark.parametrize("group", GROUPS)
def test_samples_are_orthogonal_and_seeded(group):
    a = sample_rotations(64, group, 7)
    b = sample_rotations(64, group, np.random.default_rng(7))
    assert a.shape == (64, 3, 3) and _is_orthogonal(a)
    assert np.array_equal(a, b)
    det = np.linalg.det(a)
    if group in ("o3", "full_octa"):
        assert (det < 0).any() and (det > 0).any()
    else:
        assert np.allclose(det, 1)


def test_z_rotations_fix_the_z_axis():
    m = sample_rotations(32, "z", 0)
    assert np.allclose(m @ np.array([0, 0, 1.0]), [0, 0, 1.0])


def test_so3_is_uniform():
    # Haar measure: the angle density is (1 - cos t) / pi, whose mean is pi/2 + 2/pi.
    angles = rotation_angle(sample_rotations(20000, "so3", 1))
    assert abs(angles.mean() - (np.pi / 2 + 2 / np.pi)) < 0.02
    # and the image of a fixed vector is uniform on the sphere: its mean is ~0
    assert np.abs((sample_rotations(20000, "so3", 2) @ np.array([1.0, 0, 0])).mean(0)).max() < 0.02


def test_distinct_cube_rotations():
    m = sample_rotations(24, "octa", 3, replace=False)
    assert len({r.tobytes() for r in m}) == 24
    with pytest.raises(UsageError, match="24 distinct"):
        sample_rotations(25, "octa", 3, replace=False)


def test_rotation_angle_and_unknown_group():
    assert np.allclose(rotation_angle(rotation_about_z([0.3, 2.0])), [0.3, 2.0])
    with pytest.raises(UsageError, match="unknown rotation group 'so4'"):
        sample_rotations(1, "so4")
