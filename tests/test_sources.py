"""Source discovery: builtin:NAME, ModelNet folders, generic class folders, CSV manifests, errors."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import trimesh

from vol3d.data.sources import MeshSource, discover_sources
from vol3d.errors import UsageError, Vol3dError

# A unit cube with ModelNet's broken header: counts glued to "OFF" on the first line.
BROKEN_OFF = "OFF8 6 0\n" + "".join(
    f"{x} {y} {z}\n" for x in (0, 1) for y in (0, 1) for z in (0, 1)
) + "4 0 1 3 2\n4 4 6 7 5\n4 0 4 5 1\n4 2 3 7 6\n4 0 2 6 4\n4 1 5 7 3\n"


def _write_mesh(path: Path) -> Path:
    """Write a small tetrahedron in the format given by the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    trimesh.creation.icosahedron().export(path)
    return path


def _rel(items, root):
    return [(Path(it.source).relative_to(root).as_posix(), it.label, it.split) for it in items]


@pytest.fixture
def modelnet(tmp_path):
    """A ModelNet-style folder, with junk that must be ignored."""
    root = tmp_path / "ModelNet"
    for rel in ("chair/train/chair_0002.off", "chair/train/chair_0001.off", "chair/test/chair_0003.off",
                "bed/train/bed_0001.off"):
        _write_mesh(root / rel)
    (root / "bed/test").mkdir()
    (root / "bed/test/bed_0002.off").write_text(BROKEN_OFF)
    (root / "README.txt").write_text("not a class")
    (root / "chair/train/.DS_Store").write_text("junk")
    (root / "__MACOSX/train").mkdir(parents=True)
    return root


def test_builtin_sources():
    classes, items = discover_sources("builtin:tetris", test_fraction=0.5)
    assert len(classes) == 8 and Counter(it.split for it in items) == {"train": 8, "test": 8}
    assert all(isinstance(it, MeshSource) and it.mesh is not None for it in items)
    with pytest.raises(UsageError, match="builtin:synthetic, builtin:tetris"):
        discover_sources("builtin:shapenet")


def test_modelnet_folder(modelnet):
    classes, items = discover_sources(modelnet, test_fraction=0.5)  # fraction unused: split given
    assert classes == ["bed", "chair"]
    assert _rel(items, modelnet) == [
        ("bed/train/bed_0001.off", "bed", "train"),
        ("chair/train/chair_0001.off", "chair", "train"),
        ("chair/train/chair_0002.off", "chair", "train"),
        ("bed/test/bed_0002.off", "bed", "test"),
        ("chair/test/chair_0003.off", "chair", "test"),
    ]
    assert all(it.mesh is None for it in items)


def test_modelnet_broken_header_loads(modelnet):
    pytest.importorskip("vol3d.data.meshes")
    _, items = discover_sources(modelnet)
    mesh = next(it for it in items if it.source.endswith("bed_0002.off")).load()
    assert len(mesh.vertices) == 8 and np.isclose(abs(mesh.volume), 1.0)


def test_modelnet_class_without_split_folder_is_an_error(modelnet):
    _write_mesh(modelnet / "desk" / "desk_0001.off")
    with pytest.raises(Vol3dError, match="desk.*train/ or test/"):
        discover_sources(modelnet)


def _generic(root: Path, order):
    """Class ``a`` with 10 meshes (mixed formats, one nested), ``b`` with 5, plus a non-mesh file."""
    names = [f"a/m{i}.{ext}" for i, ext in enumerate(["obj", "stl", "ply", "off", "obj"] * 2)]
    names[-1] = "a/nested/m9.obj"
    names += [f"b/n{i}.off" for i in range(5)]
    for i in order(len(names)):
        _write_mesh(root / names[i])
    (root / "b" / "notes.txt").write_text("not a mesh")
    return root


