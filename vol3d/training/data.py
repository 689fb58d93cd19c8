"""The ``data:`` section of a training config -> training and validation samples, and their order.

``data.path`` is one of

* a vol3d HDF5 file (``vol3d voxelize`` / ``vol3d import``): read as is;
* an ``.npz`` that ``vol3d import`` reads: imported once to a cache file, keyed by the file's path,
  size, modification time and the import options;
* ``builtin:NAME``: voxelized once (``data.resolution``, ``data.representation``) to a cache file.

The cache folder is ``data.cache_dir``, else ``$VOL3D_CACHE``, else ``~/.cache/vol3d``; cache files
are written atomically, so an interrupted build is never mistaken for a finished one.

Validation: the file's ``val`` split when it has one (``data.val_split: auto``), a named split, or
a seeded stratified hold-out of ``data.val_fraction`` of ``train``. The hold-out is drawn per class
over *objects*, not samples: the rotated copies of one mesh (``vol3d voxelize --rotations K``) share
a source and stay on the same side, so no object is seen in both.

Stored rotated copies: :class:`EpochSampler` visits every training object once per epoch and
picks one of its stored copies at random each time, so an epoch has one sample per object and the
copies act as exact, pre-computed rotation augmentation.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from .. import __version__
from ..data.dataset import VolumeDataset
from ..data.sources import assign_splits  # the one seeded stratified split of vol3d
from ..data.store import open_dataset
from .config import ConfigError


@dataclass
class TrainData:
    """Resolved data: datasets and the sample indices that make up training and validation.

    Attributes:
        path: the HDF5 file read (for builtin/npz: the cache file).
        classes: class names, index = label.
        resolution: grid size ``R`` of the volumes.
        train: dataset of the training samples; ``train_groups``: one int64 array per training
            object with the indices (into ``train``) of its stored copies.
        val: dataset of the validation samples (None: no validation); ``val_index``: its indices.
        val_source: how validation was chosen, for the logs.
        representation: the volumes' representation (``solid``, ``surface``, ``sdf``, ...): rotation
            augmentation fills with its background value.
    """

    path: Path
    classes: list
    resolution: int
    train: VolumeDataset
    train_groups: list
    val: VolumeDataset | None
    val_index: np.ndarray
    val_source: str
    representation: str = "solid"

    @property
    def num_train(self) -> int:
        """Training objects (= samples per epoch)."""
        return len(self.train_groups)

    @property
    def num_copies(self) -> int:
        """Stored copies per training object (1 when the file has no rotated copies)."""
        return max((len(g) for g in self.train_groups), default=1)


def cache_dir(configured=None) -> Path:
    """``configured``, else ``$VOL3D_CACHE``, else ``~/.cache/vol3d``."""
    return Path(configured or os.environ.get("VOL3D_CACHE") or Path.home() / ".cache" / "vol3d").expanduser()


def dataset_file(data: dict, *, progress: bool = True) -> Path:
    """The vol3d HDF5 file for ``data.path``: the file itself, or the (built if needed) cache file."""
    path = data["path"]
    if path.startswith("builtin:"):
        return _builtin_file(data, progress)
    if path.lower().endswith(".npz"):
        return _imported_file(data, progress)
    return Path(path)


def cached_file_name(data: dict) -> str:
    """Name of the cache file for builtin/npz data (encodes everything that changes its content)."""
    path = data["path"]
    if path.startswith("builtin:"):
        from ..data.voxelize import SPHERE_MARGIN  # read at call time: a changed margin is a new file

        resolution = data["resolution"] or 32
        return (f"{path[len('builtin:'):]}-r{resolution}-{data['representation']}-m{SPHERE_MARGIN:g}"
                f"-v{__version__}.h5")
    stat = os.stat(path)
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{data['resolution']}|{data['pad_for_rotation']}|{__version__}"
    return f"{Path(path).stem}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.h5"


def _builtin_file(data: dict, progress: bool) -> Path:
    from ..data.pipeline import voxelize_dataset

    return _cached(data, f"building {data['path']} at {data['resolution'] or 32}^3", lambda out: voxelize_dataset(
        data["path"], out, resolution=data["resolution"] or 32, representation=data["representation"],
        progress=progress, command=f"vol3d train (data.path={data['path']})"))


def _imported_file(data: dict, progress: bool) -> Path:
    from ..data.importers import import_volumes

    return _cached(data, f"importing {data['path']}", lambda out: import_volumes(
        data["path"], out, resolution=data["resolution"], pad_for_rotation=data["pad_for_rotation"],
        command=f"vol3d train (data.path={data['path']})", show_progress=progress))


def _cached(data: dict, what: str, build) -> Path:
    """The cache file of ``data``, made by ``build(path)`` if missing. An exclusive lock on a
    sibling ``.lock`` file lets concurrent runs sharing a cache build it once and wait for it."""
    import fcntl

    out = cache_dir(data["cache_dir"]) / cached_file_name(data)
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(out.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not out.exists():  # another process may have built it while we waited
            print(f"{what} into the cache: {out}", flush=True)
            build(out)
    return out


def load_data(data: dict, seed: int, *, file: Path | None = None) -> TrainData:
    """Open the training/validation samples of ``data`` (a resolved ``data:`` section).

    ``file`` is the HDF5 to read (default: :func:`dataset_file`, which may build a cache file; under
    torchrun the caller builds it on rank 0 first).
    """
    file = Path(file) if file is not None else dataset_file(data)
    with open_dataset(file) as f:
        splits, resolution, rep = dict(f.splits), f.resolution, f.representation
        if "train" not in splits:
            raise ConfigError(f"config key 'data.path': {file} has no 'train' split (has: {', '.join(splits) or 'none'})")
        groups = object_groups(f.sources("train"))
    if data["resolution"] not in (None, resolution) and file == Path(data["path"]):  # a user's HDF5 file
        raise ConfigError(f"config key 'data.resolution' is {data['resolution']} but {file} holds "
                          f"{resolution}^3 volumes (omit it, or re-import with --resolution)")
    train = VolumeDataset(file, "train", in_memory=data["in_memory"])
    choice = data["val_split"]
    if choice == "auto":
        choice = "val" if "val" in splits else ("holdout" if data["val_fraction"] > 0 else "none")
    if choice == "none":
        return TrainData(file, train.classes, resolution, train, groups, None, np.zeros(0, np.int64), "none", rep)
    if choice == "holdout":
        is_val = holdout(groups, train.labels, data["val_fraction"], seed)
        if not is_val.any():  # e.g. one object per class
            return TrainData(file, train.classes, resolution, train, groups, None, np.zeros(0, np.int64),
                             f"none (data.val_fraction={data['val_fraction']} holds out no object)", rep)
        val_index = np.sort(np.concatenate([g for g, v in zip(groups, is_val) if v] or [np.zeros(0, np.int64)]))
        groups = [g for g, v in zip(groups, is_val) if not v]
        frac = f"{data['val_fraction']:.0%}"
        return TrainData(file, train.classes, resolution, train, groups, train, val_index,
                         f"{frac} of train held out per class (seed {seed})", rep)
    if choice not in splits:
        raise ConfigError(f"config key 'data.val_split': {file} has no split '{choice}' "
                          f"(has: {', '.join(splits)}; or use auto / none)")
    val = VolumeDataset(file, choice, in_memory=data["in_memory"])
    if val.classes != train.classes:
        raise ConfigError(f"config key 'data.val_split': split '{choice}' has other classes than train")
    return TrainData(file, train.classes, resolution, train, groups, val, np.arange(len(val)), f"split '{choice}'", rep)


def object_groups(sources) -> list:
    """Indices of the samples of each object (samples sharing a source string), in first-seen order."""
    sources = np.asarray(sources)
    if len(sources) == 0:
        return []
    _, first, inverse = np.unique(sources, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # objects in file order
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    obj = rank[inverse.reshape(-1)]
    by_obj = np.argsort(obj, kind="stable")
    counts = np.bincount(obj, minlength=len(order))
    return np.split(by_obj.astype(np.int64), np.cumsum(counts)[:-1])


def holdout(groups, labels, fraction: float, seed: int) -> np.ndarray:
    """Boolean ``(num_objects,)``: which objects go to validation, ``round(fraction * n_c)`` per class,
    seeded (the split vol3d uses everywhere, :func:`vol3d.data.sources.assign_splits`)."""
    records = [(f"{i:09d}", str(int(labels[g[0]])), None) for i, g in enumerate(groups)]
    return np.array([split == "test" for _, _, split in assign_splits(records, fraction, seed)], dtype=bool)


class EpochSampler(DistributedSampler):
    """The training order: every object once per epoch, shuffled, sharded over processes.

    A :class:`~torch.utils.data.DistributedSampler` over objects (the order is a function of
    ``seed`` and the epoch only, so a resumed run sees the same order), where each object yields one
    of its stored copies, drawn from ``default_rng([seed, epoch])``. Without torchrun it is used with
    ``num_replicas=1, rank=0``.
    """

    def __init__(self, groups, *, num_replicas: int = 1, rank: int = 0, seed: int = 0):
        super().__init__(range(len(groups)), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.groups = list(groups)
        self.sizes = np.array([len(g) for g in self.groups], dtype=np.int64)

    def __iter__(self):
        copy = np.random.default_rng([self.seed, self.epoch, 0x5A3]).integers(0, np.maximum(self.sizes, 1))
        for obj in super().__iter__():
            yield int(self.groups[obj][copy[obj]])

    def batches(self, batch_size: int, drop_last: bool) -> list:
        """This epoch's (set with ``set_epoch``) batches of this process: lists of sample indices."""
        order = list(self)
        stop = len(order) - len(order) % batch_size if drop_last else len(order)
        return [order[i:i + batch_size] for i in range(0, stop, batch_size)]


def shard(index: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """The validation samples of process ``rank``: every ``world_size``-th, no padding (results are summed)."""
    return np.asarray(index)[rank::world_size]


def loader(dataset, batches, num_workers: int = 0, pin_memory: bool = False):
    """A ``DataLoader`` yielding ``(volumes (B, 1, R, R, R), labels (B,))`` for the given index batches
    (whole batches come from ``dataset[indices]``, see :meth:`VolumeDataset.batch`)."""
    # its own generator: creating a loader must not draw from torch's global RNG (the dropout
    # stream), or a run resumed mid-epoch would diverge from an uninterrupted one
    return torch.utils.data.DataLoader(dataset, sampler=batches, batch_size=None, num_workers=num_workers,
                                       pin_memory=pin_memory, generator=torch.Generator().manual_seed(0))
