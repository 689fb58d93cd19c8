"""vol3d.training: real (tiny) training runs, exact resumption, interruption, NaN stop, data resolution,
augmentation and DDP with gloo. Models are tiny and grids 10^3 so the file runs in about a minute."""

import importlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from vol3d.checkpoint import load_checkpoint, load_model
from vol3d.data.store import write_dataset
from vol3d.training import ConfigError, TrainingError, TrainingInterrupted, load_config, train
from vol3d.training import loop
from vol3d.training.augment import augment_batch, batch_rng
from vol3d.training.data import EpochSampler, cached_file_name, holdout, load_data, object_groups
from vol3d.transforms import permute_volume

R = 10
CNN = {"group": "cnn", "widths": [6, 12], "kernel_sizes": 3, "head": [16], "pool_features": 12, "dropout": 0.2}
SO3 = {"group": "so3", "widths": [24, 48], "kernel_sizes": 3, "head": [16], "pool_features": 8, "dropout": 0.2}


def cubes(n_per_class: int, seed: int, copies: int = 1):
    """Three classes of solid cubes (sides 2, 4, 6) at random positions: volumes, labels, sources."""
    rng = np.random.default_rng(seed)
    vols, labels, sources = [], [], []
    for c, side in enumerate((2, 4, 6)):
        for i in range(n_per_class):
            for k in range(copies):
                v = np.zeros((R, R, R), np.uint8)
                o = rng.integers(0, R - side + 1, 3)
                v[o[0]:o[0] + side, o[1]:o[1] + side, o[2]:o[2] + side] = 1
                vols.append(v)
                labels.append(c)
                sources.append(f"c{c}/{i}")
    return {"volumes": np.stack(vols), "labels": np.array(labels), "sources": sources}


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "cubes.h5"
    return str(write_dataset(path, {"train": cubes(10, 0), "test": cubes(2, 1)}, classes=["small", "mid", "big"],
                             representation="solid", normalization="sphere"))


def config(data_file, model=CNN, **sections):
    cfg = {"data": {"path": data_file, "val_fraction": 0.2}, "model": dict(model), "device": "cpu",
           "train": {"epochs": 2, "batch_size": 8}, "optimizer": {"lr": 0.01}, "schedule": {"warmup_epochs": 0.5}}
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    return cfg


def weights(path):
    return {k: v.to_dense() if v.is_sparse else v for k, v in load_checkpoint(path)["state_dict"].items()}


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


# ------------------------------------------------------------------------------ a real run


def test_training_reduces_the_loss_and_writes_the_run_folder(data_file, tmp_path, capsys):
    out = tmp_path / "run"
    summary = train(config(data_file, train={"epochs": 5}), out=out, progress=False)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5]
    assert records[-1]["train_loss"] < 0.8 * records[0]["train_loss"]
    assert summary["epochs"] == 5 and summary["last_train_loss"] == records[-1]["train_loss"]
    assert summary["best_val_acc"] == max(r["val_acc"] for r in records)
    assert summary["best_epoch"] == 1 + int(np.argmax([r["val_acc"] for r in records]))
    assert {"train_acc", "val_loss", "lr", "samples_per_s"} <= set(records[0])
    # the resolved config is in the run folder and in each checkpoint
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved == load_config(config(data_file, train={"epochs": 5}))
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["config"]["train"] == saved["train"] and ckpt["config"]["model"]["group"] == "cnn"
    assert ckpt["classes"] == ["small", "mid", "big"] and ckpt["training"]["epoch"] == 5
    # best.pt is a ready model
    model = load_model(out / "best.pt")
    assert model(torch.zeros(2, 1, R, R, R)).shape == (2, 3)
    assert "training" not in load_checkpoint(out / "best.pt")
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("epoch ")]
    assert len(lines) == 5 and "val loss" in lines[0] and "samples/s" in lines[0]


def test_a_run_folder_is_not_overwritten(data_file, tmp_path):
    out = tmp_path / "run"
    train(config(data_file, train={"epochs": 1}), out=out, progress=False)
    with pytest.raises(ConfigError, match="--resume"):
        train(config(data_file, train={"epochs": 1}), out=out, progress=False)
    with pytest.raises(ConfigError, match="optimizer.lr"):
        train(config(data_file, train={"epochs": 2}, optimizer={"lr": 0.1}), out=out, resume=True, progress=False)
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(config(data_file), out=tmp_path / "empty", resume=True, progress=False)


