"""Meshes to voxel grids: normalization, and the ``solid``, ``surface`` and ``sdf`` representations.

Axis convention
---------------
A volume ``v[i, j, k]`` has axis 0 = x, axis 1 = y, axis 2 = z of the mesh (z up for ModelNet).
Voxel ``(i, j, k)`` is the unit cube centred at *index coordinates* ``(i, j, k)``; the grid spans
``[-0.5, R - 0.5]^3`` and its centre is ``((R - 1) / 2,) * 3``. vol3d's models convert this to
escnn's ``(-Z, -Y, X)`` layout internally; users only ever see ``(x, y, z)``.

Normalization (the 4x4 ``transform`` maps homogeneous mesh coordinates to index coordinates)
---------------------------------------------------------------------------------------------
Let ``c`` be the centre of the axis-aligned bounding box of the input mesh's face vertices, ``Q``
the optional ``rotation`` (any orthogonal 3x3, applied to the *centred* mesh) and ``h = (R-1)/2``.

- ``fit="sphere"`` (default): ``x -> s * Q (x - c) + h`` with ``s = (R/2 - 1) / max_v |v - c|``,
  so every vertex lies within ``R/2 - 1`` voxels of the grid centre. ``c`` and ``s`` do not depend
  on ``Q``: the same object gets the same scale at every rotation, and no rotation can push it
  out of the grid. Every occupied voxel (whose cube touches the surface) has its centre within
  ``R/2 - 1 + sqrt(3)/2 < R/2`` of the grid centre, i.e. inside the grid's inscribed sphere.
- ``fit="cube"`` (binvox / ModelNet convention): rotate the centred mesh, then centre its bounding
  box again (``c'``) and scale its longest side to the whole grid: ``x -> s (Q (x - c) - c') + h``
  with ``s = R / max(extent)``. The scale depends on ``Q``.

Representations
---------------
- ``surface``: voxels whose closed cube intersects a triangle (the exact separating-axis
  triangle/box test of Akenine-Moller), uint8 {0, 1}.
- ``solid``: surface voxels OR voxels whose centre is inside. "Inside" is a vote over rays along
  +-x, +-y, +-z through voxel centres: along one axis, with ``W-`` (``W+``) the signed number of
  surface crossings before (after) the centre, the ray says inside iff ``W- != 0 and W+ != 0``;
  the centre is inside iff at least 2 of the 3 axes say so. For closed, consistently oriented
  meshes ``W- = W+`` is the winding number, so this is exactly the nonzero-winding rule (overlapping
  parts are united). For open meshes (holes, missing faces) the ray leaving through a hole sees no
  crossing on one side and abstains, and the other axes decide; a single flipped face changes a
  winding count but rarely makes one side zero. No hole filling is involved. Repeated faces
  (double-sided ModelNet meshes list every face twice, once per orientation, which would cancel
  every crossing) are dropped first (:func:`unique_faces`). uint8 {0, 1}. On watertight meshes
  the centre test equals ``mesh.contains`` at the voxel centres (the surface shell is extra).
- ``fraction``: the fraction of each voxel's cube that lies inside, in ``[0, 1]`` (partial-volume
  occupancy), float16: the ray vote below at the centres of an ``s^3`` sub-grid of every voxel
  (``s = FRACTION_SUBSAMPLES``, fewer when ``sR`` would exceed ``FRACTION_MAX_GRID``), averaged; the
  sub-grid is turned by a fixed generic rotation, so that axis-aligned faces are sampled without
  a systematic offset.
  Unlike ``solid``, whose surface shell is thicker on an oblique face than on an axis-aligned one,
  its sum is the object's volume in every pose (within the sub-grid's sampling error), so an
  object voxelized in a new pose looks like the rotated voxelization of the old one: the
  representation for rotation-robustness experiments. Thin parts below a voxel give fractions
  below 1 instead of vanishing or being dilated.
- ``sdf``: truncated signed distance from voxel centres to the surface in voxel units, float16:
  the exact point-triangle distance, clipped to ``SDF_BAND`` voxels, negative where the centre is
  inside by the ray vote above (so a thin open sheet is positive on both sides). Slower than the
  occupancies: every (triangle, voxel within the band of its bounding box) pair is evaluated.

Exactness: all tests run in grid-centred coordinates (``index - h``, exact half-integers), with a
symbolic perturbation for rays through edges or vertices, so a rotation by a cube symmetry gives
exactly the permuted voxel grid of the unrotated mesh (up to ties on open boundaries), except for
``fraction``, whose turned sub-grid is not a cube symmetry: there the values agree to within the
sub-grid's sampling error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from ..errors import MeshError, UsageError
from ..rotations import quaternion_to_matrix
from .meshes import check_mesh, load_mesh

__all__ = [
    "REPRESENTATIONS",
    "FITS",
    "SDF_BAND",
    "background_value",
    "voxelize",
    "normalize_mesh",
    "unique_faces",
    "surface_occupancy",
    "solid_occupancy",
    "inside_fraction",
    "fraction_subsamples",
    "inside_votes",
    "truncated_sdf",
]

REPRESENTATIONS = ("solid", "surface", "fraction", "sdf")
FITS = ("sphere", "cube")
SDF_BAND = 3.0  # sdf truncation, in voxels
FRACTION_SUBSAMPLES = 4  # fraction: s^3 inside tests per voxel
FRACTION_MAX_GRID = 160  # fraction: s is lowered so that sR stays within this (memory, time)
SPHERE_MARGIN = 1.0  # fit="sphere": vertices lie within R/2 - SPHERE_MARGIN of the grid centre
_EPS = 1e-9  # widening of candidate ranges; the exact tests decide
_CHUNK = 1 << 19  # (triangle, candidate) pairs per vectorized chunk: bounds memory to ~100 MB


def voxelize(
    mesh_or_path,
    resolution: int = 32,
    representation: str = "solid",
    fit: str = "sphere",
    rotation=None,
    return_transform: bool = False,
):
    """Voxelize a triangle mesh on an ``R^3`` grid (see the module docstring for the math).

    Args:
        mesh_or_path: a :class:`trimesh.Trimesh`, a path to any mesh file, or ``(vertices (V, 3),
            faces (F, 3))`` arrays.
        resolution: ``R``, the grid size (>= 4).
        representation: ``"solid"`` | ``"surface"`` (uint8 {0, 1}) | ``"fraction"`` (float16 in
            [0, 1]) | ``"sdf"`` (float16, voxels).
        fit: ``"sphere"`` (rotation-safe, default) or ``"cube"`` (binvox convention).
        rotation: optional orthogonal ``(3, 3)`` matrix ``Q`` applied to the centred mesh
            (``p -> Q @ p``), exactly.
        return_transform: also return the ``(4, 4)`` float64 matrix ``T`` with
            ``T @ [x, y, z, 1] = [i, j, k, 1]`` (mesh coordinates to index coordinates).

    Returns:
        ``volume (R, R, R)`` indexed ``[x, y, z]``, or ``(volume, T)``.

    Raises:
        MeshError: the mesh is empty, a point cloud, degenerate or unreadable.
        UsageError: bad ``resolution`` / ``representation`` / ``fit`` / ``rotation``.
    """
    resolution = _check_args(resolution, representation, fit)
    rotation = _check_rotation(rotation)
    vertices, faces = _as_arrays(mesh_or_path)
    faces = unique_faces(faces)
    grid_vertices, transform = normalize_mesh(vertices, faces, resolution, fit, rotation)
    corners = np.take(np.ascontiguousarray(grid_vertices.T), faces.T, axis=1)  # (axis, corner, F)
    if representation == "surface":
        volume = _surface(corners, resolution).astype(np.uint8)
    elif representation == "solid":
        volume = _solid(corners, resolution).astype(np.uint8)
    elif representation == "fraction":
        volume = _fraction(corners, resolution)
    else:
        volume = _sdf(corners, resolution, SDF_BAND)
    return (volume, transform) if return_transform else volume


def background_value(representation: str) -> float:
    """The value of empty space in a volume of ``representation``: 0 for the occupancies, the
    truncation ``+SDF_BAND`` for ``sdf`` (far outside the surface). Padding and rotations fill
    with it: a zero in an sdf volume would mean "on the surface"."""
    return SDF_BAND if representation == "sdf" else 0.0


def _check_args(resolution, representation, fit) -> int:
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 4:
        raise UsageError(f"resolution: expected an integer >= 4, got {resolution!r}")
    if representation not in REPRESENTATIONS:
        raise UsageError(f"representation: expected one of {', '.join(REPRESENTATIONS)}, got {representation!r}")
    if fit not in FITS:
        raise UsageError(f"fit: expected one of {', '.join(FITS)}, got {fit!r}")
    return int(resolution)


def _check_rotation(rotation) -> np.ndarray:
    if rotation is None:
        return np.eye(3)
    q = np.asarray(rotation, dtype=np.float64)
    if q.shape != (3, 3) or not np.isfinite(q).all():
        raise UsageError(f"rotation: expected a finite (3, 3) matrix, got shape {q.shape}")
    if np.abs(q @ q.T - np.eye(3)).max() > 1e-6:
        raise UsageError("rotation: matrix is not orthogonal (Q @ Q.T != I)")
    return q


def _as_arrays(mesh_or_path) -> tuple[np.ndarray, np.ndarray]:
    """Validated plain ``vertices (V, 3) float64`` and ``faces (F, 3) int64`` of any accepted input."""
    if isinstance(mesh_or_path, (str, Path)):
        mesh = load_mesh(mesh_or_path)
    elif isinstance(mesh_or_path, trimesh.Trimesh):
        mesh = check_mesh(mesh_or_path, "<mesh>")
    elif isinstance(mesh_or_path, (tuple, list)) and len(mesh_or_path) == 2:
        vertices, faces = (np.asarray(a) for a in mesh_or_path)
        if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
            raise MeshError("<arrays>", f"expected vertices (V, 3) and faces (F, 3), got {vertices.shape} and {faces.shape}")
        if faces.size and not np.issubdtype(faces.dtype, np.integer):
            raise MeshError("<arrays>", f"faces must be integers, got {faces.dtype}")
        mesh = check_mesh(trimesh.Trimesh(vertices, faces, process=False), "<arrays>")
    else:
        raise UsageError(f"mesh_or_path: expected a Trimesh, a path or (vertices, faces), got {type(mesh_or_path).__name__}")
    # np.array (not the TrackedArray subclass): plain ndarrays keep every numpy op cheap
    return np.array(mesh.vertices, dtype=np.float64), np.array(mesh.faces, dtype=np.int64)


def unique_faces(faces: np.ndarray) -> np.ndarray:
    """Drop repeated faces (same vertex indices in any order), keeping the first occurrence.

    Many ModelNet meshes are double-sided: each face also appears with the opposite orientation.
    Their signed ray crossings would cancel and the inside test would see no surface at all.
    Faces are compared by vertex index, so vertices should be merged (as :func:`load_mesh` and
    ``trimesh.Trimesh(..., process=True)`` do).
    """
    lo = np.minimum(np.minimum(faces[:, 0], faces[:, 1]), faces[:, 2])
    hi = np.maximum(np.maximum(faces[:, 0], faces[:, 1]), faces[:, 2])
    mid = faces[:, 0] + faces[:, 1] + faces[:, 2] - lo - hi
    n = int(hi.max()) + 1 if len(faces) else 1
    if n < 2**21:  # n**3 < 2**63: one int64 key per face
        _, first = np.unique((lo * n + mid) * n + hi, return_index=True)
    else:
        _, first = np.unique(np.stack([lo, mid, hi], 1), axis=0, return_index=True)
    return faces if len(first) == len(faces) else faces[np.sort(first)]


def normalize_mesh(vertices: np.ndarray, faces: np.ndarray, resolution: int, fit: str = "sphere", rotation=None):
    """Centre, rotate and scale a mesh into grid-centred voxel coordinates.

    Args:
        vertices: ``(V, 3)`` mesh coordinates; faces ``(F, 3)``: only vertices used by a face count.
        resolution: ``R``; ``fit`` and ``rotation`` as in :func:`voxelize`.

    Returns:
        ``(grid_vertices (V, 3), T (4, 4))``: vertices in *grid-centred* coordinates (index
        coordinates minus ``(R-1)/2``) and ``T`` mesh -> index coordinates. The rotation is applied
        to the centred vertices before scaling, so for a signed permutation ``Q`` the result is
        exactly the permuted/negated unrotated result (what makes cube rotations exact).
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    q = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
    used = np.zeros(len(vertices), dtype=bool)
    used[np.asarray(faces).reshape(-1)] = True
    points = vertices[used] if not used.all() else vertices
    centre = 0.5 * (points.min(0) + points.max(0))
    g = (vertices - centre) @ q.T
    if fit == "sphere":
        scale = (resolution / 2 - SPHERE_MARGIN) / np.sqrt(((points - centre) ** 2).sum(1).max())
        shift = np.zeros(3)
    else:
        used_g = g[used]
        shift = 0.5 * (used_g.min(0) + used_g.max(0))
        scale = resolution / np.ptp(used_g, axis=0).max()
        g = g - shift
    transform = np.eye(4)
    transform[:3, :3] = scale * q
    transform[:3, 3] = scale * (-(q @ centre) - shift) + (resolution - 1) / 2
    return g * scale, transform


