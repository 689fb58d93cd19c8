"""Voxelizing whole datasets: order, workers, rotations, resume, bad files."""

from pathlib import Path

import numpy as np
import pytest

from vol3d.data import pipeline
from vol3d.data.pipeline import voxelize_dataset
from vol3d.data.store import open_dataset
from vol3d.errors import MeshError

CUBE_OFF = """OFF
8 6 0
0 0 0
1 0 0
1 1 0
0 1 0
0 0 1
1 0 1
1 1 1
0 1 1
4 0 3 2 1
4 4 5 6 7
4 0 1 5 4
4 2 3 7 6
4 1 2 6 5
4 0 4 7 3
"""


def _read_all(path):
    with open_dataset(path) as f:
        return {
            split: (f.volumes(split)[:], f.labels(split)[:], list(f.sources(split)), f.rotations(split)[:])
            for split in f.splits
        }


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for split in a:
        for x, y in zip(a[split], b[split]):
            assert np.array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture
def mesh_folder(tmp_path) -> Path:
    """A <class>/<file> folder with good meshes and one of each kind of bad file."""
    for cls in ("cube", "tall"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            text = CUBE_OFF if cls == "cube" else CUBE_OFF.replace(" 1\n", f" {3 + i}\n")
            (tmp_path / cls / f"{cls}_{i}.off").write_text(text)
    (tmp_path / "cube" / "empty.off").write_text("")
    (tmp_path / "cube" / "garbage.off").write_bytes(b"\x00\x01 not a mesh at all")
    (tmp_path / "tall" / "points.off").write_text("OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n")
    return tmp_path


def test_tetris_dataset_and_rotations(tmp_path):
    out = tmp_path / "tetris.h5"
    summary = voxelize_dataset("builtin:tetris", out, resolution=16, rotations=3, rotation_group="octa", progress=False)
    assert out.exists() and summary.errors == []
    data = _read_all(out)
    with open_dataset(out) as f:
        assert len(f.classes) == 8 and f.resolution == 16
        volumes, labels, sources, mats = data["train"]
        assert volumes.shape[1:] == (16, 16, 16) and len(volumes) == 3 * len(set(sources))
        assert volumes.dtype == np.uint8 and set(np.unique(volumes)) <= {0, 1}
    # every sample carries its rotation: three distinct cube rotations per mesh
    assert np.allclose(mats @ mats.transpose(0, 2, 1), np.eye(3), atol=1e-6)
    for n in range(0, len(mats), 3):
        assert len({np.round(m).astype(int).tobytes() for m in mats[n:n + 3]}) == 3
    # voxelizing a cube-rotated mesh keeps the number of occupied voxels
    counts = volumes.reshape(len(volumes), -1).sum(1).reshape(-1, 3)
    assert np.all(counts == counts[:, :1])


def test_output_is_identical_for_any_number_of_workers(tmp_path):
    kwargs = dict(resolution=16, rotations=2, rotation_group="so3", progress=False)
    voxelize_dataset("builtin:tetris", tmp_path / "one.h5", workers=1, **kwargs)
    voxelize_dataset("builtin:tetris", tmp_path / "two.h5", workers=2, **kwargs)
    _assert_same(_read_all(tmp_path / "one.h5"), _read_all(tmp_path / "two.h5"))


def test_interrupted_run_resumes_to_the_same_output(tmp_path, monkeypatch):
    voxelize_dataset("builtin:tetris", tmp_path / "clean.h5", resolution=12, progress=False)
    monkeypatch.setattr(pipeline, "FLUSH_EVERY", 3)
    flush, calls = pipeline._flush, []

    def flush_then_die(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-run
        flush(*args, **kwargs)

    monkeypatch.setattr(pipeline, "_flush", flush_then_die)
    out = tmp_path / "resumed.h5"
    with pytest.raises(KeyboardInterrupt):
        voxelize_dataset("builtin:tetris", out, resolution=12, progress=False)
    assert not out.exists()  # never a half file
    monkeypatch.setattr(pipeline, "_flush", flush)
    summary = voxelize_dataset("builtin:tetris", out, resolution=12, progress=False)
    assert summary.resumed_from == 6
    _assert_same(_read_all(tmp_path / "clean.h5"), _read_all(out))


def test_bad_files_are_skipped_and_listed(mesh_folder, tmp_path):
    out = tmp_path / "folder.h5"
    summary = voxelize_dataset(mesh_folder, out, resolution=12, test_fraction=0.0, progress=False)
    assert summary.num_samples == 6
    skipped = {Path(source).name for source, _ in summary.errors}
    assert skipped == {"empty.off", "garbage.off", "points.off"}
    assert all(reason for _, reason in summary.errors)
    with open_dataset(out) as f:
        assert sorted(Path(s).name for s, _ in f.errors) == sorted(skipped)
    assert "skipped 3 file(s)" in summary.format()


def test_strict_stops_at_the_first_bad_file(mesh_folder, tmp_path):
    with pytest.raises(MeshError) as info:
        voxelize_dataset(mesh_folder, tmp_path / "strict.h5", resolution=12, strict=True, progress=False)
    assert Path(info.value.source).name in {"empty.off", "garbage.off", "points.off"}
    assert not (tmp_path / "strict.h5").exists()
