"""Reusable numerical checks of invariance (in the spirit of ``e3nn.util.test``).

All functions take plain models ``(B, C, X, Y, Z) -> (B, K)`` and tensors; the transformations are
(3, 3) matrices in vol3d coordinates, applied with :func:`vol3d.transforms.rotate_volumes`.
"""

from __future__ import annotations

import numpy as np
import torch

from .rotations import cube_rotations, cube_symmetries
from .transforms import rotate_volumes


def cube_rotations_of_volume(x: torch.Tensor, reflections: bool = False):
    """``[(R, x rotated by R)]`` for the 24 cube rotations (48 with reflections), exact."""
    mats = cube_symmetries() if reflections else cube_rotations()
    return [(m, rotate_volumes(x, m)) for m in mats]


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max |a - b| / max |a|`` (the scale of the reference output)."""
    return float((a - b).abs().max() / a.abs().max().clamp_min(1e-12))


@torch.no_grad()
def invariance_error(model, x: torch.Tensor, transforms, mode: str = "bilinear") -> float:
    """Largest relative change of ``model``'s output when the input is transformed.

    ``transforms``: matrices ``(n, 3, 3)`` (or a list of (3, 3)); each is applied to the whole batch.
    Returns ``max_R max|f(R x) - f(x)| / max|f(x)|``.
    """
    ref = model(x)
    errors = [relative_error(ref, model(rotate_volumes(x, np.asarray(m), mode=mode))) for m in transforms]
    return max(errors)


@torch.no_grad()
def normalized_invariance_error(model, x: torch.Tensor, transforms, mode: str = "bilinear") -> float:
    """Invariance error relative to the model's sensitivity to its input:
    ``max_R mean_i |f(R x_i) - f(x_i)| / mean_{i != j} |f(x_i) - f(x_j)|`` (``x`` needs B >= 2).

    Unlike :func:`invariance_error` it is not diluted by a large constant output (biases), so
    models of different kinds compare fairly under interpolated rotations.
    """
    ref = model(x)
    n = len(ref)
    spread = torch.cdist(ref, ref).sum() / (n * (n - 1))
    errors = [float((model(rotate_volumes(x, np.asarray(m), mode=mode)) - ref).norm(dim=-1).mean() / spread)
              for m in transforms]
    return max(errors)


def gaussian_blobs(n: int, resolution: int, blobs: int = 4, sigma: float = 2.0, seed: int = 0) -> torch.Tensor:
    """``(n, 1, R, R, R)`` smooth test volumes: sums of ``blobs`` isotropic Gaussians at random
    positions within the inscribed ball (so rotations keep them inside the grid)."""
    g = torch.Generator().manual_seed(seed)
    r = resolution
    axis = torch.arange(r, dtype=torch.float32) - (r - 1) / 2
    pts = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1)  # (R, R, R, 3)
    centres = (torch.rand(n, blobs, 3, generator=g) - 0.5) * (r / 2.5)
    weights = torch.rand(n, blobs, generator=g) + 0.5
    d2 = ((pts[None, None] - centres[:, :, None, None, None]) ** 2).sum(-1)  # (n, blobs, R, R, R)
    return (weights[..., None, None, None] * torch.exp(-d2 / (2 * sigma ** 2))).sum(1, keepdim=True)


# the two chiral tetrominoes (mirror images of each other under x -> -x), as unit cubes
CHIRAL_PIECES = {
    "chiral_left": [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 1, 1)],
    "chiral_right": [(0, 0, 0), (-1, 0, 0), (0, 1, 0), (0, 1, 1)],
}


def polycube_volume(cubes, resolution: int, scale: int = 3) -> torch.Tensor:
    """A ``(1, 1, R, R, R)`` volume with each unit cube of ``cubes`` as a ``scale^3`` block of ones,
    the piece centred (its bounding box centre at the grid centre, to within half a voxel)."""
    c = np.asarray(cubes, dtype=np.int64)
    c = c - c.min(0)
    vol = torch.zeros(resolution, resolution, resolution)
    extent = (c.max(0) + 1) * scale
    offset = (resolution - extent) // 2
    for cube in c:
        lo = offset + cube * scale
        vol[lo[0]:lo[0] + scale, lo[1]:lo[1] + scale, lo[2]:lo[2] + scale] = 1.0
    return vol[None, None]


#: the options of the tiny models used by the test suite (fast to build and run)
TINY = dict(widths=(24, 48), kernel_sizes=(3, 3), L=1, pool_features=8, head=(16,))
#: the options of the tiny reference model (``escnn_se3`` with every width scaled down)
TINY_REFERENCE = dict(multiplicity=0.1)


def tiny_model(group: str, seed: int = 0, **options):
    """A small eval-mode model of ``group`` with warmed-up (non-trivial) batch-norm statistics,
    built once per process and option set (treat it as read-only). With
    ``architecture="escnn_se3"`` in ``options``: that reference model with ``TINY_REFERENCE``."""
    key = (group, seed, tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items())))
    if key not in _TINY_CACHE:
        from .models import build_model

        torch.manual_seed(seed)
        tiny = TINY if options.get("architecture", "vol3d") == "vol3d" else TINY_REFERENCE
        model = build_model(group, num_classes=5, **{**tiny, **options})
        with torch.no_grad():
            for _ in range(2):  # move the running statistics away from (0, 1)
                model(gaussian_blobs(4, 11, seed=seed) * 3 + 0.5)
        _TINY_CACHE[key] = model.eval()
    return _TINY_CACHE[key]


_TINY_CACHE: dict = {}
