"""Voxelization: solid vs mesh.contains, open and double-sided meshes, exact surface overlap,
sdf, the sphere fit under rotations, the returned transform, and exact cube rotations."""

import itertools

import numpy as np
import pytest
import trimesh

from vol3d.data.meshes import load_mesh
from vol3d.data.voxelize import (
    SDF_BAND,
    inside_votes,
    normalize_mesh,
    surface_occupancy,
    truncated_sdf,
    voxelize,
)
from vol3d.errors import MeshError, UsageError
from vol3d.rotations import cube_rotations, sample_rotations

R = 32


def iou(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return (a & b).sum() / (a | b).sum()


def centres_in_mesh_coords(transform, resolution):
    idx = np.stack(np.meshgrid(*[np.arange(resolution)] * 3, indexing="ij"), -1).reshape(-1, 3)
    inverse = np.linalg.inv(transform)
    return idx @ inverse[:3, :3].T + inverse[:3, 3]


def contains(mesh, points):
    return np.concatenate([mesh.contains(points[i : i + 8192]) for i in range(0, len(points), 8192)])


def grid_triangles(mesh, resolution, **kw):
    vertices, _ = normalize_mesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), resolution, **kw)
    return vertices[np.asarray(mesh.faces)]


def lumpy_sphere(seed=0):
    """A watertight, irregular mesh without symmetries (so rotation tests can fail)."""
    mesh = trimesh.creation.icosphere(2)
    rng = np.random.default_rng(seed)
    mesh.vertices *= rng.uniform(0.7, 1.3, size=(len(mesh.vertices), 1))
    mesh.vertices += (0.3, -0.2, 0.1)
    return mesh


PRIMITIVES = {
    "box": lambda: trimesh.creation.box((1.0, 2.0, 3.0)),
    "cylinder": lambda: trimesh.creation.cylinder(0.5, 2.0, sections=24),
    "capsule": lambda: trimesh.creation.capsule(1.0, 0.5, count=(12, 12)),
    "annulus": lambda: trimesh.creation.annulus(0.3, 1.0, 0.5, sections=24),
    "lumpy": lumpy_sphere,
}


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_solid_matches_contains_on_watertight_meshes(name):
    mesh = PRIMITIVES[name]()
    assert mesh.is_watertight
    q = sample_rotations(1, "so3", np.random.default_rng(1))[0]
    solid, transform = voxelize(mesh, R, rotation=q, return_transform=True)
    surface = voxelize(mesh, R, "surface", rotation=q).astype(bool)
    reference = contains(mesh, centres_in_mesh_coords(transform, R)).reshape(R, R, R)
    assert solid.dtype == np.uint8 and set(np.unique(solid)) <= {0, 1}
    # solid = inside-or-surface: the exact reference is contains-at-centres OR the surface
    assert iou(solid, reference | surface) >= 0.99
    centre_test = inside_votes(grid_triangles(mesh, R, rotation=q), R) >= 2
    assert iou(centre_test, reference) >= 0.99
    assert (solid.astype(bool) >= surface).all()


@pytest.mark.parametrize("shape", ["cube", "octahedron"])
@pytest.mark.parametrize("resolution", [16, 17])
def test_rays_through_edges_and_vertices_count_once(shape, resolution):
    """Rays run exactly through edges (the cube's face diagonals) and vertices (the octahedron's
    tips at odd R): the symbolic perturbation must count each crossing exactly once."""
    if shape == "cube":
        mesh = trimesh.creation.box((1.0, 1.0, 1.0))
    else:
        mesh = trimesh.convex.convex_hull(np.concatenate([np.eye(3), -np.eye(3)]))
    solid, transform = voxelize(mesh, resolution, fit="cube", return_transform=True)
    reference = contains(mesh, centres_in_mesh_coords(transform, resolution)).reshape(solid.shape)
    votes = inside_votes(grid_triangles(mesh, resolution, fit="cube"), resolution)
    np.testing.assert_array_equal(votes >= 2, reference)
    np.testing.assert_array_equal(votes[reference], 3)  # every axis agrees, not just a majority


