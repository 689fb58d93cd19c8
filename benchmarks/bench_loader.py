"""Loader throughput: shuffled 32^3 samples/s through ``DataLoader(VolumeDataset)``.

Target (issue 2): at least 10,000 samples/s. The dataset is ModelNet10's training set from
``../shared/data/modelnet10_train_32.npz`` when present (imported with ``vol3d import``), else 4000
synthetic occupancy volumes of similar fill (random boxes and ellipsoids). Each configuration
reads shuffled epochs with batch size 64; the first epoch warms up (worker start-up, page cache)
and the median over the timed epochs is reported. Loader styles:

``per-item``  the dataset behind a wrapper without ``__getitems__``: one ``h5py`` read and one
              tensor per sample (the naive baseline the other rows are compared to);
``default``   ``DataLoader(ds, batch_size=64)``: batched fetching via ``__getitems__``, then the
              default per-sample collate (a ``torch.stack`` copy);
``batch``     :func:`vol3d.data.dataset.batch_loader` (a ``BatchSampler`` with ``batch_size=None``):
              ``ds[indices]`` returns the stacked batch directly (no collate copy).

Run: ``python benchmarks/bench_loader.py [--epochs 5]``; writes ``benchmarks/results/loader.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vol3d.data.dataset import VolumeDataset, batch_loader
from vol3d.data.importers import import_volumes
from vol3d.data.store import write_dataset
from vol3d.files import write_text_atomic

REPO = Path(__file__).resolve().parents[1]
SHARED_NPZ = REPO.parent / "shared" / "data" / "modelnet10_train_32.npz"
RESULTS = REPO / "benchmarks" / "results" / "loader.json"
TARGET = 10_000
BATCH = 64


class PerItem(Dataset):
    """The same dataset without batched fetching: one ``__getitem__`` (one h5py read) per sample."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return self.dataset[i]


def synthetic_volumes(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(n, size^3)`` uint8 boxes (label 0) and ellipsoids (label 1) of random extent and centre."""
    rng = np.random.default_rng(seed)
    grid = np.indices((size,) * 3).reshape(3, -1).T + 0.5
    labels = rng.integers(0, 2, n)
    vols = np.empty((n, size, size, size), np.uint8)
    for i in range(n):
        centre = rng.uniform(0.35, 0.65, 3) * size
        half = rng.uniform(0.15, 0.35, 3) * size  # ~10% fill, like ModelNet at 32^3
        d = np.abs(grid - centre) / half
        inside = d.max(axis=1) <= 1 if labels[i] == 0 else (d**2).sum(axis=1) <= 1
        vols[i] = inside.reshape((size,) * 3)
    return vols, labels


def make_dataset(folder: Path) -> tuple[Path, str]:
    out = folder / "bench.h5"
    if SHARED_NPZ.is_file():
        import_volumes(SHARED_NPZ, out, show_progress=False)
        return out, f"ModelNet10 train ({SHARED_NPZ.name})"
    vols, labels = synthetic_volumes(4000)
    sources = [f"synthetic/{i}" for i in range(len(vols))]
    write_dataset(out, {"train": {"volumes": vols, "labels": labels, "sources": sources}},
                  classes=["box", "ellipsoid"], representation="solid", normalization="cube")
    return out, "synthetic boxes/ellipsoids"


def make_loader(dataset, style: str, workers: int) -> DataLoader:
    """A shuffling loader of batch size 64 in one of the styles of the module docstring."""
    common = {"num_workers": workers, "persistent_workers": workers > 0}
    if style == "batch":
        return batch_loader(dataset, BATCH, shuffle=True, seed=0, **common)
    if style == "per-item":
        dataset = PerItem(dataset)
    return DataLoader(dataset, batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(0), **common)


def epoch_rates(loader: DataLoader, epochs: int) -> list[float]:
    """samples/s of each timed epoch, after one warm-up epoch."""
    rates = []
    for epoch in range(epochs + 1):
        start, count = time.perf_counter(), 0
        for volumes, labels in loader:
            count += len(labels)
        if epoch:
            rates.append(count / (time.perf_counter() - start))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per configuration")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path, name = make_dataset(Path(tmp))
        lazy, memory = VolumeDataset(path), VolumeDataset(path, in_memory=True)
        configs = [("lazy", "per-item", 0), ("lazy", "default", 0), ("lazy", "default", 2), ("lazy", "batch", 0),
                   ("lazy", "batch", 2), ("in-memory", "default", 0), ("in-memory", "batch", 0)]
        rows = []
        for mode, style, workers in configs:
            loader = make_loader(lazy if mode == "lazy" else memory, style, workers)
            rates = epoch_rates(loader, args.epochs)
            rows.append({"mode": mode, "loader": style, "num_workers": workers,
                         "samples_per_s": statistics.median(rates), "epochs": rates})
        size_mb = path.stat().st_size / 1e6
        load = os.getloadavg()[0]
    naive = rows[0]["samples_per_s"]
    print(f"loader: {name}, {len(lazy)} samples of {lazy.resolution}^3, batch {BATCH}, shuffled, "
          f"file {size_mb:.1f} MB, median of {args.epochs} epochs, {os.cpu_count()} CPUs (load {load:.1f})")
    print(f"{'mode':<11}{'loader':<10}{'workers':>8}{'samples/s':>12}{'x per-item':>11}{'>= 10k':>8}")
    for row in rows:
        ok = "yes" if row["samples_per_s"] >= TARGET else "no"
        print(f"{row['mode']:<11}{row['loader']:<10}{row['num_workers']:>8}{row['samples_per_s']:>12,.0f}"
              f"{row['samples_per_s'] / naive:>11.2f}{ok:>8}")
    save_results({"benchmark": "loader", "dataset": name, "samples": len(lazy), "resolution": lazy.resolution,
                "batch_size": BATCH, "file_mb": size_mb, "target_samples_per_s": TARGET, "rows": rows,
                "cpus": os.cpu_count(), "load_average": load, "torch": torch.__version__,
                "python": platform.python_version(),
                "date": time.strftime("%Y-%m-%d %H:%M:%S")})


def save_results(result: dict) -> None:
    write_text_atomic(RESULTS, json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
