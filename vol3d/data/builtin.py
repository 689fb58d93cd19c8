"""Built-in datasets: procedurally generated meshes, embedded (no download).

``builtin:synthetic``
    Ten classes of seeded, watertight meshes that differ by *shape*, with random proportions in
    ranges that keep the classes apart (see :data:`SYNTHETIC_CLASSES`). Every mesh is in its
    canonical pose (symmetry axis along z, faces along the axes) with a random overall scale in
    [0.8, 1.25] and a small random translation; there are no random rotations, since rotating the
    data is the experiment. Per class 40 ``train`` and 10 ``test`` meshes by default (the split is
    part of the dataset). A class's meshes depend only on the seed and the class index.
``builtin:tetris``
    The eight 3D tetris pieces of the rotation-equivariance literature (Thomas et al. 2018,
    *Tensor field networks*; the e3nn tetris example): four unit cubes each, including the chiral
    pair ``chiral_shape_1`` / ``chiral_shape_2`` (mirror images, not rotations, of each other).
    One mesh per class in ``train`` and the *same* meshes again in ``test``, so that a model can
    be evaluated on rotated copies of exactly its training data. The seed is ignored.

All meshes are closed polyhedra (``is_watertight``), at most ~1.5k faces each.
"""

from __future__ import annotations

import numpy as np
import trimesh
from trimesh import creation

from ..errors import UsageError
from .sources import MeshSource

BUILTIN_NAMES = ("synthetic", "tetris")

TETRIS_PIECES = {
    "chiral_shape_1": ((0, 0, 0), (0, 0, 1), (1, 0, 0), (1, 1, 0)),
    "chiral_shape_2": ((0, 0, 0), (0, 0, 1), (1, 0, 0), (1, -1, 0)),
    "square": ((0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0)),
    "line": ((0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 0, 3)),
    "corner": ((0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0)),
    "L": ((0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 0)),
    "T": ((0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 1)),
    "zigzag": ((0, 0, 0), (1, 0, 0), (1, 1, 0), (2, 1, 0)),
}
"""Integer cube positions of each tetris piece (cube ``p`` occupies ``[p, p + 1]^3``)."""


# ----------------------------------------------------------------------------- polycubes


def polycube_mesh(occupancy, edges=None) -> trimesh.Trimesh:
    """The closed surface of a union of grid cells: only the faces between a filled and an empty cell.

    Args:
        occupancy: boolean array ``(nx, ny, nz)``; cell ``(i, j, k)`` spans
            ``[edges[0][i], edges[0][i+1]] x [edges[1][j], edges[1][j+1]] x [edges[2][k], ...]``.
        edges: three increasing arrays of grid-line coordinates of lengths ``nx+1, ny+1, nz+1``
            (default: unit cells, ``arange(n + 1)``), so cells can have different sizes.

    Returns:
        A mesh with outward normals; watertight when filled cells meeting along an edge also share
        a face neighbour (true of the face-connected pieces built here).
    """
    occ = np.asarray(occupancy, dtype=bool)
    if edges is None:
        edges = [np.arange(n + 1, dtype=np.float64) for n in occ.shape]
    padded = np.pad(occ, 1)
    corners = []  # (n_quads, 4, 3) integer grid-line indices
    for axis in range(3):
        b, c = (axis + 1) % 3, (axis + 2) % 3
        # unit square in the (b, c) plane, counter-clockwise around +axis (e_b x e_c = e_axis)
        square = np.zeros((4, 3), dtype=np.int64)
        square[[1, 2], b] = 1
        square[[2, 3], c] = 1
        for step in (1, -1):
            neighbour = np.roll(padded, -step, axis=axis)[1:-1, 1:-1, 1:-1]
            cells = np.argwhere(occ & ~neighbour)
            offset = np.zeros(3, dtype=np.int64)
            offset[axis] = 1 if step == 1 else 0
            quad = square if step == 1 else square[::-1]  # reversed winding faces -axis
            corners.append(cells[:, None, :] + offset + quad)
    corners = np.concatenate(corners)
    unique, inverse = np.unique(corners.reshape(-1, 3), axis=0, return_inverse=True)
    quads = inverse.reshape(-1, 4)
    faces = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    vertices = np.column_stack([np.asarray(edges[a], dtype=np.float64)[unique[:, a]] for a in range(3)])
    return trimesh.Trimesh(vertices, faces, process=False)