def test_open_box_is_still_filled():
    closed = trimesh.creation.box((1.0, 1.5, 2.0))
    top = closed.face_normals[:, 2] > 0.5
    open_box = trimesh.Trimesh(closed.vertices, closed.faces[~top])
    assert not open_box.is_watertight
    full = voxelize(closed, R).astype(bool)
    holed = voxelize(open_box, R).astype(bool)
    # voxels touched only by the removed faces are legitimately gone (their centres are outside)
    tris = grid_triangles(closed, R)
    only_top = surface_occupancy(tris[top], R) & ~surface_occupancy(tris[~top], R)
    expected = full & ~only_top
    assert (holed <= full).all()
    assert holed.sum() >= 0.99 * expected.sum()
    assert not np.array_equal(holed, voxelize(open_box, R, "surface").astype(bool))  # not just a shell


def test_double_sided_and_overlapping_parts():
    box = trimesh.creation.box((1.0, 1.5, 2.0))
    # every face twice, once per orientation (common in ModelNet): same solid
    double = trimesh.Trimesh(box.vertices, np.concatenate([box.faces, box.faces[:, ::-1]]))
    np.testing.assert_array_equal(voxelize(double, R), voxelize(box, R))
    # two overlapping closed boxes: the union, including the overlap
    other = trimesh.creation.box((1.0, 1.5, 2.0)).apply_translation((0.5, 0.2, 0.3))
    both = trimesh.util.concatenate([box, other])
    solid, transform = voxelize(both, R, return_transform=True)
    points = centres_in_mesh_coords(transform, R)
    union = (contains(box, points) | contains(other, points)).reshape(R, R, R)
    surface = voxelize(both, R, "surface").astype(bool)
    assert iou(solid, union | surface) >= 0.99


def _clip_overlap(tri, centre):
    """Independent reference: clip the triangle by the 6 faces of the closed box (Sutherland-
    Hodgman); it overlaps the box iff something is left."""
    poly = [np.asarray(p, float) for p in tri]
    for axis, side in itertools.product(range(3), (-1.0, 1.0)):
        plane = centre[axis] + 0.5 * side

        def inside(p):
            return side * (p[axis] - plane) <= 1e-12

        out = []
        for a, b in zip(poly, poly[1:] + poly[:1]):
            if inside(a):
                out.append(a)
            if inside(a) != inside(b):
                t = (plane - a[axis]) / (b[axis] - a[axis])
                out.append(a + t * (b - a))
        poly = out
        if not poly:
            return False
    return True


def test_surface_overlap_is_exact_against_brute_force():
    rng = np.random.default_rng(3)
    res = 6
    h = (res - 1) / 2
    tris = rng.uniform(-res / 2, res / 2, size=(12, 3, 3))
    tris[:4] = tris[:4, :1] + rng.uniform(-0.7, 0.7, size=(4, 3, 3))  # small triangles too
    got = surface_occupancy(tris, res)
    expected = np.zeros((res, res, res), bool)
    for idx in itertools.product(range(res), repeat=3):
        expected[idx] = any(_clip_overlap(t, np.array(idx) - h) for t in tris)
    np.testing.assert_array_equal(got, expected)
    # each triangle alone as well (a bug could hide behind the union)
    for t in tris[:6]:
        single = surface_occupancy(t[None], res)
        ref = np.array([_clip_overlap(t, np.array(i) - h) for i in itertools.product(range(res), repeat=3)])
        np.testing.assert_array_equal(single.reshape(-1), ref)


