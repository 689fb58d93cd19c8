"""The command line: help, exit codes, and one-line errors."""

import subprocess
import sys

import pytest

from vol3d.cli import build_parser, main

COMMANDS = ("voxelize", "import", "info", "show", "train", "evaluate", "compare", "export")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: vol3d " + command in capsys.readouterr().out


def test_python_dash_m_and_version():
    result = subprocess.run([sys.executable, "-m", "vol3d", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("vol3d ")


def test_usage_errors_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["voxelize"])  # missing arguments
    assert exit_info.value.code == 2
    capsys.readouterr()
    assert main(["voxelize", "builtin:tetris", str(tmp_path / "x.h5"), "--resolution", "2"]) == 2
    err = capsys.readouterr().err
    assert "--resolution" in err and len(err.strip().splitlines()) == 1


def test_bad_input_exits_1_with_one_line(tmp_path, capsys):
    missing = tmp_path / "no_such_folder"
    assert main(["voxelize", str(missing), str(tmp_path / "x.h5")]) in (1, 2)
    err = capsys.readouterr().err.strip()
    assert str(missing) in err and len(err.splitlines()) == 1
    not_h5 = tmp_path / "notes.h5"
    not_h5.write_text("hello")
    assert main(["info", str(not_h5)]) == 1
    err = capsys.readouterr().err.strip()
    assert "notes.h5" in err and len(err.splitlines()) == 1


def test_nothing_voxelized_exits_1(tmp_path, capsys):
    (tmp_path / "src" / "junk").mkdir(parents=True)
    (tmp_path / "src" / "junk" / "a.off").write_text("garbage")
    (tmp_path / "src" / "junk" / "b.stl").write_text("")
    assert main(["voxelize", str(tmp_path / "src"), str(tmp_path / "x.h5"), "-q"]) == 1
    captured = capsys.readouterr()
    assert "a.off" in captured.out and "no mesh could be voxelized" in captured.err


def test_voxelize_info_show_round_trip(tmp_path, capsys):
    out = tmp_path / "tetris.h5"
    assert main(["voxelize", "builtin:tetris", str(out), "-r", "16", "-q"]) == 0
    assert "16 samples" in capsys.readouterr().out
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "chiral" in text and "16" in text
    png = tmp_path / "s.png"
    assert main(["show", str(out), "--index", "1", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_parser_lists_all_commands():
    text = build_parser().format_help()
    assert all(command in text for command in COMMANDS)


def test_export_command_writes_torchscript(tmp_path, capsys):
    import torch

    from vol3d.checkpoint import save_checkpoint
    from vol3d.testing import gaussian_blobs, tiny_model

    model = tiny_model("so3")
    ckpt = save_checkpoint(tmp_path / "m.pt", model, classes=[f"c{i}" for i in range(5)])
    out = tmp_path / "m.ts"
    assert main(["export", str(ckpt), str(out), "--check-resolution", "12"]) == 0
    x = gaussian_blobs(2, 13)
    with torch.no_grad():
        assert torch.allclose(torch.jit.load(str(out))(x), model(x), rtol=1e-4, atol=1e-5)
    capsys.readouterr()
    assert main(["export", str(tmp_path / "missing.pt"), str(out)]) == 1
    assert "missing.pt" in capsys.readouterr().err


@pytest.mark.parametrize("flag, size", [(["--pad-for-rotation"], 14), (["--pad-for-rotation", "10"], 10), ([], 8)])
def test_import_pads_for_rotation_fully_or_to_a_size(tmp_path, capsys, flag, size):
    """``--pad-for-rotation`` alone pads until no rotation loses a voxel (a filled 8^3 cube: 14^3);
    with N it pads to N^3."""
    import numpy as np

    from vol3d.data.store import open_dataset

    np.savez(tmp_path / "c.npz", volumes=np.ones((2, 8, 8, 8), np.uint8), labels=[0, 1])
    assert main(["import", str(tmp_path / "c.npz"), str(tmp_path / "c.h5"), "-q", *flag]) == 0
    with open_dataset(tmp_path / "c.h5") as f:
        assert f.resolution == size and f.volumes("train")[...].sum() == 2 * 8 ** 3
    capsys.readouterr()
    assert main(["import", str(tmp_path / "c.npz"), str(tmp_path / "d.h5"), "-q", "--pad-for-rotation", "9"]) == 2
    assert "pad_for_rotation=9" in capsys.readouterr().err
