"""Rotation augmentation of training batches, on the training device.

``augment.rotation`` names the group the rotations come from (see :mod:`vol3d.rotations`):
``none``, ``z`` (about the vertical axis), ``so3`` (uniform), ``o3`` (``so3`` and the point
reflection), ``octa`` (the 24 rotations of the cube). Every sample of a batch gets its own rotation,
applied by :func:`vol3d.transforms.rotate_volumes`, the routine evaluation uses too: cube
rotations are exact axis permutations, other rotations are trilinear (``augment.mode``) resampling.
The built-in data is voxelized into the grid's inscribed sphere, so no rotation moves an occupied
voxel out of the grid; for imported data see ``data.pad_for_rotation``.

Rotated copies stored in the dataset (``vol3d voxelize --rotations K``) are used by the sampler
(:class:`vol3d.training.data.EpochSampler`), before this step.

The random rotations of batch ``step`` of epoch ``epoch`` on process ``rank`` come from
``default_rng([seed, epoch, step, rank])``: no generator state to carry, so a resumed run draws
the same rotations as an uninterrupted one.
"""

from __future__ import annotations

import numpy as np
import torch

from ..rotations import sample_rotations
from ..transforms import rotate_volumes


def batch_rng(seed: int, epoch: int, step: int, rank: int = 0) -> np.random.Generator:
    """The generator of the augmentation of one batch (see the module docstring)."""
    return np.random.default_rng([seed, epoch, step, rank, 0xA06])


def augment_batch(x: torch.Tensor, rotation: str, rng: np.random.Generator, *, mode: str = "bilinear",
                  padding: str = "zeros", background: float = 0.0) -> torch.Tensor:
    """``x`` ``(B, C, X, Y, Z)`` with sample ``b`` rotated by a random element of group ``rotation``.

    ``rotation == "none"`` returns ``x`` itself. The rotation is done where ``x`` lives (the
    training device). ``background`` fills what rotates in from outside the grid (see
    :func:`vol3d.transforms.rotate_volumes`).
    """
    if rotation == "none" or len(x) == 0:
        return x
    return rotate_volumes(x, sample_rotations(len(x), rotation, rng), mode=mode, padding=padding,
                          background=background)
