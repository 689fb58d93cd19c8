"""vol3d.pretrained.publish: a training run's checkpoint + its evaluation report -> a shipped model."""

import hashlib
import json

import numpy as np
import pytest
import torch

import vol3d.pretrained as P
from vol3d.checkpoint import save_checkpoint
from vol3d.data.store import write_dataset
from vol3d.evaluation import evaluate
from vol3d.testing import gaussian_blobs, tiny_model

CLASSES = ["a", "b", "c", "d", "e"]


def test_publish_writes_a_loadable_model_and_its_card(tmp_path, monkeypatch):
    volumes = (gaussian_blobs(10, 9, sigma=1.5)[:, 0].numpy() > 0.6).astype(np.uint8)
    data = write_dataset(tmp_path / "d.h5", {"val": {"volumes": volumes, "labels": np.arange(10) % 5,
                                                     "sources": [f"o{i}" for i in range(10)]}},
                         classes=CLASSES, representation="solid", normalization="imported")
    training = {"epoch": 3, "optimizer": {"state": {}, "param_groups": []}}
    ckpt = save_checkpoint(tmp_path / "last.pt", tiny_model("cnn"), CLASSES, config={"data": {"path": str(data)}},
                           training=training)
    report = evaluate(str(ckpt), str(data), split="val", rotations="so3", num_rotations=2, progress=False, device="cpu")
    weights = tmp_path / "weights"
    path = P.publish(ckpt, "toy", report=report, config="configs/toy.yaml", command="vol3d train --config configs/toy.yaml",
                     hardware="test", seconds=1.5, weights_dir=weights)

    card = json.loads((weights / "toy.json").read_text())
    assert card["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert card["classes"] == CLASSES and card["input"]["resolution"] == 9
    assert card["results"]["n_val"] == 10 and card["results"]["val_acc_rotated"] == pytest.approx(report["accuracy_rotated"])
    assert "training" not in torch.load(path, weights_only=True)  # resume state is not shipped

    monkeypatch.setattr(P, "WEIGHTS", weights)
    assert P.available() == ["toy"]
    model = P.load_pretrained("pretrained:toy")
    x = torch.from_numpy(volumes[:2, None].astype(np.float32))
    with torch.no_grad():
        torch.testing.assert_close(model(x), tiny_model("cnn")(x))
