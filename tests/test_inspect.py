"""vol3d info / show: the summary numbers, the table, and rendered PNGs."""

import numpy as np
import pytest

from vol3d.data.inspect import _pool_max, dataset_info, format_info, render_sample
from vol3d.data.store import write_dataset
from vol3d.errors import FormatError, Vol3dError

R = 10


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    vols = np.zeros((4, R, R, R), np.uint8)
    vols[0, :5] = 1  # fill 0.5
    vols[1, :2] = 1  # fill 0.2
    vols[2, 3:6, 3:6, 3:6] = 1  # fill 0.027; vols[3] stays empty
    out = tmp_path_factory.mktemp("info") / "d.h5"
    write_dataset(out, {"train": {"volumes": vols[:3], "labels": [0, 1, 1], "sources": ["a.off", "b.off", "c.off"]},
                        "test": {"volumes": vols[3:], "labels": [2], "sources": ["d.off"]}},
                  classes=["box", "slab", "cup"], representation="solid", normalization="sphere",
                  command="vol3d voxelize x out.h5", errors=[("bad.off", "empty mesh")])
    return out


def test_dataset_info_counts_and_occupancy(path):
    info = dataset_info(path)
    assert info["classes"] == ["box", "slab", "cup"] and info["resolution"] == R and info["dtype"] == "uint8"
    train, test = info["splits"]["train"], info["splits"]["test"]
    assert train["count"] == 3 and train["per_class"] == {"box": 1, "slab": 2, "cup": 0}
    assert train["fill_mean"] == pytest.approx((0.5 + 0.2 + 0.027) / 3)
    assert (train["fill_min"], train["fill_max"], train["empty"]) == (pytest.approx(0.027), 0.5, 0)
    assert test["empty"] == 1 and test["per_class"]["cup"] == 1
    assert info["errors"] == 1 and info["error_examples"] == [("bad.off", "empty mesh")]
    assert info["command"] == "vol3d voxelize x out.h5"


def test_format_info_is_a_table(path):
    text = format_info(dataset_info(path))
    lines = text.splitlines()
    assert "3 classes, resolution 10, solid (uint8)" in lines[0]
    header = next(line for line in lines if line.startswith("class"))
    assert header.split() == ["class", "train", "test"]
    assert next(line for line in lines if line.startswith("slab")).split() == ["slab", "2", "0"]
    assert "24.23%" in text and "bad.off: empty mesh" in text


@pytest.mark.parametrize("mode", ["voxels", "projections"])
def test_render_sample_writes_a_png(path, tmp_path, mode):
    out = render_sample(path, 2, tmp_path / "s.png", mode=mode)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    assert [p.name for p in tmp_path.iterdir()] == ["s.png"]  # no temporary file left behind


def test_pool_max_keeps_every_occupied_voxel():
    mask = np.zeros((100, 100, 100), bool)
    mask[0, 0, 0] = mask[99, 50, 3] = True
    pooled = _pool_max(mask, 48)
    assert pooled.shape == (34, 34, 34) and pooled.sum() == 2 and pooled[0, 0, 0] and pooled[33, 16, 1]


def test_render_large_grid_is_pooled(tmp_path):
    big = np.zeros((1, 60, 60, 60), np.uint8)
    big[0, 24:36, 20:40, 26:34] = 1
    src = write_dataset(tmp_path / "big.h5", {"train": {"volumes": big, "labels": [0], "sources": ["x"]}},
                        classes=["a"], representation="solid", normalization="cube")
    assert render_sample(src, 0, tmp_path / "big.png").stat().st_size > 5000


def test_render_errors(path, tmp_path):
    with pytest.raises(Vol3dError, match="index 9 out of range for split 'train' with 3"):
        render_sample(path, 9, tmp_path / "s.png")
    with pytest.raises(FormatError, match="no split 'val'"):
        render_sample(path, 0, tmp_path / "s.png", split="val")
    with pytest.raises(Vol3dError, match="mode"):
        render_sample(path, 0, tmp_path / "s.png", mode="movie")
    with pytest.raises(Vol3dError, match="does not exist"):
        render_sample(path, 0, tmp_path / "nope" / "s.png")
    assert not (tmp_path / "s.png").exists()