def _corners(tris) -> np.ndarray:
    """``(F, 3, 3)`` [face, corner, axis] -> contiguous ``(3, 3, F)`` [axis, corner, face]."""
    return np.ascontiguousarray(np.asarray(tris, dtype=np.float64).transpose(2, 1, 0))


# ----------------------------------------------------------------------------------------------
# Small vectorized helpers. Triangles are kept as contiguous "structure of arrays" (axis, corner,
# face) and gathered with np.take (contiguous output; fancy indexing there is ~3x slower and
# leaves strided arrays), and reductions over 3 corners are written out (numpy reductions over a
# length-3 axis are ~10x slower than two np.minimum calls).


def _min3(x):
    return np.minimum(np.minimum(x[0], x[1]), x[2])


def _max3(x):
    return np.maximum(np.maximum(x[0], x[1]), x[2])


def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ragged expansion: ``owner[n]`` and ``local[n]`` for ``n < counts.sum()`` (local = 0..count-1)."""
    owner = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return owner, np.arange(owner.size) - starts[owner]


def _chunks(counts: np.ndarray, budget: int = _CHUNK):
    """Slices of consecutive items whose summed ``counts`` stay near ``budget`` (>= 1 item each)."""
    total = int(counts.sum())
    if total <= budget:
        if total:
            yield slice(0, len(counts))
        return
    ends = np.searchsorted(np.cumsum(counts), np.arange(budget, total + budget, budget), "right")
    start = 0
    for end in np.unique(np.maximum(ends, 1)):
        end = max(int(end), start + 1)
        if start < len(counts):
            yield slice(start, min(end, len(counts)))
        start = end


def _sum3(a, b, c):
    """``a + b + c`` rounded independently of the order and sign of the terms (exact symmetry)."""
    hi, lo = np.maximum(a, b), np.minimum(a, b)
    mid = np.maximum(lo, np.minimum(hi, c))
    return (np.maximum(hi, c) + np.minimum(lo, c)) + mid


def _index_range(lo, hi, half: float, resolution: int):
    """Voxels whose (closed) cubes of half-size ``half`` meet ``[lo, hi]`` (grid-centred coords),
    clipped to the grid: ``(first, last)`` integer arrays (widened by _EPS: the exact test decides)."""
    h = (resolution - 1) / 2
    first = np.maximum(np.ceil(lo + (h - half - _EPS)), 0).astype(np.int64)
    last = np.minimum(np.floor(hi + (h + half + _EPS)), resolution - 1).astype(np.int64)
    return first, last


def _cross(a, b):
    """Cross product of ``(3, ...)`` component arrays."""
    return np.stack([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


# cyclic axis orders (u, v, w), w last: they keep handedness, so orientation signs agree for all w
_CYCLIC = ((1, 2, 0), (2, 0, 1), (0, 1, 2))


# ----------------------------------------------------------------------------------------------
# surface


def surface_occupancy(tris, resolution: int) -> np.ndarray:
    """Boolean ``(R, R, R)``: voxels whose closed unit cube intersects a triangle.

    Args:
        tris: ``(F, 3, 3)`` triangles ``[face, corner, axis]`` in grid-centred coordinates
            (voxel ``(i, j, k)`` is centred at ``(i, j, k) - (R - 1) / 2``).

    Candidates: for each triangle, the voxel columns along its dominant normal axis ``w`` that its
    bounding box covers, and in each column the (at most 4) voxels the triangle's plane can reach
    over the column's square. Each (triangle, voxel) candidate then gets the exact 13-axis
    separating-axis test. Triangles inside a single voxel skip the test.
    """
    return _surface(_corners(tris), resolution)


def _surface(c: np.ndarray, R: int) -> np.ndarray:
    occ = np.zeros(R**3, dtype=bool)
    h = (R - 1) / 2
    lo, hi = _min3(c.transpose(1, 0, 2)), _max3(c.transpose(1, 0, 2))  # (3 axes, F)
    first, last = _index_range(lo, hi, 0.5, R)
    nonempty = (first <= last).all(0)
    # strictly inside one voxel (which is in the grid): overlap without a test
    single = nonempty & (np.floor(lo + (h + 0.5 - _EPS)) == np.floor(hi + (h + 0.5 + _EPS))).all(0)
    occ[_flat(first[:, single], (R * R, R, 1))] = True
    sel = np.flatnonzero(nonempty & ~single)
    if sel.size == 0:
        return occ.reshape(R, R, R)
    c, first, last = np.take(c, sel, axis=2), np.take(first, sel, axis=1), np.take(last, sel, axis=1)
    normals = _cross(c[:, 1] - c[:, 0], c[:, 2] - c[:, 0])
    # permute each triangle's axes cyclically so that its dominant normal axis w comes last
    a = np.abs(normals)
    dominant = np.where(a[2] >= np.maximum(a[0], a[1]), 2, np.where(a[1] >= a[0], 1, 0))
    perm = np.array(_CYCLIC)[dominant].T  # (3, F): original axis of permuted coordinate p
    c = np.take_along_axis(c, perm[:, None, :], axis=0)
    normals, first, last = (np.take_along_axis(x, perm, axis=0) for x in (normals, first, last))
    strides = np.array([R * R, R, 1])[perm]
    zmin, zmax = _min3(c[2]), _max3(c[2])
    # plane depth over a column centred at (u, v): a0 + a1 u + a2 v, +- dz over the column's square
    with np.errstate(divide="ignore", invalid="ignore"):
        a1, a2 = -normals[0] / normals[2], -normals[1] / normals[2]
        a0 = c[2, 0] - a1 * c[0, 0] - a2 * c[1, 0]
        dz = 0.5 * (np.abs(a1) + np.abs(a2))
    flat = np.isfinite(a0) & np.isfinite(dz) & (dz <= 1.0)  # else (zero normal): the bbox range
    a0, a1, a2, dz = (np.where(flat, x, 0.0) for x in (a0, a1, a2, dz))
    n_cols = (last[0] - first[0] + 1) * (last[1] - first[1] + 1)
    for part in _chunks(n_cols, _CHUNK // 4):
        t, local = _expand(n_cols[part])
        t += part.start
        width = last[1, t] - first[1, t] + 1
        iu, iv = first[0, t] + local // width, first[1, t] + local % width
        zc = a0[t] + a1[t] * (iu - h) + a2[t] * (iv - h)
        zlo = np.where(flat[t], np.maximum(zc - dz[t], zmin[t]), zmin[t])
        zhi = np.where(flat[t], np.minimum(zc + dz[t], zmax[t]), zmax[t])
        k0, k1 = _index_range(zlo, zhi, 0.5, R)
        col, k = _expand(np.maximum(k1 - k0 + 1, 0))
        tri, iu, iv, k = t[col], iu[col], iv[col], k0[col] + k
        rel = np.take(c, tri, axis=2)
        rel[0] -= iu - h
        rel[1] -= iv - h
        rel[2] -= k - h
        hit = _tri_box_overlap(rel, np.take(normals, tri, axis=1))
        st = np.take(strides, tri[hit], axis=1)
        occ[iu[hit] * st[0] + iv[hit] * st[1] + k[hit] * st[2]] = True
    return occ.reshape(R, R, R)


def _flat(idx, strides) -> np.ndarray:
    return idx[0] * strides[0] + idx[1] * strides[1] + idx[2] * strides[2]


def _tri_box_overlap(v: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Exact test: does the triangle ``v (3 axes, 3 corners, P)`` (relative to the box centre) meet
    the closed cube ``[-1/2, 1/2]^3``? ``n (3, P)`` is its (unnormalized) normal. Separating axes:
    the 3 box normals, the triangle normal and the 9 products edge x box-axis (Akenine-Moller)."""
    ok = np.ones(v.shape[-1], dtype=bool)
    for axis in range(3):
        ok &= (_min3(v[axis]) <= 0.5) & (_max3(v[axis]) >= -0.5)
    radius = 0.5 * _sum3(np.abs(n[0]), np.abs(n[1]), np.abs(n[2]))
    ok &= np.abs(_sum3(n[0] * v[0, 0], n[1] * v[1, 0], n[2] * v[2, 0])) <= radius
    # edge j: project a vertex of the edge and the opposite vertex (the third projects like the first)
    for i, j, other in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        e = v[:, j] - v[:, i]
        for p, q in ((1, 2), (2, 0), (0, 1)):  # axis = e x unit vector of the remaining coordinate
            pa = e[q] * v[p, i] - e[p] * v[q, i]
            pb = e[q] * v[p, other] - e[p] * v[q, other]
            r = 0.5 * (np.abs(e[p]) + np.abs(e[q]))
            ok &= (np.minimum(pa, pb) <= r) & (np.maximum(pa, pb) >= -r)
    return ok


