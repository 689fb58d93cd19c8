"""The HDF5 dataset format: round trip, atomic write, resume, validation of foreign files."""

import json

import h5py
import numpy as np
import pytest

from vol3d.data.store import DatasetWriter, open_dataset, partial_path, read_volumes, write_dataset
from vol3d.errors import FormatError, Vol3dError

R = 8
CLASSES = ["cube", "ball", "rod"]


def make_split(n, seed=0, dtype=np.uint8):
    """Random ``(n, R, R, R)`` volumes with labels, sources and random-ish rotations."""
    rng = np.random.default_rng(seed)
    volumes = (rng.random((n, R, R, R)) < 0.3).astype(dtype) if dtype == np.uint8 else \
        rng.normal(size=(n, R, R, R)).astype(dtype)
    rotations = np.linalg.qr(rng.normal(size=(n, 3, 3)))[0].astype(np.float32)
    return {"volumes": volumes, "labels": rng.integers(0, len(CLASSES), n),
            "sources": [f"mesh_{seed}_{i}.off" for i in range(n)], "rotations": rotations}


def writer(path, resume_key=None, dtype="uint8"):
    return DatasetWriter(path, classes=CLASSES, resolution=R, representation="solid", normalization="sphere",
                         command="vol3d voxelize src out.h5", dtype=dtype, resume_key=resume_key)


@pytest.mark.parametrize("dtype", [np.uint8, np.float16])
def test_round_trip(tmp_path, dtype):
    splits = {"train": make_split(7, 0, dtype), "test": make_split(3, 1, dtype)}
    out = write_dataset(tmp_path / "d.h5", splits, classes=CLASSES, representation="sdf", normalization="cube",
                        command="cmd line", errors=[("bad.off", "empty mesh")])
    with open_dataset(out) as f:
        assert f.classes == CLASSES and f.resolution == R
        assert (f.representation, f.normalization, f.attrs["command"]) == ("sdf", "cube", "cmd line")
        assert f.attrs["format"] == "vol3d" and f.attrs["format_version"] == 1 and f.attrs["created"]
        assert list(f.splits) == ["train", "test"]  # writing order is kept
        assert f.splits == {"train": 7, "test": 3}
        for name, data in splits.items():
            assert f.volumes(name).dtype == dtype
            np.testing.assert_array_equal(f.volumes(name)[...], data["volumes"])
            np.testing.assert_array_equal(f.labels(name), data["labels"])
            assert f.labels(name).dtype == np.int64
            assert f.sources(name) == data["sources"]
            np.testing.assert_array_equal(f.rotations(name), data["rotations"])
        assert f.errors == [("bad.off", "empty mesh")]
        assert f.volumes("train").chunks == (1, R, R, R) and f.volumes("train").compression == "gzip"
    assert not partial_path(out).exists()


def test_identity_rotations_when_none(tmp_path):
    with writer(tmp_path / "d.h5") as w:
        w.append("train", np.zeros((2, R, R, R), bool), [0, 1], ["a", "b"])
    with open_dataset(tmp_path / "d.h5") as f:
        np.testing.assert_array_equal(f.rotations("train"), np.broadcast_to(np.eye(3), (2, 3, 3)))


def test_read_volumes_matches_slicing(tmp_path):
    data = make_split(20)
    write_dataset(tmp_path / "d.h5", {"train": data}, classes=CLASSES, representation="solid", normalization="sphere")
    indices = [13, 2, 2, 19, 0, 7]
    with open_dataset(tmp_path / "d.h5") as f:
        np.testing.assert_array_equal(read_volumes(f.volumes("train"), indices), data["volumes"][indices])
        with pytest.raises(IndexError):
            read_volumes(f.volumes("train"), [20])


def test_exception_leaves_no_output_only_partial(tmp_path):
    out = tmp_path / "d.h5"
    with pytest.raises(RuntimeError):
        with writer(out) as w:
            w.append("train", make_split(2)["volumes"], [0, 1], ["a", "b"])
            raise RuntimeError("crash")
    assert not out.exists()
    assert partial_path(out).exists() and partial_path(out).parent == out.parent


