"""vol3d compare: reports side by side, with a warning when their settings differ."""

import argparse
import json

import pytest

from vol3d.errors import FormatError
from vol3d.evaluation import compare, read_report
from vol3d.evaluation.cli import add_compare_arguments, run_compare


def report(model, group, params, aligned, rotated, **settings):
    return {"model": model, "model_info": {"group": group, "params": params}, "accuracy_aligned": aligned,
            "accuracy_rotated": rotated, "accuracy_rotated_std": 0.012, "prediction_consistency": rotated - 0.1,
            "invariance_error": 1 - rotated, "data": "builtin:tetris", "split": "test", "num_samples": 8,
            "rotations": "so3", "num_rotations": 8, "seed": 0, **settings}


def test_table_rows_and_shared_settings(tmp_path):
    reports = [report("runs/so3/last.pt", "so3", 13094, 1.0, 0.984), report("runs/cnn/last.pt", "cnn", 80248, 1.0, 0.25)]
    table = compare(reports, out=tmp_path / "t.md")
    lines = table.splitlines()
    assert [c.strip() for c in lines[0].split("|")[1:-1]] == ["model", "group", "params", "aligned acc",
                                                              "rotated acc", "consistency", "invariance error"]
    assert "| runs/so3/last.pt | so3   | 13,094 | 100.0%      | 98.4% ± 1.2 | 88.4%       | 0.016            |" in lines
    assert any(line.startswith("| runs/cnn/last.pt | cnn   | 80,248 |") and "25.0% ± 1.2" in line for line in lines)
    assert "rotations so3, 8 per sample, seed 0" in lines[-1] and "warning" not in table
    assert (tmp_path / "t.md").read_text() == table


def test_differing_settings_are_named(tmp_path):
    table = compare([report("a", "so3", 1, 1.0, 0.9), report("b", "cnn", 1, 1.0, 0.2, seed=3, rotations="z")])
    assert "warning: the reports differ in rotations (so3 / z), seed (0 / 3)" in table


def test_reports_are_read_from_files_and_folders_and_validated(tmp_path, capsys):
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "report.json").write_text(json.dumps(report("m1", "so3", 5, 0.5, 0.5)))
    (tmp_path / "r2.json").write_text(json.dumps(report("m2", "octa", 7, 0.75, 0.5)))
    parser = argparse.ArgumentParser()
    add_compare_arguments(parser)
    assert run_compare(parser.parse_args([str(tmp_path / "r1"), str(tmp_path / "r2.json")])) == 0
    out = capsys.readouterr().out
    assert "| m1 " in out and "| m2 " in out and "octa" in out
    (tmp_path / "bad.json").write_text(json.dumps({"model": "x"}))
    with pytest.raises(FormatError, match="missing key 'accuracy_aligned'"):
        read_report(tmp_path / "bad.json")
    (tmp_path / "text.json").write_text("not json")
    with pytest.raises(FormatError, match="not a JSON file"):
        compare([tmp_path / "text.json"])
    with pytest.raises(FormatError, match="no such report file"):
        compare([tmp_path / "none.json"])
