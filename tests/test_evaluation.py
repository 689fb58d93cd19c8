"""vol3d.evaluation: seeded rotations, exact cube rotations, metrics, invariance of steerable models,
reports and bad input (tiny models and grids: the whole file runs in seconds)."""

import json

import h5py

import numpy as np
import pytest
import torch

from vol3d.checkpoint import save_checkpoint
from vol3d.data.store import write_dataset
from vol3d.errors import FormatError, UsageError, Vol3dError
from vol3d.evaluation import draw_rotations, evaluate, robustness_metrics
from vol3d.evaluation.robustness import accuracy_by_angle, is_exact
from vol3d.transforms import rotate_volumes
from vol3d.rotations import cube_rotations, rotation_about_z, sample_rotations
from vol3d.testing import gaussian_blobs, tiny_model

CLASSES = ["a", "b", "c", "d", "e"]


def blob_volumes(n, r, seed=0):
    return (gaussian_blobs(n, r, sigma=1.5, seed=seed)[:, 0].numpy() > 0.6).astype(np.uint8)


def make_data(path, n=10, r=9, classes=CLASSES, splits=("test",), seed=0):
    volumes = blob_volumes(n, r, seed)
    labels = np.arange(n) % len(classes)
    data = {s: {"volumes": volumes, "labels": labels, "sources": [f"obj{i}" for i in range(n)]} for s in splits}
    return write_dataset(path, data, classes=classes, representation="solid", normalization="imported")


def with_classes(model, classes=CLASSES, resolution=None):
    model.classes, model.resolution = list(classes), resolution
    return model


# ------------------------------------------------------------------------------ rotations


@pytest.mark.parametrize("r", [7, 8])
def test_identity_and_90_degree_rotations_are_exact_in_a_mixed_batch(r):
    x = torch.rand(4, 1, r, r, r)
    quarter = rotation_about_z(np.pi / 2)
    mats = np.stack([np.eye(3), quarter, sample_rotations(1, "so3", 0)[0], cube_rotations()[7]])
    assert is_exact(mats).tolist() == [True, True, False, True]
    out = rotate_volumes(x, mats)
    assert torch.equal(out[0], x[0])
    # a quarter turn about z moves the voxel at centred position p to R p: check voxel by voxel
    c = (r - 1) / 2
    idx = np.stack(np.meshgrid(*[np.arange(r)] * 3, indexing="ij"), -1).reshape(-1, 3)
    for b in (1, 3):
        dest = np.rint((idx - c) @ np.rint(mats[b]).T + c).astype(int)
        expected = torch.zeros_like(x[b, 0])
        expected[tuple(dest.T)] = x[b, 0][tuple(idx.T)]
        assert torch.equal(out[b, 0], expected)
    assert not torch.equal(out[2], x[2])  # the so3 draw is resampled


def test_rotations_are_seeded_per_sample_and_distinct_for_finite_groups():
    a = draw_rotations(5, 3, "so3", seed=1)
    assert np.array_equal(a, draw_rotations(5, 3, "so3", seed=1))
    assert np.array_equal(a[:2], draw_rotations(2, 3, "so3", seed=1))  # independent of the other samples
    assert not np.allclose(a, draw_rotations(5, 3, "so3", seed=2))
    assert np.allclose(a @ a.transpose(0, 1, 3, 2), np.eye(3), atol=1e-12)
    octa = draw_rotations(4, 24, "octa", seed=0)
    assert is_exact(octa).all()
    for per_sample in octa:  # all 24 cube rotations, each once
        assert len({m.astype(int).tobytes() for m in per_sample}) == 24


# ------------------------------------------------------------------------------ metrics