def test_resume_skips_done_items_and_drops_uncommitted(tmp_path):
    out, data = tmp_path / "d.h5", make_split(6)
    rows = lambda a, b: (data["volumes"][a:b], data["labels"][a:b], data["sources"][a:b])  # noqa: E731
    with pytest.raises(KeyboardInterrupt):
        with writer(out, resume_key="k1") as w:
            w.append("train", *rows(0, 2))
            w.add_error("bad.off", "unreadable")
            w.mark_done(3)  # 3 input items, one of them failed
            w.append("train", *rows(2, 4))  # interrupted before mark_done: must not survive
            w.append("test", *rows(4, 5))
            raise KeyboardInterrupt
    with writer(out, resume_key="k1") as w:
        assert w.resumed and w.num_done == 3 and w.counts == {"train": 2, "errors": 1}
        w.append("train", *rows(2, 6))
        w.mark_done(7)
    with open_dataset(out) as f:
        assert f.splits == {"train": 6}
        assert f.sources("train") == data["sources"]  # in order, no duplicates
        np.testing.assert_array_equal(f.volumes("train")[...], data["volumes"])
        assert f.errors == [("bad.off", "unreadable")]
        assert "_resume" not in f.attrs


def test_other_key_starts_over(tmp_path):
    out = tmp_path / "d.h5"
    with pytest.raises(KeyboardInterrupt), writer(out, resume_key="k1") as w:
        w.append("train", np.zeros((1, R, R, R)), [0], ["a"])
        w.mark_done(1)
        raise KeyboardInterrupt
    for key in ("k2", None):
        w = writer(out, resume_key=key)
        assert not w.resumed and w.num_done == 0
        w.abort()


def test_corrupt_partial_starts_over(tmp_path):
    out = tmp_path / "d.h5"
    partial_path(out).write_bytes(b"\x89HDF\r\n\x1a\n" + b"garbage" * 100)
    with writer(out, resume_key="k") as w:
        assert not w.resumed
        w.append("train", np.ones((1, R, R, R)), [2], ["a"])
    with open_dataset(out) as f:
        assert f.splits == {"train": 1}


def test_writer_validates_batches(tmp_path):
    with writer(tmp_path / "d.h5") as w:
        with pytest.raises(Vol3dError, match="volumes"):
            w.append("train", np.zeros((2, R, R, R + 1)), [0, 1], ["a", "b"])
        with pytest.raises(Vol3dError, match="labels"):
            w.append("train", np.zeros((2, R, R, R)), [0, 3], ["a", "b"])
        with pytest.raises(Vol3dError, match="sources"):
            w.append("train", np.zeros((2, R, R, R)), [0, 1], ["a"])
    with pytest.raises(Vol3dError, match="does not exist"):
        writer(tmp_path / "missing" / "d.h5")


@pytest.fixture
def valid_file(tmp_path):
    path = tmp_path / "d.h5"
    write_dataset(path, {"train": make_split(3)}, classes=CLASSES, representation="solid", normalization="sphere")
    return path


def test_random_bytes_is_not_hdf5(tmp_path):
    path = tmp_path / "junk.h5"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(FormatError, match=r"junk\.h5: not an HDF5 file"):
        open_dataset(path)
    with pytest.raises(FormatError, match="no such file"):
        open_dataset(tmp_path / "absent.h5")


def test_hdf5_without_attributes(tmp_path):
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as h5:
        h5["volumes"] = np.zeros((2, 4, 4, 4))
    with pytest.raises(FormatError, match=r"foreign\.h5: missing root attribute 'format'"):
        open_dataset(path)


@pytest.mark.parametrize("attr", ["classes", "resolution", "representation", "normalization"])
def test_missing_attribute_is_named(valid_file, attr):
    with h5py.File(valid_file, "a") as h5:
        del h5.attrs[attr]
    with pytest.raises(FormatError, match=f"missing root attribute '{attr}'"):
        open_dataset(valid_file)


@pytest.mark.parametrize("dataset", ["labels", "volumes", "sources", "rotations"])
def test_missing_dataset_is_named(valid_file, dataset):
    with h5py.File(valid_file, "a") as h5:
        del h5["train"][dataset]
    with pytest.raises(FormatError, match=f"missing dataset '/train/{dataset}'"):
        open_dataset(valid_file)


@pytest.mark.parametrize("edit, message", [
    (lambda h5: h5.attrs.__setitem__("classes", "not json"), "'classes' must be a JSON list"),
    (lambda h5: h5.attrs.__setitem__("resolution", R + 1), r"'/train/volumes' has shape"),
    (lambda h5: h5.attrs.__setitem__("format_version", 99), "newer"),
    (lambda h5: h5.attrs.__setitem__("classes", json.dumps(["a"])), r"labels' must hold integers in \[0, 1\)"),
])
def test_malformed_file_is_explained(valid_file, edit, message):
    with h5py.File(valid_file, "a") as h5:
        edit(h5)
    with pytest.raises(FormatError, match=message):
        open_dataset(valid_file)


def test_unknown_split_is_named(valid_file):
    with open_dataset(valid_file) as f, pytest.raises(FormatError, match="no split 'val'.*has: train"):
        f.volumes("val")
