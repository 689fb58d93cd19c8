"""rotate_volumes: exact cube symmetries, axis convention, continuous rotations."""

import numpy as np
import pytest
import torch

from vol3d.errors import UsageError
from vol3d.rotations import cube_symmetries, rotation_about_z, sample_rotations
from vol3d.transforms import rotate_volumes


def _voxel_volume(size, pos):
    x = torch.zeros(1, 1, size, size, size)
    x[(0, 0) + tuple(pos)] = 1.0
    return x


@pytest.mark.parametrize("size", [5, 6])
def test_moves_voxel_at_p_to_R_p(size):
    c = (size - 1) / 2
    pos = np.array([0, 1, size - 2])
    x = _voxel_volume(size, pos)
    for R in cube_symmetries():
        out = rotate_volumes(x, R)
        target = np.round(R @ (pos - c) + c).astype(int)
        assert out[(0, 0) + tuple(target)] == 1.0 and out.sum() == 1.0


def test_identity_and_quarter_turns_exact():
    x = torch.rand(2, 3, 7, 8, 9)
    assert torch.equal(rotate_volumes(x, np.eye(3)), x)
    x = torch.rand(2, 1, 8, 8, 8)
    quarter = rotation_about_z(np.pi / 2)  # float matrix with rounding noise: exact path anyway
    assert torch.equal(rotate_volumes(x, quarter), torch.rot90(x, 1, (2, 3)))


def test_interpolated_path_agrees_with_exact_path():
    """A 90-degree turn through grid_sample (perturbed off the exact path) lands on grid points."""
    x = torch.rand(1, 1, 9, 9, 9)
    R = cube_symmetries()[5].astype(float)
    tilt = rotation_about_z(1e-9)
    exact = rotate_volumes(x, R)
    interp = rotate_volumes(x, R @ tilt)
    assert torch.allclose(interp, exact, atol=1e-5)


def _centroid(v):
    size = v.shape[-1]
    axis = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1)
    w = v[0].double()
    return (grid * w[..., None]).sum((0, 1, 2)) / w.sum()


def test_continuous_rotation_moves_blob_centroid_to_R_p():
    size = 21
    axis = torch.arange(size, dtype=torch.float32) - 10
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1)
    p = torch.tensor([4.0, -2.0, 1.5])
    x = torch.exp(-((grid - p) ** 2).sum(-1) / (2 * 1.5 ** 2))[None, None].repeat(3, 1, 1, 1, 1)
    rots = sample_rotations(3, "so3", rng=0)
    out = rotate_volumes(x, rots)
    for i in range(3):
        assert torch.allclose(_centroid(out[i]), torch.as_tensor(rots[i]) @ p.double(), atol=0.05)
    back = rotate_volumes(out, np.transpose(rots, (0, 2, 1)))
    assert (back - x).abs().max() < 0.25 * x.max()  # two trilinear resamplings blur a little
    mixed = rotate_volumes(x, cube_symmetries()[[0, 3, 40]])
    assert torch.equal(mixed[2], rotate_volumes(x[2:], cube_symmetries()[40])[0])
    nearest = rotate_volumes(x, rots, mode="nearest")
    assert torch.allclose(_centroid(nearest[0]), torch.as_tensor(rots[0]) @ p.double(), atol=0.5)


def test_bad_arguments():
    with pytest.raises(UsageError, match="rotations"):
        rotate_volumes(torch.zeros(2, 1, 4, 4, 4), np.eye(3)[None].repeat(3, 0))
    with pytest.raises(UsageError, match="mode"):
        rotate_volumes(torch.zeros(1, 1, 4, 4, 4), np.eye(3), mode="cubic")
    with pytest.raises(UsageError, match="B, C, X, Y, Z"):
        rotate_volumes(torch.zeros(4, 4, 4), np.eye(3))
