"""Discover the meshes of a dataset source: what to voxelize, with which label, in which split.

A *source* (the ``SRC`` of ``vol3d voxelize``) is one of:

``builtin:NAME``
    A built-in procedurally generated dataset (:mod:`vol3d.data.builtin`); it carries its own split
    and ignores ``test_fraction``.
A ModelNet-style folder
    ``<class>/<split>/<mesh>`` with split folders ``train`` and/or ``test`` (``val`` too). Detected
    by the presence of a ``train/`` or ``test/`` subfolder in any class folder. ModelNet's ``.off``
    files are the usual content, but any mesh format trimesh loads is accepted.
A generic folder
    ``<class>/<mesh>`` (meshes may sit in subfolders of the class folder). The split is made here:
    per class (stratified), a seeded random ``round(test_fraction * n)`` of the meshes go to
    ``test``, the rest to ``train``.
A CSV manifest (``*.csv``)
    Rows ``path,label[,split]``; an optional header row ``path,label[,split]``; paths relative to
    the CSV's folder; rows without a split are split as for a generic folder.

Classes are sorted alphabetically (label ``i`` is ``classes[i]``; this matches the usual ModelNet
label order) except for built-in datasets, which define their own order. Items come in a
deterministic order independent of the file system: by split (``train``, ``test``, then others
alphabetically), then class index, then source path. Files are not opened here: unreadable files
are reported when :meth:`MeshSource.load` is called, so a pipeline can skip them one by one.
"""

from __future__ import annotations

import csv
import re
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh

from ..errors import UsageError, Vol3dError

SPLIT_FOLDERS = ("train", "val", "test")
"""Subfolder names that mark a ModelNet-style folder's splits."""

# Compressed archives are left out: trimesh would unpack them into several meshes.
_ARCHIVE_FORMATS = {"zip", "bz2", "tar.gz", "tar.bz2"}
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # split names become HDF5 group names


@dataclass(frozen=True)
class MeshSource:
    """One mesh to voxelize.

    Attributes:
        source: the mesh's path, or ``"builtin:<dataset>/<class>/<index>"`` for built-in meshes.
        label: the class name.
        split: the split name (``"train"``, ``"test"``, ...).
        mesh: the mesh itself for built-in data (``None`` for files). Picklable, so items can be
            sent to worker processes; not part of equality or hashing.
    """

    source: str
    label: str
    split: str
    mesh: trimesh.Trimesh | None = field(default=None, compare=False, repr=False)

    def load(self) -> trimesh.Trimesh:
        """The mesh: a copy of the carried mesh, or the file read and validated by ``load_mesh``.

        Raises:
            vol3d.errors.MeshError: the file is unreadable, empty, a point cloud or degenerate.
        """
        if self.mesh is not None:
            return self.mesh.copy()
        from .meshes import load_mesh  # lazy: keeps discovery importable without the loader

        return load_mesh(self.source)


def mesh_extensions() -> frozenset[str]:
    """File extensions (lower case, no dot) of the mesh formats trimesh can load here."""
    return frozenset(trimesh.available_formats()) - _ARCHIVE_FORMATS


def discover_sources(src, *, test_fraction: float = 0.2, seed: int = 0):
    """Find every mesh of a source (see the module docstring for the accepted layouts).

    Args:
        src: ``"builtin:NAME"``, a folder, or a ``.csv`` manifest path (str or Path).
        test_fraction: fraction of each class put in ``test`` where the source has no split,
            in ``[0, 1)``.
        seed: seeds that split (and the built-in generators).

    Returns:
        ``(classes, items)``: the class names (``list[str]``) and the :class:`MeshSource` list in
        deterministic (split, class, path) order.

    Raises:
        UsageError: unknown built-in name, nonexistent path, bad ``test_fraction``.
        Vol3dError: a folder without meshes, or a manifest with a bad row (names path and line).
    """
    if not 0.0 <= float(test_fraction) < 1.0:
        raise UsageError(f"test_fraction: must be in [0, 1), got {test_fraction}")
    if isinstance(src, str) and src.startswith("builtin:"):
        return _builtin_sources(src[len("builtin:"):], seed)
    path = Path(src)
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    if path.is_dir():
        return _folder_sources(path, test_fraction, seed)
    if path.suffix.lower() == ".csv":
        return _manifest_sources(path, test_fraction, seed)
    raise UsageError(f"{path}: not a folder, a .csv manifest or builtin:NAME")


def _builtin_sources(name: str, seed: int):
    """Classes and items of ``builtin:name``."""
    from . import builtin  # lazy: builtin imports MeshSource from this module

    items = builtin.builtin_meshes(name, seed=seed)
    return builtin.builtin_classes(name), items


