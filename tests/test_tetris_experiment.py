"""The tetris experiment (issue 5): train on the eight canonical pieces only, no augmentation, with
configs/tetris-so3.yaml and configs/tetris-cnn.yaml, then evaluate under random SO(3) rotations:
the so3 model keeps >= 95% accuracy, the plain CNN stays far below. Both are evaluated on the same
seeded rotations, resampled from the voxel grid (the default, the issue's criterion) and
re-voxelized from the rotated meshes (``exact``: a new voxelization in every pose, which the model
meets slightly less well: 89-100% over the runs in the README, so it is held to 90%)."""

from pathlib import Path

import pytest

from vol3d.evaluation import compare, evaluate
from vol3d.training import train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.slow
def test_tetris_so3_model_is_robust_to_rotations_and_the_cnn_is_not(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VOL3D_CACHE", str(tmp_path / "cache"))
    reports = {}
    for name in ("so3", "cnn"):
        run = train(CONFIGS / f"tetris-{name}.yaml", out=tmp_path / name, progress=False, device="cpu")
        for exact in (False, True):
            report = evaluate(run["checkpoints"]["last"], "builtin:tetris", rotations="so3", num_rotations=4,
                              seed=0, exact=exact, progress=False, device="cpu")
            reports[name, exact] = report
            assert report["accuracy_aligned"] == 1.0, name  # both fit the canonical pieces
    with capsys.disabled():
        print("\n" + compare([reports["so3", False], reports["cnn", False]]))
    assert reports["so3", False]["accuracy_rotated"] >= 0.95
    assert reports["so3", True]["accuracy_rotated"] >= 0.9
    for exact in (False, True):
        assert reports["cnn", exact]["accuracy_rotated"] <= 0.6, exact