def test_metrics_on_hand_made_logits():
    labels = np.array([0, 1, 2, 0])
    aligned = np.eye(3)[[0, 1, 1, 0]] * 2.0  # predictions 0 1 1 0: 3 of 4 right
    rotated = np.stack([aligned, aligned], axis=1).copy()  # (4, 2, 3)
    rotated[0, 1] = [0, 3, 0]  # sample 0, draw 1: wrong and changed
    rotated[3, 0] = [2, 0, 0.5]  # logits change, prediction not
    angles = np.array([[10, 100], [20, 170], [30, 40], [5, 179]], dtype=float)
    m = robustness_metrics(aligned, rotated, labels, ["x", "y", "z"], angles)
    assert m["accuracy_aligned"] == 0.75
    assert m["accuracy_rotated"] == 5 / 8
    assert m["accuracy_rotated_per_draw"] == [0.75, 0.5] and m["accuracy_rotated_std"] == pytest.approx(0.125)
    assert m["prediction_consistency"] == 0.75
    change = np.linalg.norm(rotated - aligned[:, None], axis=-1) / np.linalg.norm(aligned, axis=-1)[:, None]
    assert m["invariance_error"] == pytest.approx(change.mean()) and m["invariance_error"] > 0
    assert m["confusion_aligned"] == [[2, 0, 0], [0, 1, 0], [0, 1, 0]]
    assert np.sum(m["confusion_rotated"]) == 8 and m["confusion_rotated"][0][1] == 1
    assert m["per_class"]["x"] == {"count": 2, "accuracy_aligned": 1.0, "accuracy_rotated": 0.75,
                                   "prediction_consistency": 0.5}
    bins = {b["from_deg"]: b for b in m["accuracy_by_angle"]}
    assert bins[90.0]["count"] == 1 and bins[90.0]["accuracy"] == 0.0
    assert bins[165.0]["count"] == 2 and sum(b["count"] for b in bins.values()) == 8


def test_accuracy_by_angle_puts_180_degrees_in_the_last_bin():
    bins = accuracy_by_angle(np.array([0.0, 180.0]), np.array([True, False]))
    assert bins[0]["count"] == 1 and bins[-1]["count"] == 1 and bins[-1]["to_deg"] == 180.0


# ------------------------------------------------------------------------------ evaluate


def test_steerable_model_is_invariant_to_cube_rotations_at_float_precision(tmp_path):
    data = make_data(tmp_path / "d.h5")
    so3 = evaluate(with_classes(tiny_model("so3")), str(data), rotations="octa", num_rotations=6, progress=False,
                   device="cpu")
    assert so3["invariance_error"] < 1e-5
    assert so3["prediction_consistency"] == 1.0 and so3["accuracy_rotated"] == so3["accuracy_aligned"]
    assert so3["rotation_method"]["exact"] == 60 and so3["rotation_method"]["interpolated"] == 0
    assert not so3["padding"]["applied"]
    cnn = evaluate(with_classes(tiny_model("cnn")), str(data), rotations="octa", num_rotations=6, progress=False,
                   device="cpu")
    assert cnn["invariance_error"] > 1e-3  # the measure is not trivially zero
    # continuous rotations: interpolated, on a padded grid, and not exact any more
    so3_cont = evaluate(with_classes(tiny_model("so3")), str(data), rotations="so3", num_rotations=2,
                        progress=False, device="cpu")
    assert so3_cont["rotation_method"]["interpolated"] == 20 and so3_cont["invariance_error"] > 1e-5
    assert so3_cont["padding"]["applied"] and so3_cont["padding"]["to"] > 9