def test_generic_folder_split_is_stratified_seeded_and_order_free(tmp_path):
    root = _generic(tmp_path / "g1", lambda n: range(n))
    classes, items = discover_sources(root, test_fraction=0.2, seed=1)
    assert classes == ["a", "b"]
    assert Counter((it.split, it.label) for it in items) == {
        ("train", "a"): 8, ("test", "a"): 2, ("train", "b"): 4, ("test", "b"): 1}
    assert "a/nested/m9.obj" in [r for r, _, _ in _rel(items, root)]
    keys = [(it.split != "train", it.label, it.source) for it in items]
    assert keys == sorted(keys)
    # same split from a folder written in another order; another seed gives another split
    shuffled = _generic(tmp_path / "g2", lambda n: np.random.default_rng(5).permutation(n))
    assert _rel(discover_sources(shuffled, test_fraction=0.2, seed=1)[1], shuffled) == _rel(items, root)
    other = discover_sources(root, test_fraction=0.2, seed=2)[1]
    assert {it.source for it in other if it.split == "test"} != {it.source for it in items if it.split == "test"}
    # test_fraction 0 keeps everything in train
    assert {it.split for it in discover_sources(root, test_fraction=0.0)[1]} == {"train"}


def test_csv_manifest_with_header_and_split(tmp_path):
    _write_mesh(tmp_path / "meshes/x.obj")
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,label,split\nmeshes/x.obj,zeta,test\n\nmeshes/y.obj,alpha,train\n")
    classes, items = discover_sources(manifest)
    assert classes == ["alpha", "zeta"]
    assert _rel(items, tmp_path) == [("meshes/y.obj", "alpha", "train"), ("meshes/x.obj", "zeta", "test")]


def test_csv_manifest_without_header_or_split_is_split_here(tmp_path):
    rows = [f"/abs/c{i % 2}/{i}.off,c{i % 2}" for i in range(10)]
    manifest = tmp_path / "m.csv"
    manifest.write_text("\n".join(rows) + "\n")
    classes, items = discover_sources(manifest, test_fraction=0.4, seed=0)
    assert classes == ["c0", "c1"]
    assert Counter((it.split, it.label) for it in items) == {
        ("train", "c0"): 3, ("test", "c0"): 2, ("train", "c1"): 3, ("test", "c1"): 2}
    assert items[0].source.startswith("/abs/")  # absolute paths stay absolute
    # rows with an empty split column are split too; given splits are kept
    manifest.write_text("a.off,c0,\nb.off,c0,val\n")
    assert [(it.split, Path(it.source).name) for it in discover_sources(manifest)[1]] == [
        ("train", "a.off"), ("val", "b.off")]


@pytest.mark.parametrize("text, line, what", [
    ("path,label\nonly_a_path.off\n", 2, "expected 'path,label"),
    ("a.off,c,train,extra\n", 1, "expected 'path,label"),
    ("a.off,c\n,c\n", 2, "expected 'path,label"),
    ("a.off,c,train\nb.off,c,bad split\n", 2, "bad split name"),
])
def test_csv_bad_row_names_the_line(tmp_path, text, line, what):
    manifest = tmp_path / "bad.csv"
    manifest.write_text(text)
    with pytest.raises(Vol3dError, match=f"bad.csv, line {line}: {what}"):
        discover_sources(manifest)


def test_source_errors_name_the_path(tmp_path):
    with pytest.raises(UsageError, match="missing_dir: no such file"):
        discover_sources(tmp_path / "missing_dir")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    (tmp_path / "empty" / "cls" / "readme.md").write_text("no meshes here")
    with pytest.raises(Vol3dError, match="empty: no mesh files found"):
        discover_sources(tmp_path / "empty")
    (tmp_path / "blank.csv").write_text("path,label\n")
    with pytest.raises(Vol3dError, match="blank.csv: manifest has no rows"):
        discover_sources(tmp_path / "blank.csv")
    (tmp_path / "data.npz").write_bytes(b"")
    with pytest.raises(UsageError, match="data.npz: not a folder"):
        discover_sources(tmp_path / "data.npz")
    with pytest.raises(UsageError, match="test_fraction"):
        discover_sources("builtin:tetris", test_fraction=1.0)
