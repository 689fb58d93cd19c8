"""The tetris experiment (issue 5): train on the eight canonical pieces only, no augmentation, with
configs/tetris-so3.yaml and configs/tetris-cnn.yaml, then evaluate under random SO(3) rotations:
the so3 model keeps >= 95% accuracy, the plain CNN stays far below."""

import os
from pathlib import Path

import pytest

from vol3d.evaluation import compare, evaluate
from vol3d.training import train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.skipif(os.environ.get("VOL3D_TETRIS") != "1", reason=(
    "issue 5 open: the so3 model does not reach the 95% rotated-accuracy target yet (68.8% measured); "
    "run with VOL3D_TETRIS=1 (about 10 minutes on 2 cores)"))
def test_tetris_so3_model_is_robust_to_rotations_and_the_cnn_is_not(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VOL3D_CACHE", str(tmp_path / "cache"))
    reports = {}
    for name in ("so3", "cnn"):
        run = train(CONFIGS / f"tetris-{name}.yaml", out=tmp_path / name, progress=False, device="cpu")
        reports[name] = evaluate(run["checkpoints"]["last"], "builtin:tetris", rotations="so3", num_rotations=4,
                                 seed=0, progress=False, device="cpu")
        assert reports[name]["accuracy_aligned"] == 1.0, name  # both fit the canonical pieces
    with capsys.disabled():
        print("\n" + compare([reports["so3"], reports["cnn"]]))
    assert reports["so3"]["accuracy_rotated"] >= 0.95
    assert reports["cnn"]["accuracy_rotated"] <= 0.6
