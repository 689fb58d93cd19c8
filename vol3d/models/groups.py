"""The symmetry groups of vol3d's steerable models, as escnn objects.

Each group name maps to an escnn ``GSpace3D`` (the group acting on R^3) plus the pieces the
models need from it:

* the *band-limited* irreps of the hidden features (``L`` for the continuous groups; all irreps for
  the finite ones, whose Fourier transform is exact),
* the *spectral* representation ``rho = (+)_l rho_l^(d_l)`` (every irrep ``rho_l`` repeated ``d_l``
  times): a field of this type holds the Fourier coefficients of a function on the group,
* a *grid* of group elements on which such functions are sampled, closed under the cube's
  symmetries that the group contains, so that sampling commutes exactly with those symmetries,
* the Fourier matrices ``A`` (grid -> samples) and ``A^+`` (samples -> coefficients).

==============  =====================  ============================================  ==========
name            escnn gspace           grid (default)                                exact grid
                                                                                     symmetries
==============  =====================  ============================================  ==========
``so3``         ``rot3dOnR3``          ``thomson_cube`` N: 24 N rotations            24
``o3``          ``flipRot3dOnR3``      ``thomson_cube`` N and inversions: 48 N       48
``octa``        ``octaOnR3``           the 24 group elements                         24
``full_octa``   ``fullOctaOnR3``       the 48 group elements                         48
``ico``         ``icoOnR3``            the 60 group elements                         12
``so2``         ``rot2dOnR3``          ``4 n`` rotations about z (multiples of 90°)  4
==============  =====================  ============================================  ==========

escnn points are ``(X, Y, Z)``; the models feed escnn its voxel layout ``(-Z, -Y, X)`` built from
vol3d's ``(x, y, z)`` volumes, so escnn's ``Z`` axis (the axis of ``so2``) is vol3d's vertical ``z``.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache

import numpy as np

from ..errors import UsageError

#: steerable groups (escnn) and the plain baseline
STEERABLE_GROUPS = ("so3", "o3", "octa", "full_octa", "ico", "so2")
MODEL_GROUPS = STEERABLE_GROUPS + ("cnn",)
CONTINUOUS = ("so3", "o3", "so2")


def check_group(group: str) -> str:
    if group not in MODEL_GROUPS:
        raise UsageError(f"unknown model group {group!r}; choose one of {', '.join(MODEL_GROUPS)}")
    return group


@lru_cache(maxsize=None)
def gspace(group: str, L: int = 2):
    """The escnn ``GSpace3D`` of ``group`` (cached: escnn objects are expensive and hashable)."""
    from escnn import gspaces

    check_group(group)
    if group == "so3":
        return gspaces.rot3dOnR3(maximum_frequency=max(L, 2))
    if group == "o3":
        return gspaces.flipRot3dOnR3(maximum_frequency=max(L, 2))
    if group == "so2":
        return gspaces.rot2dOnR3(n=-1, maximum_frequency=max(L, 2))
    if group == "octa":
        return gspaces.octaOnR3()
    if group == "full_octa":
        return gspaces.fullOctaOnR3()
    if group == "ico":
        return gspaces.icoOnR3()
    raise UsageError(f"group {group!r} has no escnn gspace")


def band_limited_irreps(group: str, L: int):
    """Irreps (escnn ids) of the hidden features: frequencies <= L, or all irreps of a finite group."""
    G = gspace(group, L).fibergroup
    if group in CONTINUOUS:
        return tuple(G.bl_irreps(L))
    return tuple(irr.id for irr in G.irreps())


@lru_cache(maxsize=None)
def spectral_representation(group: str, L: int):
    """``rho = (+)_l rho_l^(d_l / c_l)``: the band-limited regular representation, irreps in order.

    Its change of basis is the identity, so channel ``i`` of a field belongs to a known irrep
    (see :func:`irrep_layout`). ``d_l / c_l`` copies (``c_l`` = 1 for real irreps) make it the space of
    Fourier coefficients of a band-limited function on the group (``|G|`` dims for a finite group).
    """
    from escnn.group import directsum

    G = gspace(group, L).fibergroup
    irreps = []
    for irr_id in band_limited_irreps(group, L):
        irr = G.irrep(*irr_id)
        irreps += [irr] * (irr.size // irr.sum_of_squares_constituents)
    return directsum(irreps, name=f"spectral_{group}_L{L}")


def irrep_layout(group: str, L: int):
    """Per irrep copy of one spectral field: list of ``(start, size, is_trivial)``."""
    G = gspace(group, L).fibergroup
    out, start = [], 0
    for irr_id in spectral_representation(group, L).irreps:
        irr = G.irrep(*irr_id)
        out.append((start, irr.size, bool(irr.is_trivial())))
        start += irr.size
    return out


def default_grid_size(group: str, L: int) -> int:
    """The grid parameter ``N``: thomson_cube N ~ 2.5 dim(rho) / 24 (escnn's '2_96' for L=2); so2: 4n."""
    if group in ("so3", "o3"):
        dim = spectral_representation("so3", L).size
        return max(1, int(round(2.5 * dim / 24)))
    if group == "so2":
        return 4 * int(np.ceil((2 * L + 1) * 2.5 / 4))
    return 0


def group_grid(group: str, L: int, grid: int | None = None):
    """Elements of the group on which band-limited functions are sampled (closed under the cube's
    symmetries in the group: see the module table)."""
    G = gspace(group, L).fibergroup
    if group not in CONTINUOUS:
        return list(G.elements)
    n = default_grid_size(group, L) if grid is None else int(grid)
    if n < 1:
        raise UsageError(f"model option grid must be >= 1, got {grid}")
    if group == "so2":
        if n % 4:
            raise UsageError(f"model option grid for so2 must be a multiple of 4 (contain the 90° turns), got {n}")
        return G.grid(N=n, type="regular")
    return G.grid("thomson_cube", N=n)


def fourier_matrices(group: str, L: int, grid: int | None = None):
    """Fourier matrices of the spectral representation over the grid ``{g_1..g_S}``.

    ``A`` ``(S, D)``: row ``s`` is ``(rho(g_s) k)^T`` where ``k`` is the (normalized) coefficient
    vector of the delta function at the identity, so ``f(g_s) = A[s] @ f_hat`` samples the function
    with coefficients ``f_hat``; transforming ``f_hat -> rho(h) f_hat`` permutes the samples whenever
    ``h g_s`` stays on the grid. ``Ainv`` ``(D, S)`` is the regularized least-squares inverse
    ``(A^T A + 1e-8 I)^-1 A^T`` (escnn's ``FourierPointwise``). Returns float64 numpy arrays.
    """
    G = gspace(group, L).fibergroup
    rho = spectral_representation(group, L)
    blocks = []
    for irr_id in band_limited_irreps(group, L):
        irr = G.irrep(*irr_id)
        c = irr.size // irr.sum_of_squares_constituents
        blocks.append((np.eye(irr.size)[:, :c] * np.sqrt(irr.size)).T.reshape(-1))
    kernel = np.concatenate(blocks)
    kernel = kernel / np.linalg.norm(kernel)
    A = np.stack([rho(g) @ kernel for g in group_grid(group, L, grid)])
    Ainv = np.linalg.solve(A.T @ A + 1e-8 * np.eye(rho.size), A.T)
    return A, Ainv


def sphere_fourier_matrix(L: int, grid: int = 1):
    """``A`` ``(S, D)`` sampling band-limited functions on the sphere ``SO(3)/SO(2)`` (escnn's
    ``QuotientFourierELU`` with the ``thomson_cube`` sphere grid of ``24 grid`` points), and the
    escnn ``Representation`` of its coefficients. Used by the ``escnn_se3`` pooling."""
    from escnn import nn as enn

    gs = gspace("so3", L)
    G = gs.fibergroup
    pool = enn.QuotientFourierELU(gs, (False, -1), 1, irreps=G.bl_irreps(L),
                                  grid=G.sphere_grid(type="thomson_cube", N=grid))
    return pool.A.double().numpy(), pool.in_type.representations[0]


def grid_symmetries(group: str) -> np.ndarray:
    """The signed-permutation matrices ``(n, 3, 3)`` (vol3d coordinates) of the voxel grid that the
    group contains: the symmetries a model of this group is exactly invariant to."""
    from ..rotations import cube_rotations, cube_symmetries

    check_group(group)
    if group in ("so3", "octa"):
        return cube_rotations()
    if group in ("o3", "full_octa"):
        return cube_symmetries()
    rots = cube_rotations()
    if group == "so2":
        return rots[(rots[:, 2, 2] == 1)]
    if group == "cnn":
        return rots[:1]
    gs = gspace(group)
    mats = np.stack([np.asarray(gs.basespace_action(g)) for g in gs.fibergroup.elements])
    keep = [any(np.allclose(r, m, atol=1e-6) for m in mats) for r in rots]
    return rots[np.asarray(keep)]


_CLEBSCH_GORDAN: dict = {}


@contextmanager
def cached_clebsch_gordan():
    """Within the block, escnn's SO(3) Clebsch-Gordan tensors are memoized (per process).

    escnn recomputes the tensor of the same ``(l1, l2, J)`` for every basis element it samples,
    which dominates the build of a steerable convolution between reducible types: building
    ``escnn_se3`` at multiplicity 0.1 made 2,252 calls for 22 distinct triples, ~11 ms each with
    py3nj (the first build in a process took 27 s before, 9 s after). The values are those escnn
    computes; each caller gets its own copy.
    """
    from escnn.group.groups import so3group

    compute = so3group._clebsh_gordan_tensor_so3

    def cached(m: int, n: int, j: int):
        if (m, n, j) not in _CLEBSCH_GORDAN:
            _CLEBSCH_GORDAN[m, n, j] = compute(m, n, j)
        return _CLEBSCH_GORDAN[m, n, j].copy()

    so3group._clebsh_gordan_tensor_so3 = cached
    try:
        yield
    finally:
        so3group._clebsh_gordan_tensor_so3 = compute