def _visible_children(folder: Path):
    """The sorted entries of ``folder``, without hidden ones (``.DS_Store``, ``__MACOSX``)."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith((".", "__")))


def _mesh_files(folder: Path) -> list[Path]:
    """Mesh files anywhere under ``folder`` (recursively, hidden entries skipped), sorted."""
    exts = mesh_extensions()
    found = []
    for entry in _visible_children(folder):
        if entry.is_dir():
            found.extend(_mesh_files(entry))
        elif entry.suffix.lower().lstrip(".") in exts:
            found.append(entry)
    return found


def _is_modelnet(class_dirs) -> bool:
    """A ModelNet-style layout: some class folder holds a ``train/`` or ``test/`` folder."""
    return any((d / s).is_dir() for d in class_dirs for s in ("train", "test"))


def _folder_sources(root: Path, test_fraction: float, seed: int):
    """Classes and items of a ModelNet-style or generic class folder."""
    class_dirs = [d for d in _visible_children(root) if d.is_dir()]
    records = []  # (path, label, split or None)
    if _is_modelnet(class_dirs):
        for d in class_dirs:
            splits = [s for s in _visible_children(d) if s.is_dir() and s.name in SPLIT_FOLDERS]
            if not splits:
                raise Vol3dError(f"{d}: ModelNet-style folder without train/ or test/ subfolder")
            records += [(p, d.name, s.name) for s in splits for p in _mesh_files(s)]
    else:
        records = [(p, d.name, None) for d in class_dirs for p in _mesh_files(d)]
    if not records:
        raise Vol3dError(
            f"{root}: no mesh files found (expected <class>/<file> or <class>/train|test/<file> "
            f"with an extension among {', '.join(sorted(mesh_extensions()))})"
        )
    return _finish(records, test_fraction, seed)


def _manifest_sources(csv_path: Path, test_fraction: float, seed: int):
    """Classes and items of a CSV manifest ``path,label[,split]``."""
    records = []
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            row = [cell.strip() for cell in row]
            if not any(row) or (line_no == 1 and _is_header(row)):
                continue
            records.append(_manifest_record(csv_path, line_no, row))
    if not records:
        raise Vol3dError(f"{csv_path}: manifest has no rows (expected path,label[,split])")
    return _finish(records, test_fraction, seed)


def _is_header(row) -> bool:
    """Whether a CSV row is the optional header ``path,label[,split]``."""
    return [c.lower() for c in row[:2]] == ["path", "label"]


def _manifest_record(csv_path: Path, line_no: int, row):
    """``(path, label, split or None)`` of one manifest row; paths are relative to the CSV."""
    where = f"{csv_path}, line {line_no}"
    if len(row) not in (2, 3) or not row[0] or not row[1]:
        raise Vol3dError(f"{where}: expected 'path,label[,split]', got {','.join(row)!r}")
    split = row[2] if len(row) == 3 and row[2] else None
    if split is not None and not _SPLIT_NAME.match(split):
        raise Vol3dError(f"{where}: bad split name {split!r} (letters, digits, '_' and '-' only)")
    return csv_path.parent / row[0], row[1], split


def _finish(records, test_fraction: float, seed: int):
    """Assign missing splits, then build the sorted classes and items."""
    classes = sorted({label for _, label, _ in records})
    records = assign_splits(records, test_fraction, seed)
    class_index = {c: i for i, c in enumerate(classes)}
    items = [MeshSource(str(p), label, split) for p, label, split in records]
    items.sort(key=lambda it: (_split_rank(it.split), class_index[it.label], it.source))
    return classes, items


def _split_rank(split: str):
    """Sort key of a split name: ``train``, ``test``, then the others alphabetically."""
    return ({"train": 0, "test": 1}.get(split, 2), split)


def assign_splits(records, test_fraction: float, seed: int):
    """Give records without a split one: per class, a seeded ``round(f * n)`` go to ``test``.

    The draw for a class depends only on the seed, the class name and the sorted paths of its
    unsplit records, so it does not change with file-system order or with other classes.
    """
    unsplit = defaultdict(list)
    for p, label, split in records:
        if split is None:
            unsplit[label].append(p)
    chosen = {}
    for label, paths in unsplit.items():
        paths = sorted(paths, key=str)
        rng = np.random.default_rng([seed, zlib.crc32(label.encode("utf-8"))])
        n_test = int(round(test_fraction * len(paths)))
        test_idx = set(rng.permutation(len(paths))[:n_test].tolist())
        chosen.update({(label, p): "test" if i in test_idx else "train" for i, p in enumerate(paths)})
    return [(p, label, split or chosen[label, p]) for p, label, split in records]
