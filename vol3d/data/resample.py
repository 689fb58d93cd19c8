"""Change the resolution of volumes, and pad them so that any rotation keeps them inside the grid.

Both keep vol3d's grid geometry: an ``R``-grid covers the box ``[-0.5, R - 0.5]^3`` in index
coordinates with voxel ``(i, j, k)`` centred at ``(i, j, k)``; resampling maps that box onto the
new grid's box (``align_corners=False``), padding keeps the grid centre ``((R-1)/2,)*3`` fixed.

Resampling methods (``method=``):

``area``
    When downsampling, each output voxel is the average of the input over its box (a box filter:
    adaptive average pooling, exact averaging when ``R_in`` is a multiple of ``R_out``). This is
    the right filter for occupancy: the result is the covered fraction. When upsampling, ``area``
    falls back to ``trilinear`` (averaging over a box smaller than one voxel would be nearest).
``trilinear``
    Trilinear interpolation of the input at the output voxel centres.

Binary inputs (bool, or integer arrays holding only 0 and 1) stay binary: the resampled fraction
is thresholded at 0.5 and returned as uint8 ``{0, 1}``. Other integer inputs are rounded back to
their dtype; float inputs keep their dtype.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UsageError

METHODS = ("area", "trilinear")
_BATCH_VOXELS = 2**25  # float32 voxels per torch call (128 MB), bounds memory on 256^3 inputs


def is_binary(volumes: np.ndarray) -> bool:
    """Whether ``volumes`` is bool, or integer-valued with values in ``{0, 1}`` only."""
    volumes = np.asarray(volumes)
    if volumes.dtype == bool:
        return True
    return volumes.dtype.kind in "iu" and volumes.size > 0 and volumes.min() >= 0 and volumes.max() <= 1


def resample_volumes(volumes: np.ndarray, resolution: int, method: str = "area") -> np.ndarray:
    """Resample cubic volumes to another resolution.

    Args:
        volumes: ``(N, R, R, R)`` array (bool, integer or float).
        resolution: the output grid size ``S``.
        method: ``"area"`` (box filter when downsampling, trilinear when upsampling) or
            ``"trilinear"``; see the module docstring.

    Returns:
        ``(N, S, S, S)`` array: uint8 ``{0, 1}`` for binary inputs (thresholded at 0.5), else the
        input dtype. The input itself is returned when ``S == R``.
    """
    volumes = np.asarray(volumes)
    if method not in METHODS:
        raise UsageError(f"resample method must be one of {METHODS}, got {method!r}")
    if volumes.ndim != 4 or len(set(volumes.shape[1:])) != 1:
        raise UsageError(f"volumes must have shape (N, R, R, R), got {volumes.shape}")
    if resolution < 1:
        raise UsageError(f"resolution must be >= 1, got {resolution}")
    size = volumes.shape[1]
    if resolution == size:
        return volumes
    binary = is_binary(volumes)
    mode = "area" if method == "area" and resolution < size else "trilinear"
    step = max(1, _BATCH_VOXELS // max(size, resolution) ** 3)
    parts = [_interpolate(volumes[i:i + step], resolution, mode) for i in range(0, len(volumes), step)]
    out = np.concatenate(parts) if parts else np.zeros((0,) + (resolution,) * 3, np.float32)
    if binary:
        return (out >= 0.5).astype(np.uint8)
    if volumes.dtype.kind in "iu":
        return np.rint(out).astype(volumes.dtype)
    return out.astype(volumes.dtype)


def _interpolate(volumes: np.ndarray, resolution: int, mode: str) -> np.ndarray:
    """``(n, R, R, R)`` -> ``(n, S, S, S)`` float32 with ``F.interpolate``."""
    x = torch.from_numpy(volumes.astype(np.float32)).unsqueeze(1)
    kwargs = {"align_corners": False} if mode == "trilinear" else {}
    return F.interpolate(x, size=(resolution,) * 3, mode=mode, **kwargs)[:, 0].numpy()


def occupied_radius(volumes: np.ndarray, background: float = 0.0) -> float:
    """Radius about the grid centre of the smallest sphere holding every occupied voxel (cube).

    ``max |p - c| + sqrt(3)/2`` over the centres ``p`` of voxels that are non-zero in any of the
    volumes, with ``c = ((R-1)/2,)*3``; the ``sqrt(3)/2`` (half a voxel diagonal) covers the whole
    voxel cube. 0 when nothing is occupied.

    Args:
        volumes: ``(N, R, R, R)`` array; a value other than ``background`` means occupied.
    """
    volumes = np.asarray(volumes)
    occupied = np.argwhere((volumes != background).any(axis=0))
    if len(occupied) == 0:
        return 0.0
    centre = (volumes.shape[1] - 1) / 2
    return float(np.sqrt(((occupied - centre) ** 2).sum(axis=1).max()) + math.sqrt(3) / 2)


def rotation_safe_size(volumes: np.ndarray, background: float = 0.0) -> int:
    """The smallest grid size ``S >= R`` that holds every occupied voxel under any rotation.

    ``S = ceil(2 * occupied_radius(volumes))`` (the bounding sphere's diameter; an ``S``-grid reaches
    ``S/2`` from its centre), raised to ``R`` if smaller and by one if needed so that ``S - R`` is
    even (symmetric padding keeps the centre exactly).
    """
    size = np.shape(volumes)[1]
    needed = max(size, math.ceil(2 * occupied_radius(volumes, background) - 1e-9))
    return needed + (needed - size) % 2


def pad_volumes(volumes: np.ndarray, size: int, fill: float = 0.0) -> np.ndarray:
    """Pad ``(N, R, R, R)`` volumes with ``fill`` (the background), symmetrically, to ``(N, S, S, S)``
    (``S - R`` even)."""
    volumes = np.asarray(volumes)
    extra = size - volumes.shape[1]
    if extra < 0 or extra % 2:
        raise UsageError(f"cannot pad a {volumes.shape[1]}-grid symmetrically to {size}")
    half = extra // 2
    return np.pad(volumes, [(0, 0)] + [(half, half)] * 3, constant_values=fill)


def pad_for_rotation(volumes: np.ndarray) -> np.ndarray:
    """Pad volumes so that any rotation about the grid centre keeps every occupied voxel inside.

    Args:
        volumes: ``(N, R, R, R)``; non-zero means occupied. One size is used for the whole set
            (computed from the union of occupied voxels), so all outputs share a resolution.

    Returns:
        ``(N, S, S, S)`` with ``S = rotation_safe_size(volumes)`` (``S == R`` when already safe).
    """
    return pad_volumes(volumes, rotation_safe_size(volumes))