def test_sdf_on_a_box_matches_the_analytic_distance():
    box = trimesh.creation.box((1.0, 2.0, 3.0))
    sdf, transform = voxelize(box, R, "sdf", return_transform=True)
    assert sdf.dtype == np.float16 and sdf.shape == (R, R, R)
    assert np.abs(sdf).max() <= SDF_BAND
    scale = np.linalg.norm(transform[:3, 0])
    half = 0.5 * np.array([1.0, 2.0, 3.0]) * scale
    p = centres_in_mesh_coords(transform, R) * scale  # voxel units, centred on the box
    q = np.abs(p) - half
    exact = np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(1), 0)
    expected = np.clip(exact, -SDF_BAND, SDF_BAND).reshape(R, R, R)
    np.testing.assert_allclose(sdf.astype(np.float64), expected, atol=5e-3)
    assert (sdf[expected < -0.01] < 0).all() and (sdf[expected > 0.01] > 0).all()


def test_sdf_of_an_open_sheet_is_positive_and_truncated():
    sheet = trimesh.Trimesh([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], [[0, 1, 2], [0, 2, 3]])
    tris = grid_triangles(sheet, 16)
    sdf = truncated_sdf(tris, 16)
    assert (sdf >= 0).all() and sdf.max() == SDF_BAND
    # the sheet is at z = 0 in grid-centred coords, voxel centres at +-0.5, +-1.5, ...
    np.testing.assert_allclose(sdf[8, 8, [7, 8, 6, 9, 0]].astype(float), [0.5, 0.5, 1.5, 1.5, 3.0])


def test_sphere_fit_keeps_occupancy_inside_the_inscribed_sphere():
    mesh = trimesh.creation.capsule(3.0, 0.3)  # long and thin: corners reach far
    idx = np.stack(np.meshgrid(*[np.arange(R)] * 3, indexing="ij"), -1)
    radius = np.linalg.norm(idx - (R - 1) / 2, axis=-1)
    scales = []
    for q in sample_rotations(5, "so3", np.random.default_rng(2)):
        surface, transform = voxelize(mesh, R, "surface", rotation=q, return_transform=True)
        assert surface.any() and radius[surface.astype(bool)].max() < R / 2
        scales.append(np.linalg.norm(transform[:3, 0]))
    np.testing.assert_allclose(scales, scales[0])  # the scale does not depend on the rotation
    # the far ends of the capsule do reach close to the sphere (the fit is tight)
    assert radius[voxelize(mesh, R, "surface").astype(bool)].max() > R / 2 - 2


def test_transform_maps_vertices_into_occupied_surface_voxels():
    mesh = lumpy_sphere(4)
    for fit in ("sphere", "cube"):
        surface, transform = voxelize(mesh, R, "surface", fit=fit, rotation=sample_rotations(1, "so3", 5)[0], return_transform=True)
        mapped = mesh.vertices @ transform[:3, :3].T + transform[:3, 3]
        assert (mapped >= -0.5 - 1e-9).all() and (mapped <= R - 0.5 + 1e-9).all()
        # a vertex lies in the closed cube of its nearest voxel (cube fit: boundary ones on a face)
        assert surface[tuple(np.clip(np.rint(mapped).astype(int), 0, R - 1).T)].all()
    # cube fit: the longest side spans the whole grid
    box = trimesh.creation.box((1.0, 2.0, 4.0))
    surface, transform = voxelize(box, R, "surface", fit="cube", return_transform=True)
    mapped = box.vertices @ transform[:3, :3].T + transform[:3, 3]
    np.testing.assert_allclose(mapped[:, 2].min(), -0.5, atol=1e-9)
    np.testing.assert_allclose(mapped[:, 2].max(), R - 0.5, atol=1e-9)
    assert surface[:, :, 0].any() and surface[:, :, -1].any()


def rotate_volume(volume, q):
    """The volume rotated by a signed permutation ``q``: voxel at p (grid-centred) moves to q p."""
    n = volume.shape[0]
    idx = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 3)
    moved = np.rint((idx - (n - 1) / 2) @ np.asarray(q, float).T + (n - 1) / 2).astype(int)
    out = np.zeros_like(volume)
    out[tuple(moved.T)] = volume.reshape(-1)
    return out