# ------------------------------------------------------------------------------ resumption


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(data_file, tmp_path):
    # steerable model, dropout and random SO(3) augmentation: every source of randomness is involved
    cfg = config(data_file, SO3, augment={"rotation": "so3"}, train={"batch_size": 12})
    train(cfg, out=tmp_path / "full", progress=False)
    # stop_after ends the run after epoch 1 without changing its schedule, which spans train.epochs
    train(cfg, out=tmp_path / "split", overrides=["train.stop_after=1"], progress=False)
    assert load_checkpoint(tmp_path / "split" / "last.pt")["training"]["epoch"] == 1
    summary = train(cfg, out=tmp_path / "split", resume=True, progress=False)
    assert summary["epochs"] == 2
    assert_same_weights(tmp_path / "full" / "last.pt", tmp_path / "split" / "last.pt")
    lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["epoch"] for ln in lines] == [1, 2]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_epoch_writes_a_checkpoint_and_resume_continues_exactly(data_file, tmp_path, monkeypatch, signum):
    cfg = config(data_file)
    train(cfg, out=tmp_path / "full", progress=False)
    handler_before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the suite runs in the background

    backward = loop.Trainer._backward
    calls = []

    def backward_then_signal(self, loss):
        backward(self, loss)
        calls.append(1)
        if len(calls) == 4:  # step 1 of epoch 2 (3 steps per epoch)
            os.kill(os.getpid(), signum)

    monkeypatch.setattr(loop.Trainer, "_backward", backward_then_signal)
    with pytest.raises(TrainingInterrupted) as info:
        train(cfg, out=tmp_path / "cut", progress=False)
    assert info.value.epoch == 1 and info.value.step == 1
    state = load_checkpoint(tmp_path / "cut" / "last.pt")["training"]
    assert (state["epoch"], state["step"]) == (1, 1)
    assert signal.getsignal(signal.SIGINT) is handler_before  # handlers restored
    monkeypatch.setattr(loop.Trainer, "_backward", backward)
    train(cfg, out=tmp_path / "cut", resume=True, progress=False)
    assert_same_weights(tmp_path / "full" / "last.pt", tmp_path / "cut" / "last.pt")
    full = [json.loads(ln) for ln in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    cut = [json.loads(ln) for ln in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_loss"] for r in cut] == pytest.approx([r["train_loss"] for r in full])


def test_a_nonfinite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(data_file, tmp_path, monkeypatch):
    real = loop.loss_fn
    calls = []

    def loss_turning_nan(logits, labels, smoothing):
        calls.append(1)
        loss = real(logits, labels, smoothing)
        return loss * float("nan") if len(calls) > 4 else loss  # epoch 2, step 2

    monkeypatch.setattr(loop, "loss_fn", loss_turning_nan)
    out = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 2, step 2.*last good checkpoint"):
        train(config(data_file, train={"epochs": 3}), out=out, progress=False)
    assert load_checkpoint(out / "last.pt")["training"]["epoch"] == 1
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


# ------------------------------------------------------------------------------ data


def test_object_groups_keep_copies_together_and_holdout_is_stratified():
    sources = ["a", "a", "b", "c", "b", "c", "d"]
    groups = object_groups(sources)
    assert [g.tolist() for g in groups] == [[0, 1], [2, 4], [3, 5], [6]]
    labels = np.repeat([0, 1], 50)
    groups = [np.array([i]) for i in range(100)]
    val = holdout(groups, labels, 0.2, seed=3)
    assert val[:50].sum() == 10 and val[50:].sum() == 10
    assert np.array_equal(val, holdout(groups, labels, 0.2, seed=3))
    assert not np.array_equal(val, holdout(groups, labels, 0.2, seed=4))


def test_stored_copies_are_sampled_one_per_object_per_epoch(tmp_path):
    path = write_dataset(tmp_path / "copies.h5", {"train": cubes(4, 0, copies=3)}, classes=["s", "m", "b"],
                         representation="solid", normalization="sphere")
    cfg = load_config({"data": {"path": str(path), "val_fraction": 0.25}})
    data = load_data(cfg["data"], seed=0)
    assert data.num_copies == 3 and data.num_train == 9 and len(data.val_index) == 9  # 3 objects x 3 copies
    train_objects = {i // 3 for g in data.train_groups for i in g}
    assert train_objects.isdisjoint({i // 3 for i in data.val_index})
    sampler = EpochSampler(data.train_groups, seed=0)
    epochs = []
    for epoch in range(4):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert sorted(i // 3 for i in order) == sorted(train_objects)  # each object once
        epochs.append(order)
    assert len({tuple(o) for o in epochs}) == 4  # a new order and new copies every epoch
    sampler.set_epoch(2)
    assert list(sampler) == epochs[2]  # a function of (seed, epoch) only
    shards = [EpochSampler(data.train_groups, num_replicas=2, rank=r, seed=0) for r in range(2)]
    assert {i // 3 for s in shards for i in s} == train_objects  # together, the shards cover every object
    assert [len(list(s)) for s in shards] == [5, 5]  # DistributedSampler pads 9 to 10


def test_validation_split_choices(tmp_path):
    splits = {"train": cubes(4, 0), "val": cubes(1, 1)}
    path = write_dataset(tmp_path / "v.h5", splits, classes=["s", "m", "b"], representation="solid",
                         normalization="sphere")
    base = {"data": {"path": str(path)}}
    assert load_data(load_config(base)["data"], 0).val_source == "split 'val'"
    data = load_data(load_config(base, ["data.val_split=none"])["data"], 0)
    assert data.val is None and data.num_train == 12
    with pytest.raises(ConfigError, match="'data.val_split'.*no split 'dev'"):
        load_data(load_config(base, ["data.val_split=dev"])["data"], 0)
    with pytest.raises(ConfigError, match="'data.resolution'"):
        load_data(load_config(base, ["data.resolution=16"])["data"], 0)


def test_npz_data_is_imported_once_into_the_cache(tmp_path):
    c = cubes(5, 0)
    npz = tmp_path / "vols.npz"
    np.savez(npz, volumes=c["volumes"], labels=c["labels"], classes=np.array(["s", "m", "b"]))
    cfg = load_config({"data": {"path": str(npz), "cache_dir": str(tmp_path / "cache")}})
    data = load_data(cfg["data"], 0)
    assert data.path.parent == tmp_path / "cache" and data.path.name == cached_file_name(cfg["data"])
    assert data.classes == ["s", "m", "b"] and data.num_train + len(data.val_index) == 15
    stamp = data.path.stat().st_mtime_ns
    assert load_data(cfg["data"], 0).path.stat().st_mtime_ns == stamp  # reused, not rebuilt


def test_builtin_data_is_voxelized_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VOL3D_CACHE", str(tmp_path / "cache"))
    cfg = load_config({"data": {"path": "builtin:tetris", "resolution": 8}})
    data = load_data(cfg["data"], 0)
    assert data.path.parent == tmp_path / "cache" and data.path.name.startswith("tetris-r8-solid")
    assert data.resolution == 8 and len(data.classes) == 8 and data.num_train == 8
    assert data.val is None  # one object per class: round(0.1 * 1) = 0 held out, so no validation
    stamp = data.path.stat().st_mtime_ns
    assert load_data(cfg["data"], 0).path.stat().st_mtime_ns == stamp
    # a different fit margin voxelizes differently: a new cache file, not the old one reused
    monkeypatch.setattr(importlib.import_module("vol3d.data.voxelize"), "SPHERE_MARGIN", 2.0)
    refit = load_data(cfg["data"], 0)
    assert refit.path != data.path and data.path.exists()
    def occupied(d):
        return sum(float(d.train[i][0].sum()) for i in range(d.num_train))

    assert occupied(refit) < occupied(data)  # the pieces are fitted into a smaller sphere


# ------------------------------------------------------------------------------ augmentation, schedule


def test_augmentation_rotates_on_the_batch_device_and_is_seeded():
    x = torch.from_numpy(cubes(1, 0)["volumes"]).float().unsqueeze(1)
    assert augment_batch(x, "none", batch_rng(0, 0, 0)) is x
    out = augment_batch(x, "octa", batch_rng(0, 1, 2))
    # cube rotations are exact permutations of the voxels: same values, same mass, per sample
    assert torch.equal(out.flatten(1).sort(1).values, x.flatten(1).sort(1).values)
    assert torch.equal(out, augment_batch(x, "octa", batch_rng(0, 1, 2)))
    assert not torch.equal(out, augment_batch(x, "octa", batch_rng(0, 1, 3)))
    z = augment_batch(x, "z", batch_rng(0, 0, 0))
    assert z.shape == x.shape and not torch.equal(z, x)
    # a 90-degree turn about z is exact in the one routine
    turned = permute_volume(x, [1, 0, 2], [1, -1, 1])
    assert torch.equal(turned.sum((2, 3, 4)), x.sum((2, 3, 4)))


def test_warmup_cosine_schedule():
    f = loop.warmup_cosine(total_steps=10, warmup_steps=2, floor=0.1)
    values = [f(t) for t in range(10)]
    assert values[:2] == [0.5, 1.0]
    assert values[2] == pytest.approx(1.0) and all(a >= b for a, b in zip(values[2:], values[3:]))
    assert f(10) == pytest.approx(0.1)
    assert loop.warmup_cosine(10, 0, 0.0, cosine=False)(7) == 1.0


# ------------------------------------------------------------------------------ distributed


def test_ddp_with_gloo_on_two_cpu_processes(data_file, tmp_path):
    cfg_path = tmp_path / "ddp.yaml"
    cfg_path.write_text(yaml.safe_dump(config(data_file, train={"epochs": 1, "batch_size": 6})))
    script = tmp_path / "run_ddp.py"
    script.write_text(textwrap.dedent(f"""
        import json, os, sys
        from vol3d.training import train
        summary = train({str(cfg_path)!r}, out={str(tmp_path / 'run')!r}, progress=False)
        with open({str(tmp_path)!r} + f"/summary{{os.environ['RANK']}}.json", "w") as f:
            json.dump(summary, f)
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             "--standalone", str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = [json.loads((tmp_path / f"summary{r}.json").read_text()) for r in range(2)]
    assert [s["world_size"] for s in summaries] == [2, 2]
    assert summaries[0]["last_val_acc"] == summaries[1]["last_val_acc"]  # metrics summed over processes
    assert summaries[0]["last_train_loss"] == summaries[1]["last_train_loss"]
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "config.yaml", "last.pt", "metrics.jsonl"]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1  # rank 0 logs alone
    state = load_checkpoint(run / "last.pt")["training"]
    assert state["world_size"] == 2 and state["epoch"] == 1
    assert result.stdout.count("epoch 1/1") == 1