# ----------------------------------------------------------------------------------------------
# solid


def inside_votes(tris, resolution: int) -> np.ndarray:
    """``uint8 (R, R, R)``: for how many of the 3 axes the ray rule says the voxel centre is inside.

    Args:
        tris: ``(F, 3, 3)`` triangles in grid-centred coordinates (as :func:`surface_occupancy`).

    Along axis ``w`` the rays pass through the voxel centres of each ``(u, v)`` column. A triangle
    crosses the ray at ``(u, v)`` iff the point lies in the projected triangle, decided with the
    edge functions of canonically ordered edges (so a shared edge gives exactly opposite values in
    its two triangles) and the symbolic perturbation ``(u + eps, v + eps^2)`` for points on an
    edge: a ray meets a closed surface an even number of times, with no double counts. The
    crossing's sign is the sign of the projected area (its orientation along ``w``).
    """
    return _votes(_corners(tris), resolution)


def solid_occupancy(tris, resolution: int) -> np.ndarray:
    """Boolean ``(R, R, R)``: surface voxels OR centres inside by the 2-of-3 ray vote."""
    return _solid(_corners(tris), resolution)


def _solid(c: np.ndarray, R: int) -> np.ndarray:
    return _surface(c, R) | (_votes(c, R) >= 2)


def inside_fraction(tris, resolution: int) -> np.ndarray:
    """float16 ``(R, R, R)`` in [0, 1]: the fraction of each voxel inside (the ``fraction``
    representation; see the module docstring)."""
    return _fraction(_corners(tris), resolution)


