"""Empty space is not always zero: sdf volumes hold +SDF_BAND there. Rotations and padding fill
with the representation's background value (vol3d.data.voxelize.background_value)."""

import numpy as np
import torch

from vol3d.data.resample import pad_volumes, rotation_safe_size
from vol3d.data.voxelize import SDF_BAND, background_value, voxelize
from vol3d.rotations import rotation_about_z
from vol3d.training.augment import augment_batch
from vol3d.transforms import rotate_volumes


def test_background_values():
    assert background_value("sdf") == SDF_BAND
    assert background_value("solid") == background_value("surface") == 0.0


def test_rotation_fills_what_rotates_in_with_the_background():
    x = torch.full((1, 1, 9, 9, 9), SDF_BAND)
    q = torch.tensor(rotation_about_z(np.deg2rad(30)), dtype=torch.float32)
    zero_fill = rotate_volumes(x, q)
    assert zero_fill.min() < SDF_BAND - 1  # corners rotated in from outside: zeros ("surface")
    filled = rotate_volumes(x, q, background=SDF_BAND)
    torch.testing.assert_close(filled, x)


def test_rotated_sdf_of_a_mesh_keeps_its_far_field():
    mesh_sdf = voxelize(tetris_t_mesh(), 12, representation="sdf").astype(np.float32)
    x = torch.from_numpy(mesh_sdf)[None, None]
    q = torch.tensor(rotation_about_z(np.deg2rad(45)), dtype=torch.float32)
    out = rotate_volumes(x, q, background=SDF_BAND)
    corner = out[0, 0, 0, 0, :]
    assert torch.all(corner == SDF_BAND)  # outside, far from the surface, as before the rotation
    assert out.min() < 0  # the inside survives


def test_augmentation_passes_the_background_through():
    x = torch.full((2, 1, 8, 8, 8), SDF_BAND)
    out = augment_batch(x, "so3", np.random.default_rng(0), background=SDF_BAND)
    torch.testing.assert_close(out, x)


def test_padding_and_safe_size_use_the_background():
    v = np.full((1, 10, 10, 10), SDF_BAND, np.float32)
    v[0, 4:6, 4:6, 4:6] = -1.0  # a small object in the middle
    assert rotation_safe_size(v, SDF_BAND) == 10  # only the object counts as occupied
    assert rotation_safe_size(v) > 10  # read as occupancy, the far field fills the grid
    padded = pad_volumes(v, 14, fill=SDF_BAND)
    assert padded.shape == (1, 14, 14, 14) and padded[0, 0, 0, 0] == SDF_BAND


def tetris_t_mesh():
    from vol3d.data.builtin import tetris_meshes

    return next(s.mesh for s in tetris_meshes() if s.label == "T")
