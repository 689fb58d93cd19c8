"""Mesh loading (incl. ModelNet's broken OFF headers and polygons) and validation."""

from pathlib import Path

import numpy as np
import pytest
import trimesh

from vol3d.data.meshes import check_mesh, load_mesh, read_off
from vol3d.errors import MeshError

SQUARE = "0 0 0\n1 0 0\n1 1 0\n0 1 0\n"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def tetra_off(header: str) -> str:
    return header + "0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 2 1\n3 0 1 3\n3 0 3 2\n3 1 2 3\n"


@pytest.mark.parametrize("header", ["OFF4 4 0\n", "OFF 4 4 0\n", "OFF\n4 4 0\n", "# comment\nOFF\n\n4 4 0 # counts\n"])
def test_off_headers_including_modelnet_glued_counts(tmp_path, header):
    mesh = load_mesh(write(tmp_path, "t.off", tetra_off(header)))
    assert mesh.vertices.shape == (4, 3) and mesh.faces.shape == (4, 3)
    assert mesh.is_watertight
    assert mesh.volume == pytest.approx(1 / 6)


def test_polygon_faces_are_fan_triangulated(tmp_path):
    text = "OFF\n6 2 0\n" + SQUARE + "2 0 0\n2 1 0\n4 0 1 2 3\n4 1 4 5 2\n"
    vertices, faces = read_off(write(tmp_path, "q.off", text))
    assert faces.tolist() == [[0, 1, 2], [0, 2, 3], [1, 4, 5], [1, 5, 2]]
    # mixed sizes (a pentagon and a triangle) and per-face colour values after the indices
    text = "OFF\n5 2 0\n" + SQUARE + "0.5 1.5 0\n5 0 1 2 4 3 255 0 0\n3 0 1 2 0 255 0\n"
    vertices, faces = read_off(write(tmp_path, "p.off", text))
    assert len(faces) == 3 + 1
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    assert mesh.area == pytest.approx(1.25 + 0.5)


def test_vertex_colours_and_coff(tmp_path):
    text = "COFF\n3 1 0\n0 0 0 255 0 0 255\n1 0 0 0 255 0 255\n0 1 0 0 0 255 255\n3 0 1 2\n"
    vertices, faces = read_off(write(tmp_path, "c.off", text))
    assert vertices.tolist() == [[0, 0, 0], [1, 0, 0], [0, 1, 0]]


@pytest.mark.parametrize(
    "name,text,reason",
    [
        ("empty.off", "", "empty file"),
        ("garbage.off", "hello world\n1 2 3\n", "not an OFF file"),
        ("counts.off", "OFF\nthree 1 0\n", "bad vertex/face counts"),
        ("trunc.off", "OFF\n4 2 0\n0 0 0\n1 0 0\n", "truncated"),
        ("nan.off", "OFF\n3 1 0\n0 0 0\n1 x 0\n0 1 0\n3 0 1 2\n", "non-numeric vertex data"),
        ("index.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", "face index out of range"),
        ("points.off", "OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n", "point cloud only"),
        ("line.off", "OFF\n3 1 0\n0 0 0\n1 1 1\n2 2 2\n3 0 1 2\n", "zero surface area"),
        ("dot.off", "OFF\n3 1 0\n1 1 1\n1 1 1\n1 1 1\n3 0 1 2\n", "zero extent"),
    ],
)
def test_bad_off_files_raise_one_line_mesh_errors(tmp_path, name, text, reason):
    path = write(tmp_path, name, text)
    with pytest.raises(MeshError) as info:
        load_mesh(path)
    assert reason in info.value.reason
    assert info.value.source == str(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_other_formats_and_bad_ones(tmp_path):
    box = trimesh.creation.box()
    box.export(tmp_path / "box.obj")
    assert len(load_mesh(tmp_path / "box.obj").faces) == 12
    # a scene of two meshes is concatenated into one
    scene = trimesh.Scene([box, trimesh.creation.icosphere(1).apply_translation((3, 0, 0))])
    scene.export(tmp_path / "scene.glb")
    assert len(load_mesh(tmp_path / "scene.glb").faces) == 12 + 80
    # point-cloud-only PLY, garbage with a mesh suffix, a missing file
    trimesh.PointCloud(np.random.default_rng(0).random((10, 3))).export(tmp_path / "cloud.ply")
    write(tmp_path, "junk.stl", "definitely not an stl")
    for name, reason in [("cloud.ply", "point cloud"), ("junk.stl", ""), ("missing.obj", "no such file")]:
        with pytest.raises(MeshError) as info:
            load_mesh(tmp_path / name)
        assert reason in info.value.reason and "\n" not in str(info.value)


def test_check_mesh_in_memory():
    good = trimesh.creation.box()
    assert check_mesh(good, "box") is good
    cases = [
        (trimesh.Trimesh(), "empty mesh"),
        (trimesh.Trimesh(np.eye(3), np.zeros((0, 3), int)), "point cloud only"),
        (trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [np.nan, 1, 0]], [[0, 1, 2]], process=False), "non-finite"),
        (trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [2, 0, 0]], [[0, 1, 2]], process=False), "zero surface area"),
        ("not a mesh", "not a triangle mesh"),
    ]
    for mesh, reason in cases:
        with pytest.raises(MeshError) as info:
            check_mesh(mesh, "src")
        assert reason in info.value.reason and info.value.source == "src"


def test_real_modelnet_meshes(shared_data):
    files = sorted((shared_data / "meshes").glob("*.off"))
    if not files:
        pytest.skip("no meshes in ../shared/data/meshes")
    for path in files:
        mesh = load_mesh(path)
        reference = trimesh.load(str(path), force="mesh")  # these files have standard headers
        assert len(mesh.faces) == len(reference.faces) > 0
        assert mesh.area == pytest.approx(reference.area)
        np.testing.assert_allclose(mesh.bounds, reference.bounds)