def _cells_to_occupancy(cells) -> np.ndarray:
    """Boolean occupancy of integer cube positions, shifted so the smallest position is 0."""
    cells = np.asarray(cells, dtype=np.int64)
    cells = cells - cells.min(axis=0)
    occ = np.zeros(cells.max(axis=0) + 1, dtype=bool)
    occ[tuple(cells.T)] = True
    return occ


# ----------------------------------------------------------------------------- synthetic shapes
# Each generator takes a numpy Generator and returns a watertight mesh of size ~1 centred near 0.


def _box(rng):
    return creation.box(extents=[1.0, rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0)])


def _ellipsoid(rng):
    sphere = creation.icosphere(subdivisions=2)
    sphere.apply_scale([0.5, 0.5 * rng.uniform(0.6, 1.0), 0.5 * rng.uniform(0.6, 1.0)])
    return sphere


def _cylinder(rng):
    return creation.cylinder(radius=rng.uniform(0.25, 0.4), height=rng.uniform(0.8, 1.4), sections=32)


def _cone(rng):
    return creation.cone(radius=rng.uniform(0.3, 0.45), height=rng.uniform(0.8, 1.3), sections=32)


def _torus(rng):
    return creation.torus(0.5, 0.5 * rng.uniform(0.2, 0.45), major_sections=32, minor_sections=16)


def _hull(points):
    """Convex hull of a few points (a closed, outward-facing polyhedron)."""
    return trimesh.convex.convex_hull(np.asarray(points, dtype=np.float64))


def _pyramid(rng):
    """Rectangular base in z=0, apex above its centre."""
    a, b, h = 0.5, 0.5 * rng.uniform(0.7, 1.0), rng.uniform(0.7, 1.3)
    return _hull([(a, b, 0), (-a, b, 0), (-a, -b, 0), (a, -b, 0), (0, 0, h)])


def _bipyramid(rng):
    """Octahedron-like: a rectangle with one apex above and one below its centre."""
    a, b = 0.5, 0.5 * rng.uniform(0.7, 1.0)
    up, down = rng.uniform(0.5, 0.8, size=2)
    return _hull([(a, 0, 0), (-a, 0, 0), (0, b, 0), (0, -b, 0), (0, 0, up), (0, 0, -down)])


def _l_shape(rng):
    """An L profile in the x-z plane (two arms of random length and thickness) extruded along y."""
    occ = np.array([[1, 1], [1, 0]], dtype=bool)[:, None, :]
    xs = [0.0, rng.uniform(0.25, 0.4), 1.0]
    zs = [0.0, rng.uniform(0.25, 0.4), rng.uniform(0.8, 1.2)]
    return polycube_mesh(occ, [xs, [0.0, rng.uniform(0.3, 0.5)], zs])


def _cross(rng):
    """A plus sign in the x-z plane (3x3 cells, the centre row and column filled) extruded along y."""
    occ = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)[:, None, :]
    w = rng.uniform(0.2, 0.35)  # arm thickness
    arm_x, arm_z = rng.uniform(0.25, 0.45, size=2)
    xs = np.cumsum([0.0, arm_x, w, arm_x])
    zs = np.cumsum([0.0, arm_z, w, arm_z])
    return polycube_mesh(occ, [xs, [0.0, rng.uniform(0.2, 0.35)], zs])


