"""Voxelize a whole dataset of meshes into one vol3d HDF5 file.

The work is a fixed, ordered list of :class:`~vol3d.data.sources.MeshSource` items. Items are
voxelized in parallel (``workers`` processes) but written strictly in list order, and every random
choice (the rotations of item ``n``) is seeded by ``(seed, n)``: the output is byte-for-byte the same
for any number of workers, and an interrupted run resumes after the last item it wrote.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import sys
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from ..errors import MeshError, UsageError
from ..rotations import sample_rotations
from .sources import MeshSource, discover_sources
from .store import DatasetWriter, open_dataset
from .voxelize import FITS, REPRESENTATIONS, voxelize

ROTATION_GROUPS = ("z", "so3", "octa")
FLUSH_EVERY = 32  # items per write: bounds both memory and the work lost to an interruption


@dataclass(frozen=True)
class VoxelizeSettings:
    """Everything that determines the voxels of one item (and so the resume key of a run)."""

    resolution: int = 32
    representation: str = "solid"
    fit: str = "sphere"
    rotations: int = 0
    rotation_group: str = "so3"
    seed: int = 0

    def validate(self) -> None:
        if not 4 <= self.resolution <= 512:
            raise UsageError(f"--resolution must be between 4 and 512, got {self.resolution}")
        if self.representation not in REPRESENTATIONS:
            raise UsageError(f"--representation must be one of {', '.join(REPRESENTATIONS)}")
        if self.fit not in FITS:
            raise UsageError(f"--fit must be one of {', '.join(FITS)}")
        if self.rotations < 0:
            raise UsageError(f"--rotations must be >= 0, got {self.rotations}")
        if self.rotation_group not in ROTATION_GROUPS:
            raise UsageError(f"--rotation-group must be one of {', '.join(ROTATION_GROUPS)}")
        if self.rotation_group == "octa" and self.rotations > 24:
            raise UsageError("--rotation-group octa has 24 distinct rotations; use --rotations <= 24")

    def item_rotations(self, index: int) -> np.ndarray:
        """The rotations of item ``index``: ``(max(K, 1), 3, 3)``, the identity when K = 0."""
        if self.rotations == 0:
            return np.eye(3)[None]
        rng = np.random.default_rng([self.seed, index])
        return sample_rotations(self.rotations, self.rotation_group, rng, replace=False)


@dataclass
class VoxelizeSummary:
    """What a run did: counts per split, the skipped files with reasons, and the output path."""

    out: str
    classes: list
    counts: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)
    resumed_from: int = 0

    @property
    def num_samples(self) -> int:
        return sum(self.counts.values())

    def format(self) -> str:
        splits = ", ".join(f"{split} {n}" for split, n in self.counts.items()) or "none"
        lines = [
            f"wrote {self.out}: {self.num_samples} samples ({splits}) in {len(self.classes)} classes",
        ]
        if self.resumed_from:
            lines.append(f"resumed after {self.resumed_from} items already written")
        lines.append(f"skipped {len(self.errors)} file(s)" + (":" if self.errors else ""))
        lines += [f"  {source}: {reason}" for source, reason in self.errors]
        return "\n".join(lines)


def _voxelize_item(task):
    """Worker: voxelize one item under its rotations. Returns (index, volumes, rotations, error)."""
    index, item, settings = task
    try:
        mesh = item.load()
        rotations = settings.item_rotations(index)
        volumes = np.stack(
            [
                voxelize(
                    mesh,
                    resolution=settings.resolution,
                    representation=settings.representation,
                    fit=settings.fit,
                    rotation=rotation,
                )
                for rotation in rotations
            ]
        )
        return index, volumes, rotations.astype(np.float32), None
    except MeshError as exc:
        return index, None, None, exc.reason
    except Exception as exc:  # one bad mesh never stops a dataset: record why and go on
        return index, None, None, f"{type(exc).__name__}: {exc}".splitlines()[0]


def _resume_key(items: list[MeshSource], classes: list[str], settings: VoxelizeSettings) -> str:
    """A digest of the inputs and settings: a partial file is resumed only by an identical run."""
    digest = hashlib.sha256(json.dumps([classes, settings.__dict__]).encode())
    for item in items:
        digest.update(f"{item.source}\t{item.label}\t{item.split}\n".encode())
    return digest.hexdigest()[:32]


def _imap_ordered(tasks, workers: int):
    """Results of ``_voxelize_item`` over ``tasks`` in task order, with ``workers`` processes."""
    if workers <= 1:
        yield from map(_voxelize_item, tasks)
        return
    # spawn-free "fork" is fastest where available; results come back in order (imap)
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with context.Pool(workers) as pool:
        yield from pool.imap(_voxelize_item, tasks, chunksize=1)


def voxelize_dataset(
    src,
    out,
    *,
    resolution: int = 32,
    representation: str = "solid",
    fit: str = "sphere",
    rotations: int = 0,
    rotation_group: str = "so3",
    test_fraction: float = 0.2,
    seed: int = 0,
    workers: int = 1,
    strict: bool = False,
    command: str | None = None,
    progress: bool = True,
) -> VoxelizeSummary:
    """Voxelize every mesh of ``src`` into the vol3d HDF5 file ``out``.

    Args:
        src: a ModelNet-style folder, a ``<class>/<file>`` folder, a CSV manifest, or
            ``builtin:synthetic`` / ``builtin:tetris`` (see :func:`~vol3d.data.sources.discover_sources`).
        out: the ``.h5`` file to write. It appears only when the run completes (atomic rename); an
            interrupted run leaves a partial file next to it that the same command resumes.
        resolution, representation, fit: passed to :func:`~vol3d.data.voxelize.voxelize`.
        rotations: K > 0 stores K rotated copies per mesh, rotations drawn from ``rotation_group``
            (``z``, ``so3`` or ``octa``; distinct for ``octa``) and applied to the mesh before voxelizing.
        test_fraction, seed: the seeded split for sources without one; ``seed`` also seeds rotations.
        workers: processes; the output does not depend on it.
        strict: raise :class:`~vol3d.errors.MeshError` on the first bad file instead of skipping it.

    Returns:
        a :class:`VoxelizeSummary`; ``summary.num_samples == 0`` means nothing could be voxelized.
    """
    settings = VoxelizeSettings(resolution, representation, fit, rotations, rotation_group, seed)
    settings.validate()
    if workers < 1:
        raise UsageError(f"--workers must be >= 1, got {workers}")
    classes, items = discover_sources(src, test_fraction=test_fraction, seed=seed)
    class_index = {name: i for i, name in enumerate(classes)}
    summary = VoxelizeSummary(out=str(out), classes=classes)

    writer = DatasetWriter(
        out,
        classes=classes,
        resolution=resolution,
        representation=representation,
        normalization=fit,
        command=command or f"vol3d.voxelize_dataset({str(src)!r})",
        dtype="uint8" if representation in ("solid", "surface") else "float16",
        resume_key=_resume_key(items, classes, settings),
    )
    with writer:
        summary.resumed_from = start = writer.num_done
        tasks = [(n, items[n], settings) for n in range(start, len(items))]
        bar = tqdm(total=len(items), initial=start, desc="voxelize", unit="mesh", disable=not progress)
        pending = []  # finished items not yet written: (item, volumes, rotations, error)
        for index, volumes, mats, error in _imap_ordered(tasks, workers):
            item = items[index]
            if error is not None:
                if strict:
                    raise MeshError(item.source, error)
                bar.write(f"skipped {item.source}: {error}")
            pending.append((item, volumes, mats, error))
            bar.update(1)
            if len(pending) >= FLUSH_EVERY:
                _flush(writer, pending, class_index, done=index + 1)
                pending = []
        _flush(writer, pending, class_index, done=len(items))
        bar.close()
    with open_dataset(out) as written:
        summary.counts = dict(written.splits)
        summary.errors = list(written.errors)
    return summary


def _flush(writer: DatasetWriter, pending: list, class_index: dict, done: int) -> None:
    """Write the finished items (samples per split in item order, then errors) and mark them done.

    ``mark_done`` comes last, so an interruption never records an item as done that was not written.
    """
    rows = [row for row in pending if row[3] is None]
    for split in dict.fromkeys(item.split for item, *_ in rows):
        in_split = [(item, vols, mats) for item, vols, mats, _ in rows if item.split == split]
        writer.append(
            split,
            np.concatenate([vols for _, vols, _ in in_split]),
            np.concatenate([np.full(len(vols), class_index[item.label]) for item, vols, _ in in_split]),
            [item.source for item, vols, _ in in_split for _ in range(len(vols))],
            np.concatenate([mats for _, _, mats in in_split]),
        )
    for item, _, _, error in pending:
        if error is not None:
            writer.add_error(item.source, error)
    writer.mark_done(done)