def test_report_files_and_the_same_rotations_for_every_model(tmp_path):
    data = make_data(tmp_path / "d.h5")
    ckpt = save_checkpoint(tmp_path / "cnn.pt", tiny_model("cnn"), CLASSES, config={"data": {"resolution": 9}})
    r1 = evaluate(str(ckpt), str(data), num_rotations=3, tta=2, out=tmp_path / "e1", progress=False, device="cpu")
    r2 = evaluate(with_classes(tiny_model("so3"), resolution=9), str(data), num_rotations=3, out=tmp_path / "e2",
                  progress=False, device="cpu")
    saved = json.loads((tmp_path / "e1" / "report.json").read_text())
    for key in ("accuracy_aligned", "accuracy_rotated", "accuracy_rotated_std", "prediction_consistency",
                "invariance_error", "num_samples", "num_rotations", "rotations", "seed", "model", "data",
                "per_class", "confusion_aligned", "confusion_rotated", "accuracy_by_angle", "rotation_method",
                "padding", "tta", "accuracy_tta"):
        assert key in saved, key
    assert saved["num_samples"] == 10 and saved["model"] == str(ckpt) and saved["model_info"]["group"] == "cnn"
    assert saved["tta"]["num_rotations"] == 2 and 0 <= saved["accuracy_tta"] <= 1
    assert np.array(saved["confusion_rotated"]).sum() == 30
    for name in ("accuracy_vs_angle.png", "confusion_aligned.png", "confusion_rotated.png"):
        assert (tmp_path / "e1" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| class | samples |" in (tmp_path / "e1" / "report.md").read_text()
    d1, d2 = np.load(tmp_path / "e1" / "draws.npz"), np.load(tmp_path / "e2" / "draws.npz")
    assert d1["rotations"].shape == (10, 3, 3, 3) and np.array_equal(d1["rotations"], d2["rotations"])
    assert r1["accuracy_aligned"] == saved["accuracy_aligned"] and r2["model_info"]["group"] == "so3"


def test_exported_torchscript_models_and_npz_data_are_accepted(tmp_path, monkeypatch):
    from vol3d.models.export import export_torchscript

    ts = export_torchscript(with_classes(tiny_model("cnn")), tmp_path / "cnn.ts", example_resolution=9)
    volumes = blob_volumes(5, 9)
    npz = tmp_path / "d.npz"
    np.savez(npz, volumes=volumes, labels=np.array([4, 3, 2, 1, 0]), classes=np.array(CLASSES[::-1]))
    monkeypatch.setenv("VOL3D_CACHE", str(tmp_path / "cache"))
    r = evaluate(str(ts), str(npz), split="train", rotations="none", num_rotations=1, progress=False, device="cpu")
    assert r["model_info"]["kind"] == "torchscript" and r["data_info"]["class_matching"] == "by name"
    # labels were matched by name: the npz's class "a" is label 4 there, output 0 of the model
    direct = with_classes(tiny_model("cnn"))(torch.from_numpy(volumes[:, None].astype(np.float32))).argmax(1)
    assert r["accuracy_aligned"] == pytest.approx(float((direct.numpy() == np.arange(5)).mean()))


def test_a_different_resolution_is_resampled_to_the_models_and_said_so(tmp_path):
    data = make_data(tmp_path / "d.h5", r=12)
    r = evaluate(with_classes(tiny_model("cnn"), resolution=8), str(data), rotations="octa", num_rotations=1,
                 progress=False, device="cpu")
    assert r["data_info"]["resolution"] == 8 and any("resampled" in note and "12^3" in note for note in r["notes"])


def test_exact_revoxelizes_builtin_meshes(tmp_path, monkeypatch):
    monkeypatch.setenv("VOL3D_CACHE", str(tmp_path / "cache"))
    from vol3d.evaluation.exact import revoxelizer
    from vol3d.evaluation.loading import _wrap, load_split

    from vol3d.data.builtin import builtin_classes
    from vol3d.models import build_model

    torch.manual_seed(0)
    net = with_classes(build_model("cnn", num_classes=8, widths=(4, 8), head=(8,)).eval(),
                       builtin_classes("tetris"), resolution=8)
    data = load_split("builtin:tetris", "test", _wrap(net, "module", 8), progress=False)
    again = revoxelizer(data)(np.arange(8), np.broadcast_to(np.eye(3), (8, 3, 3)))
    assert np.array_equal(again, data.volumes)  # the identity re-voxelizes to the stored grids
    r = evaluate(net, "builtin:tetris", rotations="so3", num_rotations=2, exact=True, progress=False, device="cpu")
    assert r["rotation_method"]["revoxelized"] == 16 and not r["padding"]["applied"]


# ------------------------------------------------------------------------------ bad input


def test_bad_input_gives_one_clear_error(tmp_path):
    data = make_data(tmp_path / "d.h5")
    model = with_classes(tiny_model("cnn"))
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(FormatError, match="not a vol3d checkpoint"):
        evaluate(str(foreign), str(data), progress=False)
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(FormatError, match="text.pt"):
        evaluate(str(tmp_path / "text.pt"), str(data), progress=False)
    with pytest.raises(FormatError, match="no such model file"):
        evaluate(str(tmp_path / "missing.pt"), str(data), progress=False)
    other = make_data(tmp_path / "other.h5", classes=["a", "b", "zebra", "d", "e"])
    with pytest.raises(Vol3dError, match="classes unknown to the model: zebra"):
        evaluate(model, str(other), progress=False, device="cpu")
    with pytest.raises(UsageError, match="no split 'val'"):
        evaluate(model, str(data), split="val", progress=False, device="cpu")
    write_dataset(tmp_path / "empty.h5", {"train": {"volumes": blob_volumes(5, 9), "labels": np.arange(5),
                                                    "sources": list("vwxyz")},
                                          "test": {"volumes": np.zeros((0, 9, 9, 9), np.uint8),
                                                   "labels": np.zeros(0, np.int64), "sources": []}},
                  classes=CLASSES, representation="solid", normalization="imported")
    with pytest.raises(Vol3dError, match="split 'test' is empty"):
        evaluate(model, str(tmp_path / "empty.h5"), progress=False, device="cpu")
    with pytest.raises(UsageError, match="--num-rotations"):
        evaluate(model, str(data), num_rotations=0, progress=False)
    with pytest.raises(UsageError, match="--rotations"):
        evaluate(model, str(data), rotations="spin", progress=False)
    with pytest.raises(UsageError, match="--exact needs source meshes"):
        evaluate(model, str(data), exact=True, progress=False, device="cpu")
    with pytest.raises(FormatError, match="no such data file"):
        evaluate(model, str(tmp_path / "nope.h5"), progress=False)


def test_cli_runner_prints_the_table_and_json(tmp_path, capsys):
    import argparse

    from vol3d.evaluation.cli import add_evaluate_arguments, run_evaluate

    data = make_data(tmp_path / "d.h5")
    ckpt = save_checkpoint(tmp_path / "m.pt", tiny_model("cnn"), CLASSES)
    parser = argparse.ArgumentParser()
    add_evaluate_arguments(parser)
    assert run_evaluate(parser.parse_args([str(ckpt), str(data), "-k", "2", "--rotations", "z", "-q",
                                           "--device", "cpu", "--out", str(tmp_path / "o")])) == 0
    text = capsys.readouterr().out
    assert "accuracy, rotated" in text and "rotations: z, 2 per sample" in text and "report.json" in text
    assert run_evaluate(parser.parse_args([str(ckpt), str(data), "-k", "1", "-q", "--json", "--device", "cpu"])) == 0
    assert json.loads(capsys.readouterr().out)["num_rotations"] == 1


def test_npz_data_is_imported_as_the_model_was_trained_padded_not_stretched(tmp_path, monkeypatch):
    """A model trained on an .npz imported with pad_for_rotation sees the same padded grid in evaluation."""
    from vol3d.data.importers import import_volumes
    from vol3d.data.store import open_dataset

    monkeypatch.setenv("VOL3D_CACHE", str(tmp_path / "cache"))
    volumes = np.zeros((5, 9, 9, 9), np.uint8)
    volumes[:, 1:8, 1:8, 1:8] = 1  # reaches the corners: rotations need a larger grid
    npz = tmp_path / "d.npz"
    np.savez(npz, volumes=volumes, labels=np.arange(5), classes=np.array(CLASSES))
    import_volumes(npz, tmp_path / "padded.h5", pad_for_rotation=True, show_progress=False)
    with open_dataset(tmp_path / "padded.h5") as f:
        padded = f.resolution
    assert padded > 9
    ckpt = save_checkpoint(tmp_path / "m.pt", tiny_model("cnn"), CLASSES, config={
        "data": {"path": str(npz), "pad_for_rotation": True, "resolution": padded}})
    r = evaluate(str(ckpt), str(npz), split="train", rotations="none", num_rotations=1, progress=False, device="cpu")
    assert r["data_info"]["resolution"] == padded
    assert not any("resampled" in note for note in r["notes"])


def test_split_val_is_the_training_runs_holdout_when_the_file_has_no_val_split(tmp_path):
    """``--split val`` on the data a run held out its validation from evaluates exactly those samples."""
    from vol3d.evaluation.loading import load_classifier, load_split
    from vol3d.training.config import load_config
    from vol3d.training.data import load_data

    data = make_data(tmp_path / "d.h5", n=20, splits=("train",))
    config = load_config({"seed": 3, "data": {"path": str(data), "val_fraction": 0.25}})
    ckpt = save_checkpoint(tmp_path / "m.pt", tiny_model("cnn"), CLASSES, config=config)
    held_out = load_data(config["data"], 3)
    split = load_split(str(data), "val", load_classifier(str(ckpt)), progress=False)
    assert len(split.labels) == len(held_out.val_index) == 5  # 1 of the 4 objects per class
    with h5py.File(data) as f:
        expected = [s.decode() for s in f["train/sources"][held_out.val_index]]
    assert split.sources == expected and any("hold-out" in note for note in split.notes)
    r = evaluate(str(ckpt), str(data), split="val", rotations="none", num_rotations=1, progress=False, device="cpu")
    assert r["num_samples"] == 5
    # a model trained without a hold-out has no such split to offer: one clear error
    bare = save_checkpoint(tmp_path / "bare.pt", tiny_model("cnn"), CLASSES, config={"data": {"val_split": "none"}})
    with pytest.raises(UsageError, match="no split 'val'"):
        load_split(str(data), "val", load_classifier(str(bare)), progress=False)


@pytest.mark.parametrize("pad", [True, 12])
def test_npz_resampled_then_padded_in_training_is_imported_the_same_way(tmp_path, monkeypatch, pad):
    """data.resolution of an .npz resamples before the padding (rotation-safe, or to a given size):
    evaluation repeats both steps (not a resampling of the padded grid), as the checkpoint's
    data.grid records."""
    from vol3d.data.importers import import_volumes
    from vol3d.data.store import open_dataset

    monkeypatch.setenv("VOL3D_CACHE", str(tmp_path / "cache"))
    volumes = np.zeros((5, 16, 16, 16), np.uint8)
    volumes[:, 1:14, 2:15, 1:15] = 1
    npz = tmp_path / "d.npz"
    np.savez(npz, volumes=volumes, labels=np.arange(5), classes=np.array(CLASSES))
    import_volumes(npz, tmp_path / "as_trained.h5", resolution=8, pad_for_rotation=pad, show_progress=False)
    with open_dataset(tmp_path / "as_trained.h5") as f:
        grid, expected = f.resolution, f.volumes("train")[...]
    ckpt = save_checkpoint(tmp_path / "m.pt", tiny_model("cnn"), CLASSES, config={
        "data": {"path": str(npz), "pad_for_rotation": pad, "resolution": 8, "grid": grid}})
    from vol3d.evaluation.loading import load_classifier, load_split

    split = load_split(str(npz), "train", load_classifier(str(ckpt)), progress=False)
    assert split.resolution == grid and not any("resampled" in note for note in split.notes)
    np.testing.assert_array_equal(split.volumes, expected)
    # the report says what the import did
    assert grid == 12 or pad is True
    assert any("area-filtered to 8^3" in note and f"padded to {grid}^3" in note for note in split.notes)


def test_a_run_on_a_padded_npz_at_its_own_resolution_is_evaluated_on_its_training_grid(tmp_path, monkeypatch):
    """A config that pads an .npz (``pad_for_rotation: N``) and leaves ``data.resolution`` unset trains
    on the npz's own grid padded to N^3: its checkpoint must not name N as the import resolution,
    or evaluation would stretch the objects to N^3 before padding (the full-size ModelNet10 configs)."""
    from vol3d.evaluation.loading import load_classifier, load_split
    from vol3d.training import train
    from vol3d.training.config import load_config
    from vol3d.training.data import dataset_file

    monkeypatch.setenv("VOL3D_CACHE", str(tmp_path / "cache"))
    volumes = np.zeros((5, 8, 8, 8), np.uint8)
    volumes[:, 1:7, 2:7, 1:6] = 1
    npz = tmp_path / "d.npz"
    np.savez(npz, volumes=volumes, labels=np.arange(5), classes=np.array(CLASSES))
    config = {"data": {"path": str(npz), "pad_for_rotation": 12, "val_split": "none"},
              "model": {"group": "cnn", "widths": [4], "kernel_sizes": 3, "head": [8], "pool_features": 4},
              "train": {"epochs": 1, "batch_size": 5}}
    run = train(config, out=tmp_path / "run", progress=False)
    with h5py.File(dataset_file(load_config(config)["data"], progress=False)) as f:
        trained_on = f["train/volumes"][...]
    split = load_split(str(npz), "train", load_classifier(str(run["checkpoints"]["last"])), progress=False)
    assert split.resolution == 12 and not any("resampled" in note or "area-filtered" in note for note in split.notes)
    np.testing.assert_array_equal(split.volumes, trained_on)