def fraction_subsamples(resolution: int) -> int:
    """Sub-grid samples per axis of the ``fraction`` representation at ``resolution``."""
    return max(1, min(FRACTION_SUBSAMPLES, FRACTION_MAX_GRID // resolution))


#: the ``fraction`` sub-grid is turned by this fixed, generic rotation (rows: the sub-grid's axes).
#: A face parallel to the sub-grid's planes would be placed to within ``1/s`` voxel the same way
#: along its whole extent: axis-aligned faces, the rule in CAD meshes and the tetris pieces, would
#: each carry a systematic error of up to ``1/2s`` voxel (8% of a tetris piece's volume at s = 4),
#: while in any other pose the errors average out along the face. No face of an axis-aligned mesh
#: is parallel to these planes.
_FRACTION_LATTICE = quaternion_to_matrix(np.array([0.9, 0.2, 0.3, 0.25]))


def _fraction(c: np.ndarray, R: int) -> np.ndarray:
    # sub-grid points p = q^T (m - (n-1)/2) / s (grid-centred, voxel units) for m in [0, n)^3,
    # covering the mesh and every voxel that meets it; inside by the ray vote on the mesh turned
    # by q and scaled by s; then per voxel: inside points / all points that fall in it
    s = fraction_subsamples(R)
    q = _FRACTION_LATTICE
    turned = np.einsum("ij,jkf->ikf", q, c)
    reach = np.abs(turned).max() + np.sqrt(3)  # a voxel meeting the mesh lies within sqrt(3) of it
    n = min(int(np.ceil(2 * s * reach)) + 1, int(np.ceil(s * R * np.abs(q).sum(1).max())) + 1)
    inside = _votes(turned * s, n) >= 2
    axis = (np.arange(n) - (n - 1) / 2) / s
    inside_count = np.zeros(R**3)
    total = np.zeros(R**3)
    for a in range(n):  # one sub-grid slab at a time bounds memory to ~n^2 points
        points = np.stack(np.meshgrid(axis[a], axis, axis, indexing="ij"), -1).reshape(-1, 3) @ q
        index = np.floor(points + R / 2).astype(np.int64)
        keep = (index >= 0).all(1) & (index < R).all(1)
        flat = (index[keep] * np.array([R * R, R, 1])).sum(1)
        total += np.bincount(flat, minlength=R**3)
        inside_count += np.bincount(flat, weights=inside[a].reshape(-1)[keep], minlength=R**3)
    fraction = np.divide(inside_count, total, out=np.zeros(R**3), where=total > 0)
    return fraction.reshape(R, R, R).astype(np.float16)


def _votes(c: np.ndarray, R: int) -> np.ndarray:
    """All 3 ray axes in one vectorized pass over (axis, triangle) items; see :func:`inside_votes`."""
    F = c.shape[-1]
    inside = _ray_inside(np.concatenate([c[list(order)] for order in _CYCLIC], axis=2), R, F)
    votes = np.zeros((R, R, R), dtype=np.uint8)
    for w, order in enumerate(_CYCLIC):
        votes += np.moveaxis(inside[w], (0, 1, 2), order)  # inside[w] is indexed [u, v, w]
    return votes


def _ray_inside(c: np.ndarray, R: int, F: int) -> np.ndarray:
    """Rays along the last coordinate of ``c (3, 3, 3F)`` (item ``a * F + f``: triangle f with
    axes permuted by ``_CYCLIC[a]``): bool ``(3, R, R, R)`` [a, u, v, w], ``W- != 0 and W+ != 0``."""
    h = (R - 1) / 2
    u, v = c[0], c[1]
    area = (u[1] - u[0]) * (v[2] - v[0]) - (v[1] - v[0]) * (u[2] - u[0])
    fu, lu = _index_range(_min3(u), _max3(u), 0.0, R)
    fv, lv = _index_range(_min3(v), _max3(v), 0.0, R)
    n_rays = np.where(area != 0, np.maximum(lu - fu + 1, 0) * np.maximum(lv - fv + 1, 0), 0)
    # signed crossings per (axis, ray, first voxel beyond the crossing), then prefix sums
    hits = np.zeros(3 * R * R * (R + 1), dtype=np.int64)
    for part in _chunks(n_rays):
        t, local = _expand(n_rays[part])
        t += part.start
        width = lv[t] - fv[t] + 1
        iu, iv = fu[t] + local // width, fv[t] + local % width
        pu, pv = iu - h, iv - h
        cu, cv = np.take(u, t, axis=1), np.take(v, t, axis=1)
        s0, w0 = _edge(cu[1], cv[1], cu[2], cv[2], pu, pv)
        s1, w1 = _edge(cu[2], cv[2], cu[0], cv[0], pu, pv)
        s2, w2 = _edge(cu[0], cv[0], cu[1], cv[1], pu, pv)
        hit = (s0 == s1) & (s1 == s2)
        t, iu, iv, w0, w1, w2 = t[hit], iu[hit], iv[hit], w0[hit], w1[hit], w2[hit]
        cw = np.take(c[2], t, axis=1)
        depth = (w0 * cw[0] + w1 * cw[1] + w2 * cw[2]) / (w0 + w1 + w2)  # barycentric
        beyond = np.clip(np.floor(depth + h).astype(np.int64) + 1, 0, R)
        index = ((t // F * R + iu) * R + iv) * (R + 1) + beyond
        hits += np.bincount(index, weights=np.sign(area[t]), minlength=hits.size).astype(np.int64)
    below = np.cumsum(hits.reshape(-1, R + 1), axis=1)
    inside = (below[:, :R] != 0) & (below[:, R:] - below[:, :R] != 0)
    return inside.reshape(3, R, R, R)


def _edge(au, av, bu, bv, pu, pv):
    """Edge function of ``a -> b`` at ``p``: its sign at ``p + (eps, eps^2)`` (+-1, never 0) and
    its value ``(b - a) x (p - a)``.

    Evaluated in a canonical direction (lexicographically smaller endpoint first) and negated for
    the other, so the two triangles sharing an edge always get exactly opposite values and signs.
    """
    swap = (au > bu) | ((au == bu) & (av > bv))
    lu, lv = np.where(swap, bu, au), np.where(swap, bv, av)
    du, dv = np.abs(bu - au), np.where(swap, av - bv, bv - av)
    value = du * (pv - lv) - dv * (pu - lu)
    # perturbation: d value/du = -dv, d value/dv = du; canonical order makes du >= 0
    sign = np.where(value != 0, np.sign(value), np.where(dv != 0, -np.sign(dv), np.sign(du)))
    return np.where(swap, -sign, sign), np.where(swap, -value, value)


# ----------------------------------------------------------------------------------------------
# sdf


def truncated_sdf(tris, resolution: int, band: float = SDF_BAND) -> np.ndarray:
    """float16 ``(R, R, R)``: signed distance from voxel centres to the triangles, in voxels,
    clipped to ``[-band, band]``, negative where :func:`inside_votes` >= 2.

    Args:
        tris: ``(F, 3, 3)`` triangles in grid-centred coordinates (as :func:`surface_occupancy`).

    Exact point-triangle distances for every voxel centre within ``band`` of a triangle's
    bounding box; all others are at least ``band`` away and get ``+-band``.
    """
    return _sdf(_corners(tris), resolution, band)


def _sdf(c: np.ndarray, R: int, band: float) -> np.ndarray:
    h = (R - 1) / 2
    dist = np.full(R**3, band, dtype=np.float64)
    first, last = _index_range(_min3(c.transpose(1, 0, 2)) - band, _max3(c.transpose(1, 0, 2)) + band, 0.0, R)
    size = np.maximum(last - first + 1, 0)
    n_vox = size[0] * size[1] * size[2]
    for part in _chunks(n_vox, _CHUNK // 2):
        t, local = _expand(n_vox[part])
        t += part.start
        sy, sz = size[1, t], size[2, t]
        vox = np.stack([first[0, t] + local // (sy * sz), first[1, t] + (local // sz) % sy, first[2, t] + local % sz])
        d = _point_triangle_distance(vox - h, np.take(c, t, axis=2))
        near = d < band
        np.minimum.at(dist, _flat(vox[:, near], (R * R, R, 1)), d[near])
    sign = np.where(_votes(c, R).reshape(-1) >= 2, -1.0, 1.0)
    return (sign * dist).astype(np.float16).reshape(R, R, R)


def _point_triangle_distance(p: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Distance ``(P,)`` from points ``p (3, P)`` to triangles ``c (3, 3, P)``: to the plane when
    the projection falls inside the triangle, else to the nearest of the 3 edges (segments)."""
    n = _cross(c[:, 1] - c[:, 0], c[:, 2] - c[:, 0])
    inside = np.ones(p.shape[1], dtype=bool)
    edge_d2 = np.full(p.shape[1], np.inf)
    for i, j in ((0, 1), (1, 2), (2, 0)):
        d, rel = c[:, j] - c[:, i], p - c[:, i]
        inside &= (_cross(d, rel) * n).sum(0) >= 0
        dd = (d * d).sum(0)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.nan_to_num(np.clip((rel * d).sum(0) / dd, 0.0, 1.0))  # zero-length edge: endpoint
        off = rel - s * d
        edge_d2 = np.minimum(edge_d2, (off * off).sum(0))
    nn = (n * n).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        plane_d2 = ((p - c[:, 0]) * n).sum(0) ** 2 / nn
    return np.sqrt(np.where(inside & (nn > 0), plane_d2, edge_d2))
