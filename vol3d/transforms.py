"""The one batched volume-rotation routine of vol3d.

Convention (as :mod:`vol3d.rotations`): a batch ``x`` is ``(B, C, X, Y, Z)``; voxel ``(i, j, k)`` has
centred position ``p = (i, j, k) - ((X-1)/2, (Y-1)/2, (Z-1)/2)``. Rotating by ``R`` moves the content
at ``p`` to ``R @ p``: ``out(q) = x(R^-1 q)``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .errors import UsageError

MODES = ("bilinear", "nearest")
PADDINGS = ("zeros", "border", "reflection")


def _as_matrices(rotations, batch: int) -> torch.Tensor:
    r = torch.as_tensor(np.asarray(rotations) if not torch.is_tensor(rotations) else rotations,
                        dtype=torch.float64)
    if r.shape == (3, 3):
        r = r.expand(batch, 3, 3)
    if r.dim() != 3 or r.shape[1:] != (3, 3) or r.shape[0] != batch:
        raise UsageError(f"rotations must be (3, 3) or ({batch}, 3, 3), got {tuple(r.shape)}")
    return r


def signed_permutation(matrix) -> tuple[list[int], list[int]] | None:
    """``(perm, signs)`` with ``R[perm[j], j] = signs[j]`` if ``R`` is a signed permutation, else None."""
    m = np.asarray(matrix, dtype=np.float64)
    r = np.round(m)
    if not np.allclose(m, r, atol=1e-6) or not (np.abs(r).sum(0) == 1).all() or not (np.abs(r).sum(1) == 1).all():
        return None
    perm = [int(np.nonzero(r[:, j])[0][0]) for j in range(3)]
    return perm, [int(r[perm[j], j]) for j in range(3)]


def permute_volume(x: torch.Tensor, perm, signs) -> torch.Tensor:
    """Exact rotation/reflection of ``(..., X, Y, Z)`` by the signed permutation ``R[perm[j], j] = signs[j]``:
    input axis ``j`` becomes output axis ``perm[j]``, reversed when ``signs[j] < 0``."""
    lead = x.dim() - 3
    inverse = [0, 0, 0]
    for j, a in enumerate(perm):
        inverse[a] = j
    y = x.permute(*range(lead), *(lead + j for j in inverse))
    flips = [lead + perm[j] for j in range(3) if signs[j] < 0]
    return y.flip(flips) if flips else y


def rotate_volumes(x: torch.Tensor, rotations, mode: str = "bilinear", padding: str = "zeros",
                   background: float = 0.0) -> torch.Tensor:
    """Rotate a batch of volumes ``x`` ``(B, C, X, Y, Z)`` by ``rotations`` ``(B, 3, 3)`` or ``(3, 3)``.

    Signed permutations (the 48 cube symmetries, identity included) take an exact path (axis
    permutations and flips: no interpolation), also within a batch that mixes them with other
    rotations. Others are resampled with ``grid_sample``
    (``mode`` bilinear = trilinear, or nearest; ``padding`` zeros | border | reflection for
    content rotated in from outside the grid; with ``zeros`` the fill is ``background``, e.g.
    :func:`vol3d.data.voxelize.background_value` of the representation). Returns a tensor of the
    same shape and dtype.
    """
    if not torch.is_tensor(x) or x.dim() != 5:
        raise UsageError(f"rotate_volumes expects a (B, C, X, Y, Z) tensor, got {getattr(x, 'shape', type(x))}")
    if mode not in MODES:
        raise UsageError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if padding not in PADDINGS:
        raise UsageError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
    mats = _as_matrices(rotations, x.shape[0])
    perms = [signed_permutation(m) for m in mats.numpy()]
    exact = [i for i, p in enumerate(perms) if p is not None]
    if len(exact) == len(perms) and all(p == perms[0] for p in perms):
        return permute_volume(x, *perms[0]).contiguous()
    if not exact:
        return _resample(x, mats, mode, padding, background)
    out = torch.empty_like(x)
    for i in exact:
        out[i] = permute_volume(x[i], *perms[i])
    rest = [i for i, p in enumerate(perms) if p is None]
    if rest:
        out[rest] = _resample(x[rest], mats[rest], mode, padding, background)
    return out


def _resample(x, mats, mode, padding, background=0.0):
    """``out(q) = x(R^T q)`` by ``affine_grid`` + ``grid_sample`` (align_corners=True, so normalized
    coordinate ``n_a = p_a / h_a`` with half-extent ``h_a = (N_a - 1) / 2``). grid_sample orders the
    coordinates (Z, Y, X) (last axis first), so theta = P H^-1 R^T H P with the reversal P.
    grid_sample fills with zeros: a non-zero ``background`` is subtracted first and added back."""
    sizes = torch.tensor(x.shape[2:], dtype=torch.float64)
    half = torch.diag(((sizes - 1) / 2).clamp_min(0.5))
    rev = torch.eye(3, dtype=torch.float64).flip(0)
    theta = rev @ torch.linalg.inv(half) @ mats.transpose(1, 2) @ half @ rev
    theta = torch.cat([theta, torch.zeros(x.shape[0], 3, 1, dtype=torch.float64)], dim=2)
    grid = F.affine_grid(theta.to(x.dtype if x.is_floating_point() else torch.float32).to(x.device),
                         list(x.shape), align_corners=True)
    xf = x if x.is_floating_point() else x.float()
    if background:
        xf = xf - background
    out = F.grid_sample(xf, grid, mode=mode, padding_mode=padding, align_corners=True)
    if background:
        out = out + background
    return out.to(x.dtype) if not x.is_floating_point() else out
