"""Built-in datasets: builtin:synthetic (seeded shapes) and builtin:tetris (the eight pieces)."""

import pickle
from collections import Counter

import numpy as np
import pytest

from vol3d.data.builtin import (
    BUILTIN_NAMES,
    TETRIS_PIECES,
    builtin_classes,
    builtin_meshes,
    polycube_mesh,
    synthetic_meshes,
    tetris_meshes,
)
from vol3d.errors import UsageError
from vol3d.rotations import cube_rotations, cube_symmetries


@pytest.fixture(scope="module")
def small_synthetic():
    """8 train + 2 test meshes per class (seed 0): enough to compare classes, fast."""
    return synthetic_meshes(seed=0, train_per_class=8, test_per_class=2)


def _vertices(items):
    return [it.mesh.vertices for it in items]


def _loo_nearest_neighbour_accuracy(features, labels):
    """Leave-one-out 1-NN accuracy of ``features (n, d)`` predicting ``labels (n,)``."""
    features = (features - features.mean(0)) / (features.std(0) + 1e-12)
    dist = ((features[:, None] - features[None]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    return float(np.mean(labels[dist.argmin(1)] == labels))


def _shape_features(mesh):
    """Scale-, translation-invariant descriptors: box fill ratio, aspect ratios, compactness, Euler."""
    ext = mesh.extents
    aspect = np.sort(ext) / ext.max()
    return [mesh.volume / np.prod(ext), aspect[0], aspect[1], mesh.area**1.5 / mesh.volume,
            mesh.euler_number]


def test_default_synthetic_counts_and_order():
    items = builtin_meshes("synthetic")
    classes = builtin_classes("synthetic")
    assert len(classes) >= 8 and len(set(classes)) == len(classes)
    counts = Counter((it.split, it.label) for it in items)
    assert counts == {**{("train", c): 40 for c in classes}, **{("test", c): 10 for c in classes}}
    # deterministic (split, class, source) order, unique sources
    keys = [(it.split != "train", classes.index(it.label), it.source) for it in items]
    assert keys == sorted(keys)
    assert len({it.source for it in items}) == len(items)


def test_synthetic_is_reproducible_and_seed_dependent():
    a = synthetic_meshes(seed=3, train_per_class=2, test_per_class=1)
    b = synthetic_meshes(seed=3, train_per_class=2, test_per_class=1)
    c = synthetic_meshes(seed=4, train_per_class=2, test_per_class=1)
    assert all(np.array_equal(x, y) for x, y in zip(_vertices(a), _vertices(b)))
    # another seed changes every mesh (shapes are drawn from continuous ranges)
    assert not any(x.shape == y.shape and np.allclose(x, y) for x, y in zip(_vertices(a), _vertices(c)))


def test_synthetic_meshes_are_valid(small_synthetic):
    for it in small_synthetic:
        mesh = it.mesh
        assert mesh.is_watertight and mesh.is_winding_consistent, it.source
        assert mesh.volume > 1e-3, it.source  # outward normals, not flat
        assert len(mesh.faces) <= 2000, it.source
        assert 0.1 < mesh.extents.min() and mesh.extents.max() < 2.5, it.source
        assert np.all(np.isfinite(mesh.vertices))


def test_synthetic_classes_differ_by_shape_not_size(small_synthetic):
    labels = np.array([it.label for it in small_synthetic])
    shape = np.array([_shape_features(it.mesh) for it in small_synthetic])
    size = np.array([[np.linalg.norm(it.mesh.extents)] for it in small_synthetic])
    assert _loo_nearest_neighbour_accuracy(shape, labels) >= 0.9
    assert _loo_nearest_neighbour_accuracy(size, labels) < 0.3  # chance is 1/len(classes)


def test_synthetic_pose_is_canonical(small_synthetic):
    """No random rotations: the faces of the rectilinear classes stay axis-aligned."""
    for it in small_synthetic:
        if it.label in ("box", "l_shape", "cross"):
            normals = np.abs(it.mesh.face_normals)
            assert np.allclose(np.sort(normals, axis=1), [0, 0, 1]), it.source


def test_tetris_pieces_are_unit_polycubes():
    items = tetris_meshes()
    assert builtin_classes("tetris") == list(TETRIS_PIECES) and len(TETRIS_PIECES) == 8
    assert [it.label for it in items if it.split == "train"] == list(TETRIS_PIECES)
    assert [it.source for it in items if it.split == "test"] == [it.source for it in items[:8]]
    for it in items[:8]:
        mesh = it.mesh
        assert mesh.is_watertight and mesh.is_winding_consistent
        assert np.isclose(mesh.volume, 4.0)
        # the surface encloses exactly the piece's cubes (cube centres inside, the others outside)
        cells = np.asarray(TETRIS_PIECES[it.label]) - np.min(TETRIS_PIECES[it.label], axis=0)
        grid = np.argwhere(np.ones(cells.max(0) + 1, dtype=bool))
        inside = mesh.contains(grid + 0.5)
        assert {tuple(p) for p in grid[inside]} == {tuple(p) for p in cells}


def _canonical(cells):
    """A translation-invariant key of a set of integer cube positions."""
    cells = np.asarray(cells)
    return frozenset(map(tuple, cells - cells.min(0)))


def _orbit(cells, matrices):
    return {_canonical(np.asarray(cells) @ m.T) for m in matrices}


def test_tetris_chiral_pair_are_mirror_images_not_rotations():
    rotations, reflections = cube_rotations(), cube_symmetries()[24:]
    one, two = TETRIS_PIECES["chiral_shape_1"], TETRIS_PIECES["chiral_shape_2"]
    assert _canonical(two) not in _orbit(one, rotations)
    assert _canonical(two) in _orbit(one, reflections)
    # the eight pieces are pairwise distinct up to rotation; only the chiral pair lacks a mirror plane
    orbits = {name: _orbit(cells, rotations) for name, cells in TETRIS_PIECES.items()}
    assert len({frozenset(o) for o in orbits.values()}) == 8
    chiral = {name for name, cells in TETRIS_PIECES.items()
              if _canonical(cells) not in _orbit(cells, reflections)}
    assert chiral == {"chiral_shape_1", "chiral_shape_2"}


def test_polycube_with_uneven_cells_is_closed():
    occ = np.zeros((3, 2, 2), dtype=bool)
    occ[:, 0, 0] = occ[1, :, 0] = occ[1, 0, 1] = True
    edges = [np.array([0, 0.5, 2, 2.25]), np.array([0, 1, 3.0]), np.array([-1, 0, 0.1])]
    mesh = polycube_mesh(occ, edges)
    widths = np.meshgrid(*[np.diff(e) for e in edges], indexing="ij")
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert np.isclose(mesh.volume, np.prod(widths, axis=0)[occ].sum())


def test_mesh_source_carries_a_picklable_copyable_mesh():
    item = tetris_meshes()[0]
    clone = pickle.loads(pickle.dumps(item))
    assert clone == item and np.array_equal(clone.mesh.vertices, item.mesh.vertices)
    loaded = item.load()
    loaded.apply_translation([5, 0, 0])
    assert not np.allclose(loaded.vertices, item.mesh.vertices)  # load() gave a copy


def test_unknown_builtin_name_lists_the_valid_ones():
    with pytest.raises(UsageError, match="builtin:nope.*builtin:synthetic, builtin:tetris"):
        builtin_meshes("nope")
    assert BUILTIN_NAMES == ("synthetic", "tetris")
