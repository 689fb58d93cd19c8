"""The shipped pretrained models: each loads by name, its card matches the checkpoint, and it classifies."""

import json

import pytest
import torch

from vol3d.errors import UsageError
from vol3d.pretrained import WEIGHTS, available, checkpoint_path, info, load_pretrained

NAMES = available()
pytestmark = pytest.mark.skipif(not NAMES, reason="no pretrained weights shipped")


def test_every_checkpoint_has_a_card():
    cards = {p.stem for p in WEIGHTS.glob("*.json")}
    weights = {p.stem for p in WEIGHTS.glob("*.pt")}
    assert cards == weights == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_card_metadata(name):
    card = info(name)
    assert card["name"] == name and card["file"] == f"{name}.pt"
    assert len(card["classes"]) >= 2 and len(set(card["classes"])) == len(card["classes"])
    assert card["input"]["resolution"] >= 8 and card["input"]["normalization"]
    assert card["command"].startswith(f"vol3d train --config {card['config']}")
    res = card["results"]
    for key in ("val_acc_aligned", "val_acc_rotated", "consistency"):
        assert 0.0 <= res[key] <= 1.0
    assert res["n_val"] > 0 and card["training"]["seconds"] > 0 and card["training"]["hardware"]
    assert checkpoint_path(name).stat().st_size < 8 * 2**20  # small enough to ship


@pytest.mark.parametrize("name", NAMES)
def test_load_and_forward(name):
    model = load_pretrained(f"pretrained:{name}")
    card = model.pretrained
    assert not model.training and model.classes == card["classes"]
    assert model.config["group"] == card["model"]["group"]
    assert sum(p.numel() for p in model.parameters()) == card["model"]["parameters"]
    r = card["input"]["resolution"]
    x = torch.zeros(2, 1, r, r, r)
    c = (r - 1) / 2
    grid = torch.stack(torch.meshgrid(*[torch.arange(r, dtype=torch.float32)] * 3, indexing="ij"))
    x[0, 0] = (((grid - c) ** 2).sum(0) < (r / 4) ** 2).float()  # a ball
    x[1, 0, r // 4: 3 * r // 4, r // 3: 2 * r // 3, r // 4: 3 * r // 4] = 1.0  # a box
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (2, len(card["classes"])) and torch.isfinite(logits).all()


def test_vol3d_pretrained_is_callable_by_name():
    import vol3d

    model = vol3d.pretrained(NAMES[0])
    assert not model.training and model.pretrained["name"] == NAMES[0]
    assert vol3d.pretrained.available() == NAMES


def test_card_config_matches_checkpoint_and_config_file():
    import yaml

    from vol3d.checkpoint import load_checkpoint

    for name in NAMES:
        card = info(name)
        ckpt = load_checkpoint(checkpoint_path(name))
        saved = ckpt["config"]
        assert saved["model"]["group"] == card["model"]["group"]
        cfg_file = WEIGHTS.parents[2] / card["config"]
        if not cfg_file.is_file():  # installed without the repository's configs/
            continue
        raw = yaml.safe_load(cfg_file.read_text())
        for section in ("model", "optimizer", "schedule", "train", "augment"):
            for key, value in (raw.get(section) or {}).items():
                if section == "model" and "match" in raw["model"]:
                    continue  # a matched cnn's widths are resolved when it is built
                assert saved[section][key] == value, f"{name}: {section}.{key}"


def test_unknown_name_and_damaged_file(tmp_path, monkeypatch):
    with pytest.raises(UsageError, match="unknown pretrained model"):
        load_pretrained("no-such-model")
    import vol3d.pretrained as P

    name = NAMES[0]
    (tmp_path / f"{name}.pt").write_bytes(checkpoint_path(name).read_bytes()[:-10] + b"0123456789")
    (tmp_path / f"{name}.json").write_text(json.dumps(info(name)))
    monkeypatch.setattr(P, "WEIGHTS", tmp_path)
    from vol3d.errors import FormatError

    with pytest.raises(FormatError, match="checksum"):
        P.load_pretrained(name)