def _dumbbell(rng):
    """Two balls joined by a thin bar along z: the profile of their union, revolved about z."""
    radius, half_gap = rng.uniform(0.18, 0.25), rng.uniform(0.3, 0.45)
    neck = radius * rng.uniform(0.3, 0.5)
    # lower ball from its south pole up to where its radius shrinks to the neck's, then mirrored
    theta = np.linspace(-np.pi / 2, np.arccos(neck / radius), 12)
    lower = np.column_stack([radius * np.cos(theta), radius * np.sin(theta) - half_gap])
    lower[0, 0] = 0.0  # exactly on the axis: the revolved surface closes there
    upper = lower[::-1] * [1.0, -1.0]
    return creation.revolve(np.concatenate([lower, upper]), sections=32)


_SYNTHETIC = {
    "box": _box,
    "ellipsoid": _ellipsoid,
    "cylinder": _cylinder,
    "cone": _cone,
    "torus": _torus,
    "pyramid": _pyramid,
    "bipyramid": _bipyramid,
    "l_shape": _l_shape,
    "cross": _cross,
    "dumbbell": _dumbbell,
}
SYNTHETIC_CLASSES = tuple(_SYNTHETIC)
"""Class names of ``builtin:synthetic`` (label ``i`` is ``SYNTHETIC_CLASSES[i]``)."""


def synthetic_mesh(class_name: str, rng) -> trimesh.Trimesh:
    """One random mesh of a synthetic class: random proportions, scale and small translation."""
    mesh = _SYNTHETIC[class_name](rng)
    mesh.apply_translation(-mesh.bounds.mean(axis=0))
    mesh.apply_scale(rng.uniform(0.8, 1.25))
    mesh.apply_translation(rng.normal(scale=0.05, size=3))
    return mesh


def synthetic_meshes(seed: int = 0, train_per_class: int = 40, test_per_class: int = 10):
    """The ``builtin:synthetic`` dataset as :class:`MeshSource` items (train first, then test).

    Class ``c`` draws its ``train_per_class + test_per_class`` meshes in order from
    ``numpy.random.default_rng([seed, c])``; the first ``train_per_class`` are ``train``.
    """
    per_class = []
    for c, name in enumerate(SYNTHETIC_CLASSES):
        rng = np.random.default_rng([seed, c])
        meshes = [synthetic_mesh(name, rng) for _ in range(train_per_class + test_per_class)]
        per_class.append([
            MeshSource(f"builtin:synthetic/{name}/{i:03d}", name,
                       "train" if i < train_per_class else "test", mesh)
            for i, mesh in enumerate(meshes)
        ])
    items = [it for group in per_class for it in group]
    return sorted(items, key=lambda it: it.split != "train")  # stable: class order kept per split


def tetris_meshes():
    """The ``builtin:tetris`` dataset: each piece once in ``train`` and once (the same) in ``test``."""
    meshes = {name: polycube_mesh(_cells_to_occupancy(cells)) for name, cells in TETRIS_PIECES.items()}
    return [
        MeshSource(f"builtin:tetris/{name}/0", name, split, mesh)
        for split in ("train", "test")
        for name, mesh in meshes.items()
    ]


def builtin_classes(name: str) -> list[str]:
    """Class names of built-in dataset ``name``, in label order."""
    _check_name(name)
    return list(SYNTHETIC_CLASSES if name == "synthetic" else TETRIS_PIECES)


def builtin_meshes(name: str, seed: int = 0) -> list[MeshSource]:
    """The items of built-in dataset ``name`` (``"synthetic"`` or ``"tetris"``) with default sizes."""
    _check_name(name)
    return synthetic_meshes(seed) if name == "synthetic" else tetris_meshes()


def _check_name(name: str) -> None:
    """Raise a UsageError listing the valid names when ``name`` is not a built-in dataset."""
    if name not in BUILTIN_NAMES:
        valid = ", ".join(f"builtin:{n}" for n in BUILTIN_NAMES)
        raise UsageError(f"builtin:{name}: unknown built-in dataset (choose from {valid})")
