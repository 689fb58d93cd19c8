"""The torch ``Dataset`` over one split of a vol3d dataset file (see :mod:`vol3d.data.store`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .store import open_dataset, read_volumes


class VolumeDataset(torch.utils.data.Dataset):
    """One split of a vol3d HDF5 file as ``(volume, label)`` pairs.

    ``volume`` is a float32 tensor ``(1, R, R, R)`` (axes x, y, z; uint8 occupancy becomes
    ``{0., 1.}``, float16 sdf/intensity is widened to float32) and ``label`` an int64 scalar tensor.

    The HDF5 file is opened lazily, on the first read in each process (the process id is checked
    on every read), so the dataset is safe to use with ``DataLoader(num_workers > 0)``: every
    worker gets its own file handle and no handle is ever pickled. ``in_memory=True`` instead
    reads the whole split once, at construction (uint8: ``N * R^3`` bytes).

    Batched fetching: ``DataLoader`` calls :meth:`__getitems__` with a whole batch of indices,
    which reads them in sorted order straight from the compressed chunks. ``dataset[indices]``
    (see :meth:`batch`) returns a stacked batch, the fastest path (see benchmarks/bench_loader.py).

    Args:
        path: a vol3d ``.h5`` file.
        split: split name (``train``, ``test``, ...).
        in_memory: load the split into memory once instead of reading lazily.
        transform: optional callable applied to each ``(1, R, R, R)`` float32 volume tensor.

    Attributes:
        classes: list of class names; resolution: ``R``; representation: string.
        labels: ``(N,)`` int64 numpy array (e.g. for stratified splits or class weights).
        rotations: ``(N, 3, 3)`` float32 numpy array of the rotations stored with each sample.
    """

    def __init__(self, path, split: str = "train", in_memory: bool = False, transform=None):
        self.path = Path(path)
        self.split = split
        self.transform = transform
        with open_dataset(self.path) as f:
            f.volumes(split)  # raises FormatError naming the split when it is missing
            self.classes = f.classes
            self.resolution = f.resolution
            self.representation = f.representation
            self.labels = f.labels(split)
            self.rotations = f.rotations(split)
            self._memory = f.volumes(split)[...] if in_memory else None
        self._file = None
        self._pid = None

    def __len__(self) -> int:
        return len(self.labels)

    def _volumes(self):
        """The split's volumes: the in-memory array, or this process's own open h5py dataset."""
        if self._memory is not None:
            return self._memory
        if self._pid != os.getpid():  # first read here, or a forked worker holding the parent's handle
            self._file = open_dataset(self.path)
            self._pid = os.getpid()
        return self._file.volumes(self.split)

    def _check(self, indices) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        if len(indices) and (indices.min() < -n or indices.max() >= n):
            raise IndexError(f"{self.path}: index out of range for split '{self.split}' with {n} samples")
        return indices % max(n, 1)

    def batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples ``indices`` stacked: volumes ``(B, 1, R, R, R)`` float32 and labels ``(B,)`` int64.

        Also reached as ``dataset[indices]`` with a list/array of indices; with
        ``DataLoader(dataset, sampler=BatchSampler(RandomSampler(dataset), 64, False),
        batch_size=None)`` whole batches come from here without a per-sample collate copy.
        """
        indices = self._check(indices)
        # numpy's cast: torch's multi-threaded one is ~10x slower on busy small machines
        volumes = torch.from_numpy(read_volumes(self._volumes(), indices).astype(np.float32)).unsqueeze(1)
        if self.transform is not None:
            volumes = torch.stack([self.transform(v) for v in volumes]) if len(volumes) else volumes
        return volumes, torch.from_numpy(self.labels[indices])

    def __getitem__(self, index):
        """``(volume (1, R, R, R), label)`` for an integer index; a :meth:`batch` for a sequence."""
        if np.ndim(index) == 0:
            volumes, labels = self.batch([index])
            return volumes[0], labels[0]
        return self.batch(index)

    def __getitems__(self, indices) -> list:
        """Samples for a batch of indices (used by ``DataLoader`` for batched fetching)."""
        return list(zip(*self.batch(indices)))

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"], state["_pid"] = None, None  # h5py handles cannot cross processes
        return state

    def __del__(self):
        if getattr(self, "_file", None) is not None and self._pid == os.getpid():
            self._file.close()

    def __repr__(self) -> str:
        return (f"VolumeDataset('{self.path}', split='{self.split}', n={len(self)}, "
                f"resolution={self.resolution}, classes={len(self.classes)})")


def batch_loader(dataset: VolumeDataset, batch_size: int = 64, shuffle: bool = True, num_workers: int = 0,
                 seed: int | None = None, drop_last: bool = False, **kwargs) -> torch.utils.data.DataLoader:
    """The fastest ``DataLoader`` over a :class:`VolumeDataset`: whole batches from ``dataset[indices]``.

    A ``BatchSampler`` hands each batch's indices to the dataset at once (``batch_size=None`` turns
    off per-sample collation), which saves the collate copy of ``DataLoader(dataset, batch_size)``
    (about 2x on 32^3, see benchmarks/bench_loader.py). Yields ``(volumes (B, 1, R, R, R) float32,
    labels (B,) int64)``.

    Args:
        dataset: the dataset (a ``Subset`` of one works too: it forwards lists of indices).
        batch_size, shuffle, drop_last: as for ``DataLoader``.
        num_workers: worker processes (each opens the file itself).
        seed: seeds the shuffle (``None``: torch's global RNG).
        **kwargs: passed to ``DataLoader`` (e.g. ``pin_memory``, ``persistent_workers``).
    """
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    base = (torch.utils.data.RandomSampler(dataset, generator=generator) if shuffle
            else torch.utils.data.SequentialSampler(dataset))
    sampler = torch.utils.data.BatchSampler(base, batch_size, drop_last=drop_last)
    return torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=num_workers, **kwargs)
