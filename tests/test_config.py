"""Training configs: defaults, overrides, and one-line errors that name the key (vol3d.training.config)."""

import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from vol3d.data.store import write_dataset
from vol3d.errors import UsageError
from vol3d.training import ConfigError, defaults, dump_config, load_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.fixture
def data_file(tmp_path):
    vols = np.zeros((4, 8, 8, 8), np.uint8)
    return write_dataset(tmp_path / "d.h5", {"train": {"volumes": vols, "labels": np.array([0, 1, 0, 1]),
                                                       "sources": list("abcd")}},
                         classes=["a", "b"], representation="solid", normalization="sphere")


def error_of(config, overrides=()) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(config, overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults_are_valid_and_complete():
    cfg = load_config({})
    assert cfg == defaults()
    assert cfg["optimizer"]["name"] == "adamw" and cfg["schedule"]["name"] == "cosine"
    assert cfg["model"] == {"group": "so3"}


def test_resolved_config_round_trips_through_yaml(tmp_path, data_file):
    cfg = load_config({"data": {"path": str(data_file)}, "train": {"epochs": 3}, "model": {"group": "cnn"}})
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


def test_overrides_are_parsed_and_typed(data_file):
    cfg = load_config({"data": {"path": str(data_file)}},
                      ["train.epochs=3", "optimizer.lr=1e-3", "model.widths=[8, 16]", "train.grad_clip=null",
                       "augment.rotation=octa", "optimizer.weight_decay=0", "data.in_memory=false"])
    assert cfg["train"]["epochs"] == 3
    assert cfg["optimizer"]["lr"] == 1e-3 and isinstance(cfg["optimizer"]["lr"], float)
    assert cfg["optimizer"]["weight_decay"] == 0.0 and isinstance(cfg["optimizer"]["weight_decay"], float)
    assert cfg["model"]["widths"] == [8, 16]
    assert cfg["train"]["grad_clip"] is None
    assert cfg["augment"]["rotation"] == "octa"
    assert cfg["data"]["in_memory"] is False


@pytest.mark.parametrize("config, overrides, key", [
    ({"train": {"epoch": 3}}, (), "'train.epochs'"),  # suggestion
    ({"trian": {}}, (), "'trian'"),
    ({"model": {"group": "cnn", "widht": [8]}}, (), "'model.widths'"),
    ({}, ["train.epoch=3"], "'train.epoch'"),
    ({}, ["optimiser.lr=0.1"], "'optimiser'"),
    ({}, ["augment.rotation.x=1"], "'augment.rotation'"),
])
def test_unknown_keys_are_rejected_naming_the_key(config, overrides, key):
    message = error_of(config, overrides)
    assert key in message
    assert "unknown" in message or "not a section" in message


@pytest.mark.parametrize("config, key, words", [
    ({"train": {"epochs": "ten"}}, "train.epochs", "integer"),
    ({"train": {"epochs": 2.5}}, "train.epochs", "integer"),
    ({"optimizer": {"lr": "fast"}}, "optimizer.lr", "number"),
    ({"data": {"in_memory": 1}}, "data.in_memory", "true or false"),
    ({"data": {"pad_for_rotation": "yes"}}, "data.pad_for_rotation", "true, false or an integer"),
    ({"data": {"pad_for_rotation": 0}}, "data.pad_for_rotation", ">= 1"),
    ({"optimizer": {"betas": [0.9]}}, "optimizer.betas", "two numbers"),
    ({"augment": {"rotation": "so4"}}, "augment.rotation", "one of"),
    ({"train": {"batch_size": 0}}, "train.batch_size", ">= 1"),
    ({"train": {"epochs": None}}, "train.epochs", "null"),
    ({"data": {"val_fraction": 1.0}}, "data.val_fraction", "[0, 1)"),
    ({"model": {"group": "cnn", "L": "two"}}, "model.L", "integer"),
    ({"model": {"group": "so4"}}, "model", "so4"),
    ({"train": 3}, "train", "mapping"),
    ({"device": "gpu"}, "device", "cuda"),
])
def test_wrong_types_and_values_name_the_key(config, key, words):
    message = error_of(config)
    assert f"'{key}'" in message and words in message


def test_missing_files_are_named(tmp_path):
    message = error_of({"data": {"path": str(tmp_path / "nope.h5")}})
    assert "'data.path'" in message and "nope.h5" in message and "not found" in message
    assert "builtin:nope" in error_of({"data": {"path": "builtin:nope"}})
    message = error_of(tmp_path / "missing.yaml")
    assert "missing.yaml" in message


def test_bad_yaml_and_bad_override_syntax(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: 3\n")
    assert "bad.yaml" in error_of(bad)
    assert "key.sub=value" in error_of({}, ["train.epochs"])


def test_config_errors_are_usage_errors():
    assert issubclass(ConfigError, UsageError)  # the CLI exits with code 2 before any work


def test_relative_data_paths_resolve_against_the_working_directory(tmp_path, data_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config({"data": {"path": data_file.name}})
    assert cfg["data"]["path"] == str(data_file.resolve())


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_load(path, monkeypatch):
    monkeypatch.chdir(REPO)  # their data paths are relative to the repository root
    raw = yaml.safe_load(path.read_text())
    data_path = raw.get("data", {}).get("path", "")
    if not data_path.startswith("builtin:") and not Path(data_path).exists():
        pytest.skip(f"{data_path} is absent (../shared/data-style data)")
    cfg = load_config(path)
    assert cfg["train"]["epochs"] >= 1
    assert os.path.isabs(cfg["data"]["path"]) or cfg["data"]["path"].startswith("builtin:")


def test_model_keys_are_those_of_the_architecture_the_section_builds():
    """A reference model (preset escnn_se3) takes its own options, and not the vol3d layout's."""
    data = {"path": "builtin:synthetic", "resolution": 16}
    cfg = load_config({"data": data, "model": {"preset": "escnn_se3", "multiplicity": 0.2}})
    assert cfg["model"]["multiplicity"] == 0.2
    with pytest.raises(ConfigError, match="model.widths"):
        load_config({"data": data, "model": {"preset": "escnn_se3", "widths": [4]}})
    with pytest.raises(ConfigError, match="model.architecture"):
        load_config({"data": data, "model": {"architecture": "no_such_model"}})