@pytest.mark.parametrize("representation", ["solid", "surface", "sdf"])
def test_cube_rotations_are_exact(representation):
    mesh = lumpy_sphere(7)
    base = voxelize(mesh, 16, representation)
    for q in cube_rotations()[1::5]:
        np.testing.assert_array_equal(voxelize(mesh, 16, representation, rotation=q), rotate_volume(base, q))
    # a quarter turn about z is np.rot90 in the (x, y) plane
    quarter = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    np.testing.assert_array_equal(voxelize(mesh, 16, representation, rotation=quarter), np.rot90(base, 1, axes=(0, 1)))


def test_inputs_and_errors(tmp_path):
    box = trimesh.creation.box()
    a = voxelize(box, 8)
    np.testing.assert_array_equal(voxelize((box.vertices, box.faces), 8), a)
    box.export(tmp_path / "box.stl")
    np.testing.assert_array_equal(voxelize(str(tmp_path / "box.stl"), 8), a)
    for kwargs in [dict(resolution=2), dict(representation="mesh"), dict(fit="ball"), dict(rotation=np.ones((3, 3))), dict(rotation=np.eye(2))]:
        with pytest.raises(UsageError):
            voxelize(box, **kwargs)
    with pytest.raises(MeshError, match="zero surface area"):
        voxelize(([[0, 0, 0], [1, 1, 1], [2, 2, 2]], [[0, 1, 2]]))
    (tmp_path / "empty.off").write_text("")
    with pytest.raises(MeshError, match="empty file"):
        voxelize(tmp_path / "empty.off")


def test_real_meshes(shared_data):
    files = sorted((shared_data / "meshes").glob("*.off"))
    if not files:
        pytest.skip("no meshes in ../shared/data/meshes")
    idx = np.stack(np.meshgrid(*[np.arange(R)] * 3, indexing="ij"), -1)
    radius = np.linalg.norm(idx - (R - 1) / 2, axis=-1)
    for path in files:
        mesh = load_mesh(path)
        solid = voxelize(mesh, R).astype(bool)
        surface = voxelize(mesh, R, "surface").astype(bool)
        assert surface.sum() > 100 and (solid >= surface).all(), path.name
        assert radius[solid].max() < R / 2, path.name
        np.testing.assert_array_equal(voxelize(path, R).astype(bool), solid)


@pytest.mark.parametrize("name", ["box", "annulus", "lumpy"])
def test_fraction_measures_the_volume_in_every_pose(name):
    """``fraction`` sums to the mesh's volume (in voxels) in the canonical pose and in random ones;
    ``solid``'s surface shell makes its count depend on the pose (so the check could fail)."""
    mesh = PRIMITIVES[name]()
    sums, solid = [], []
    for q in [np.eye(3), *sample_rotations(3, "so3", rng=1)]:
        volume, transform = voxelize(mesh, 24, "fraction", rotation=q, return_transform=True)
        assert volume.dtype == np.float16 and volume.min() >= 0 and volume.max() == 1
        scale = abs(np.linalg.det(transform[:3, :3]))
        sums.append(volume.astype(np.float64).sum() / (mesh.volume * scale))
        solid.append(voxelize(mesh, 24, "solid", rotation=q).sum() / (mesh.volume * scale))
    np.testing.assert_allclose(sums, 1.0, atol=0.01)
    assert np.abs(np.subtract(solid, 1.0)).max() > 0.05  # the shell: off by 6% to 55% here


def test_fraction_is_one_inside_zero_outside_and_within_solid():
    mesh = lumpy_sphere(3)
    fraction = voxelize(mesh, 20, "fraction").astype(np.float32)
    solid = voxelize(mesh, 20, "solid").astype(bool)
    partial = (fraction > 0) & (fraction < 1)
    assert partial.any() and (fraction[~solid] == 0).all()  # partly inside: touches the surface
    surface = voxelize(mesh, 20, "surface").astype(bool)
    assert (fraction[solid & ~surface] == 1).all()  # centre inside and no surface: all inside
    assert not (partial & ~surface).any()
