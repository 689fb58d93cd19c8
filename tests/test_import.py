"""vol3d import (every source layout, value conversion, splits, bad input) and resample.py."""

import h5py
import numpy as np
import pytest
import trimesh
from trimesh.exchange.binvox import export_binvox

from vol3d.data.importers import import_volumes
from vol3d.data.resample import occupied_radius, pad_for_rotation, resample_volumes, rotation_safe_size
from vol3d.data.store import open_dataset
from vol3d.errors import FormatError, UsageError
from vol3d.rotations import rotation_about_z, sample_rotations

R = 8


def volumes(n, seed=0, scale=1):
    """``(n, R, R, R)`` uint8 blobs with values ``{0, scale}``; sample ``i`` differs from the rest."""
    rng = np.random.default_rng(seed)
    return ((rng.random((n, R, R, R)) < 0.3) * scale).astype(np.uint8)


def run(src, tmp_path, **kwargs):
    out = tmp_path / "out.h5"
    summary = import_volumes(src, out, show_progress=False, **kwargs)
    return summary, open_dataset(out)


def test_medmnist_layout(tmp_path):
    train, val = volumes(5, 0, 255), volumes(3, 1, 255)
    np.savez(tmp_path / "m.npz", train_images=train, train_labels=np.array([[0], [1], [1], [0], [2]], np.uint8),
             val_images=val, val_labels=np.array([[2], [2], [0]], np.uint8))  # uint8 (N, 1) as in MedMNIST
    summary, f = run(tmp_path / "m.npz", tmp_path)
    with f:
        assert f.splits == {"train": 5, "val": 3} and f.classes == ["0", "1", "2"]
        assert f.representation == "occupancy" and f.volumes("train").dtype == np.uint8
        np.testing.assert_array_equal(f.volumes("train")[...], train // 255)  # {0,255} -> {0,1}
        np.testing.assert_array_equal(f.labels("val"), [2, 2, 0])
        assert f.sources("val")[1] == "m.npz:val_images[1]" and f.normalization == "imported"
    assert summary["splits"] == {"train": 5, "val": 3} and summary["resolution"] == R


def test_x_y_layout_with_channel_axis_and_greyscale(tmp_path):
    grey = np.random.default_rng(0).integers(0, 256, (4, 1, R, R, R)).astype(np.uint8)
    np.savez(tmp_path / "xy.npz", X_train=grey, y_train=np.array([0, 1, 0, 1]), X_test=grey[:2], y_test=[1, 1])
    summary, f = run(tmp_path / "xy.npz", tmp_path)
    with f:
        assert f.representation == "intensity" and f.volumes("test").dtype == np.float16
        np.testing.assert_allclose(f.volumes("train")[...], grey[:, 0] / 255, atol=1e-3)
    assert summary["dtype"] == "float16"


def test_volumes_labels_classes_layout_and_test_fraction(tmp_path):
    labels = np.repeat([0, 1], 10)
    np.savez(tmp_path / "v.npz", volumes=volumes(20).astype(bool), labels=labels, classes=np.array(["cup", "pen"]))
    _, f = run(tmp_path / "v.npz", tmp_path, test_fraction=0.3, seed=1)
    with f:
        assert f.classes == ["cup", "pen"] and f.splits == {"train": 14, "test": 6}
        assert np.bincount(f.labels("test")).tolist() == [3, 3]  # stratified
        sources = f.sources("train") + f.sources("test")
        assert sorted(sources) == sorted(f"v.npz:volumes[{i}]" for i in range(20))
    _, again = run(tmp_path / "v.npz", tmp_path, test_fraction=0.3, seed=1)
    with again:
        assert again.sources("test") == sources[14:]  # seeded: the same split again


def test_string_labels_and_class_override(tmp_path):
    np.savez(tmp_path / "s.npz", volumes=volumes(3), labels=np.array(["b", "a", "b"]))
    _, f = run(tmp_path / "s.npz", tmp_path)
    with f:
        assert f.classes == ["a", "b"] and f.labels("train").tolist() == [1, 0, 1]
    _, f = run(tmp_path / "s.npz", tmp_path, classes=["first", "second"])
    with f:
        assert f.classes == ["first", "second"]


def test_hdf5_by_dataset_path_and_key(tmp_path):
    vols = volumes(4)
    with h5py.File(tmp_path / "src.h5", "w") as h5:
        h5["grp/vox"] = vols[:, None]
        h5["grp/labels"] = np.array([1, 0, 1, 1])
        h5["grp"].attrs["classes"] = '["no", "yes"]'
    for kwargs in ({"src": f"{tmp_path / 'src.h5'}:/grp/vox"}, {"src": tmp_path / "src.h5", "key": "/grp/vox"}):
        src = kwargs.pop("src")
        _, f = run(src, tmp_path, **kwargs)
        with f:
            assert f.classes == ["no", "yes"] and f.labels("train").tolist() == [1, 0, 1, 1]
            np.testing.assert_array_equal(f.volumes("train")[...], vols)
    with pytest.raises(UsageError, match="name the volumes dataset"):
        run(tmp_path / "src.h5", tmp_path)
    with pytest.raises(FormatError, match="missing dataset '/grp/nope'"):
        run(tmp_path / "src.h5", tmp_path, key="/grp/nope")


def test_reimport_vol3d_file_with_resampling(tmp_path):
    np.savez(tmp_path / "v.npz", volumes=np.pad(np.ones((2, 4, 4, 4), np.uint8), [(0, 0)] + [(2, 2)] * 3),
             labels=[0, 0])
    import_volumes(tmp_path / "v.npz", tmp_path / "first.h5", show_progress=False)
    summary, f = run(tmp_path / "first.h5", tmp_path, resolution=4)
    with f:
        expected = np.zeros((4, 4, 4), np.uint8)
        expected[1:3, 1:3, 1:3] = 1  # the centred 4^3 block of an 8-grid is the centred 2^3 of a 4-grid
        np.testing.assert_array_equal(f.volumes("train")[0], expected)
    assert summary["original_resolutions"] == [8] and summary["resolution"] == 4


def write_binvox(path, matrix):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(export_binvox(trimesh.voxel.VoxelGrid(matrix.astype(bool))))


def test_binvox_and_npy_folders(tmp_path):
    src = tmp_path / "src"
    asymmetric = np.zeros((R, R, R), bool)
    asymmetric[1, 2, 5] = asymmetric[6, 0, 3] = True  # catches any axis swap
    write_binvox(src / "chair" / "train" / "a.binvox", asymmetric)
    write_binvox(src / "chair" / "test" / "b.binvox", ~asymmetric)
    write_binvox(src / "desk" / "train" / "c.binvox", asymmetric)
    summary, f = run(src, tmp_path)
    with f:
        assert f.classes == ["chair", "desk"] and f.splits == {"test": 1, "train": 2}
        np.testing.assert_array_equal(f.volumes("train")[0], asymmetric)
        assert f.sources("train")[0].endswith("a.binvox") and f.labels("train").tolist() == [0, 1]
    npy = tmp_path / "npy"
    for i, cls in enumerate(["x", "y", "y"]):
        (npy / "train" / cls).mkdir(parents=True, exist_ok=True)
        np.save(npy / "train" / cls / f"{i}.npy", volumes(1, i)[0])
    _, f = run(npy, tmp_path)
    with f:
        assert f.classes == ["x", "y"] and f.splits == {"train": 3}
        np.testing.assert_array_equal(f.volumes("train")[2], volumes(1, 2)[0])


def test_mixed_resolutions_need_resolution(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((R, R, R), np.uint8))
    np.save(tmp_path / "b.npy", np.ones((2 * R, 2 * R, 2 * R), np.uint8))
    with pytest.raises(UsageError, match="different resolutions.*--resolution"):
        run(tmp_path, tmp_path)
    summary, f = run(tmp_path, tmp_path, resolution=R)
    with f:
        assert f.volumes("train")[...].all() and summary["original_resolutions"] == [R, 2 * R]


def test_pad_for_rotation(tmp_path):
    vols = np.zeros((2, R, R, R), np.uint8)
    vols[0, 0, 0, 0] = vols[1, R // 2, R // 2, R // 2] = 1  # a corner voxel: the farthest possible
    np.savez(tmp_path / "c.npz", volumes=vols, labels=[0, 0])
    summary, f = run(tmp_path / "c.npz", tmp_path, pad_for_rotation=True)
    with f:
        padded = f.volumes("train")[...]
    size = padded.shape[1]
    assert summary["resolution"] == size and (size - R) % 2 == 0
    assert size >= 2 * occupied_radius(vols) and padded.sum() == 2
    assert occupied_radius(padded) == pytest.approx(occupied_radius(vols))  # centre kept


def test_pad_for_rotation_to_a_given_size(tmp_path):
    """An integer pads to that grid (cheaper than rotation-safe), centred; sizes that cannot be
    reached symmetrically are refused naming the option."""
    vols = volumes(3)
    np.savez(tmp_path / "c.npz", volumes=vols, labels=[0, 1, 0])
    summary, f = run(tmp_path / "c.npz", tmp_path, pad_for_rotation=R + 4)
    with f:
        padded = f.volumes("train")[...]
    assert summary["resolution"] == R + 4 and summary["padded"]
    np.testing.assert_array_equal(padded[:, 2:-2, 2:-2, 2:-2], vols)
    assert padded.sum() == vols.sum()
    for size in (R + 3, R - 2):
        with pytest.raises(UsageError, match=rf"c\.npz: pad_for_rotation={size}: cannot pad the 8\^3 grid"):
            run(tmp_path / "c.npz", tmp_path, pad_for_rotation=size)


@pytest.mark.parametrize("arrays, message", [
    ({"volumes": np.zeros((2, R, R, R + 1)), "labels": [0, 0]}, r"'volumes' has shape \(2, 8, 8, 9\)"),
    ({"volumes": np.zeros((2, R, R, R)), "labels": [0, 0, 0]}, r"'labels' has shape \(3,\)"),
    ({"volumes": np.zeros((2, R, R, R))}, "missing array 'labels'"),
    ({"images": np.zeros((2, R, R, R))}, "no volumes found"),
    ({"volumes": np.zeros((2, R, R, R)), "labels": [0, -1]}, "outside"),
])
def test_bad_npz_is_explained(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(FormatError, match=message):
        run(tmp_path / "bad.npz", tmp_path)
    assert not (tmp_path / "out.h5").exists()


def test_bad_sources_and_options(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        run(tmp_path / "absent.npz", tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(FormatError, match="unsupported source"):
        run(tmp_path / "notes.txt", tmp_path)
    (tmp_path / "broken.binvox").write_text("#binvox 1\ngarbage")
    with pytest.raises(FormatError, match=r"broken\.binvox: cannot read volume"):
        run(tmp_path / "broken.binvox", tmp_path)
    with pytest.raises(UsageError, match="test-fraction"):
        run(tmp_path / "notes.txt", tmp_path, test_fraction=1.5)


@pytest.mark.shared_data
def test_real_modelnet_npz(shared_data, tmp_path):
    summary, f = run(shared_data / "modelnet10_train_32.npz", tmp_path, test_fraction=0.2)
    with f:
        assert f.classes[0] == "bathtub" and len(f.classes) == 10 and f.resolution == 32
        assert sum(f.splits.values()) == 3991 and f.representation == "occupancy"
    assert summary["splits"]["test"] == pytest.approx(0.2 * 3991, abs=10)


@pytest.mark.shared_data
def test_real_medmnist_npz_with_resampling(shared_data, tmp_path):
    summary, f = run(shared_data / "adrenalmnist3d_28_trainval.npz", tmp_path, resolution=16)
    with f:
        assert f.splits == {"train": 1188, "val": 98} and f.classes == ["0", "1"] and f.resolution == 16
        assert set(np.unique(f.volumes("val")[...])) <= {0, 1} and f.volumes("val")[...].any()


@pytest.mark.shared_data
def test_real_binvox_files(shared_data, tmp_path):
    src = tmp_path / "binvox" / "toilet"
    src.mkdir(parents=True)
    for name in ("toilet_30.binvox", "toilet_256.binvox"):
        (src / name).symlink_to(shared_data / "meshes" / name)
    summary, f = run(tmp_path / "binvox", tmp_path, resolution=32)
    with f:
        vols = f.volumes("train")[...]
        assert f.classes == ["toilet"] and vols.shape == (2, 32, 32, 32)
        fills = vols.reshape(2, -1).mean(axis=1)
        assert np.all(fills > 0.02) and summary["original_resolutions"] == [30, 256]


# ------------------------------------------------------------------------------ resample.py


def test_area_downsampling_averages_boxes():
    vols = np.random.default_rng(0).random((3, 8, 8, 8)).astype(np.float32)
    expected = vols.reshape(3, 4, 2, 4, 2, 4, 2).mean(axis=(2, 4, 6))
    np.testing.assert_allclose(resample_volumes(vols, 4, "area"), expected, rtol=1e-6)


def test_binary_stays_binary_and_keeps_the_shape():
    ball = (np.linalg.norm(np.indices((16,) * 3) - 7.5, axis=0) < 6).astype(np.uint8)[None]
    for method in ("area", "trilinear"):
        for size in (8, 24):
            out = resample_volumes(ball, size, method)
            assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 1} and out.shape == (1,) + (size,) * 3
            # the occupied fraction of the grid is preserved to within a voxel layer
            assert abs(out.mean() - ball.mean()) < 6 / size * ball.mean()
            np.testing.assert_array_equal(out, out[:, ::-1, ::-1, ::-1])  # centred: stays symmetric
    assert resample_volumes(ball, 16) is ball


def test_trilinear_reproduces_linear_ramps():
    ramp = np.broadcast_to(np.arange(8, dtype=np.float32)[:, None, None], (8, 8, 8))[None]
    up = resample_volumes(ramp, 16, "trilinear")[0]
    # output voxel i has its centre at input coordinate (i + 0.5) / 2 - 0.5 (align_corners=False)
    centres = (np.arange(16) + 0.5) / 2 - 0.5
    np.testing.assert_allclose(up[2:-2, 5, 5], centres[2:-2], atol=1e-5)
    assert up.dtype == np.float32


def test_resample_rejects_bad_input():
    with pytest.raises(UsageError, match="method"):
        resample_volumes(np.zeros((1, 4, 4, 4)), 2, "cubic")
    with pytest.raises(UsageError, match=r"\(N, R, R, R\)"):
        resample_volumes(np.zeros((1, 4, 4, 5)), 2)


def rotate_voxel_centres(volume, rotation):
    """Occupied voxel centres of ``(S, S, S)`` rotated about the grid centre, rounded to indices."""
    centre = (volume.shape[0] - 1) / 2
    points = np.argwhere(volume) - centre
    return np.rint(points @ rotation.T + centre).astype(int)


def test_pad_for_rotation_keeps_every_voxel_under_any_rotation():
    rng = np.random.default_rng(3)
    vols = np.zeros((3, 9, 9, 9), np.uint8)
    vols[0, 0, 0, 0] = vols[1, 8, 4, 0] = 1
    vols[2, 2:7, 1:8, 3:6] = 1
    padded = pad_for_rotation(vols)
    size = padded.shape[1]
    assert size == rotation_safe_size(vols) and (size - 9) % 2 == 0 and size <= 9 * np.sqrt(3) + 2
    for volume, original in zip(padded, vols):
        assert volume.sum() == original.sum()
        for k in range(4):  # 90-degree rotations of the padded grid keep it whole
            assert np.rot90(volume, k, axes=(0, 1)).sum() == original.sum()
        for rotation in sample_rotations(20, "so3", rng):
            idx = rotate_voxel_centres(volume, rotation)
            assert idx.min() >= 0 and idx.max() < size  # nothing leaves the grid
    # the bound is tight: without padding the corner voxel leaves the grid under some rotation
    corner = rotate_voxel_centres(vols[0], rotation_about_z(np.pi / 4))
    assert corner.min() < 0 or corner.max() >= 9


def test_pad_for_rotation_is_a_no_op_for_a_centred_ball():
    ball = (np.linalg.norm(np.indices((12,) * 3) - 5.5, axis=0) < 3).astype(np.uint8)[None]
    assert pad_for_rotation(ball).shape == ball.shape
    assert rotation_safe_size(np.zeros((1, 5, 5, 5))) == 5
