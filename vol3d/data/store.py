"""The vol3d dataset format: one HDF5 file (h5py) holding every split of a volume dataset.

Layout
------
Root attributes (all required unless marked optional):

=================  ==========================================================================
``format``         the string ``"vol3d"``
``format_version`` integer format version (this is version 1)
``classes``        JSON list of class names; label ``c`` means ``classes[c]``
``resolution``     grid size ``R`` (every volume is ``R x R x R``)
``representation`` ``solid`` / ``surface`` (voxelized meshes) or ``occupancy`` (imported binary
                   volumes): uint8 ``{0, 1}``; ``fraction``: float16 fraction of the voxel inside, in
                   ``[0, 1]``; ``sdf``: float16 truncated signed distance in
                   voxel units, negative inside; ``intensity``: float16 greyscale in ``[0, 1]``
                   (imported); ``imported``: float16 values imported as they were
``normalization``  how meshes were placed in the grid: ``sphere`` / ``cube`` / ``imported``
``vol3d_version``  (optional) version of vol3d that wrote the file
``command``        (optional) the command line that created the file
``created``        (optional) ISO-8601 creation time (UTC)
=================  ==========================================================================

One group per split (``/train``, ``/test``, ``/val``, ...; every root group except ``/errors``),
each with ``N`` samples in four datasets of equal length:

=============  ===============  ===========================================================
``volumes``    ``(N, R, R, R)``  uint8 (occupancy 0/1) or float16; chunked one sample per chunk
                                 ``(1, R, R, R)``, compressed (gzip), resizable
``labels``     ``(N,)``          int64 class index into ``classes``
``sources``    ``(N,)``          utf-8 string: the mesh path / built-in name / import key the
                                 sample came from
``rotations``  ``(N, 3, 3)``     float32 rotation applied to the source before voxelizing
                                 (identity when none); acts on column vectors ``p -> R @ p``
=============  ===============  ===========================================================

Volume axes follow vol3d's convention: ``v[i, j, k]`` has axis 0 = x, 1 = y, 2 = z, and voxel
``(i, j, k)`` has its centre at index coordinates ``(i, j, k)`` (grid centre ``((R-1)/2,)*3``).

``/errors`` (optional) lists inputs that were skipped, as two equal-length utf-8 string datasets
``errors/sources`` and ``errors/reasons``.

Writing
-------
:class:`DatasetWriter` writes into a hidden sibling ``.<name>.partial.h5`` and ``os.replace``-s it
onto the target only when closed without an exception, so the target is never a half-written file.
While writing, the root attribute ``_resume`` (JSON: ``key``, ``num_done``, per-split committed
``counts``) records what is committed; it is removed on close. A writer created with the same
``resume_key`` reopens a left-over partial, truncates every dataset to its committed count (so
samples appended after the last :meth:`DatasetWriter.mark_done` are dropped, never duplicated)
and reports :attr:`DatasetWriter.num_done`, the number of input items already processed.

Reading
-------
:func:`open_dataset` validates a file and returns a :class:`VolumeFile`; any missing or malformed
attribute or dataset raises :class:`~vol3d.errors.FormatError` with a one-line message naming the
file and the item.
"""

from __future__ import annotations

import json
import os
import zlib
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from .. import __version__
from ..errors import FormatError, Vol3dError

FORMAT_NAME = "vol3d"
FORMAT_VERSION = 1
VOLUME_DTYPES = ("uint8", "float16")
SPLIT_DATASETS = ("volumes", "labels", "sources", "rotations")
REQUIRED_ATTRS = ("format", "format_version", "classes", "resolution", "representation", "normalization")
ERRORS_GROUP = "errors"
# gzip level 1: sparse occupancy grids compress ~20-50x, and level 1 decompresses as fast as
# higher levels while writing much faster (see benchmarks/bench_loader.py).
COMPRESSION = {"compression": "gzip", "compression_opts": 1, "shuffle": False}
_STR = h5py.string_dtype("utf-8")
_RESUME_ATTR = "_resume"


def partial_path(path) -> Path:
    """The hidden temporary sibling ``<folder>/.<name>.partial.h5`` a writer of ``path`` uses."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial.h5")


# --------------------------------------------------------------------------------------- reading


def occupancy(volumes: np.ndarray, representation: str) -> np.ndarray:
    """Boolean "occupied" mask of volumes of any shape: ``v < 0`` (inside) for ``sdf``, else ``v != 0``."""
    volumes = np.asarray(volumes)
    return volumes < 0 if representation == "sdf" else volumes != 0


class VolumeFile:
    """A validated, open vol3d dataset file (create with :func:`open_dataset`).

    Attributes:
        path: the file's path.
        classes: list of class names.
        resolution: grid size ``R``.
        representation, normalization: strings from the root attributes.
        splits: dict split name -> number of samples, in file order.
        attrs: all root attributes as plain Python values (``classes`` decoded).
    """

    def __init__(self, path, h5: h5py.File):
        self.path = Path(path)
        self.h5 = h5
        self.attrs = _plain_attrs(h5.attrs)
        self.classes = _parse_classes(self.attrs["classes"], path)
        self.attrs["classes"] = self.classes
        self.resolution = int(self.attrs["resolution"])
        self.representation = str(self.attrs["representation"])
        self.normalization = str(self.attrs["normalization"])
        self.splits = {name: len(h5[name]["labels"]) for name in _split_names(h5)}

    def _group(self, split: str) -> h5py.Group:
        if split not in self.splits:
            raise FormatError(f"{self.path}: no split '{split}' (has: {', '.join(self.splits) or 'none'})")
        return self.h5[split]

    def volumes(self, split: str) -> h5py.Dataset:
        """The ``(N, R, R, R)`` uint8/float16 h5py dataset of ``split`` (read lazily)."""
        return self._group(split)["volumes"]

    def labels(self, split: str) -> np.ndarray:
        """``(N,)`` int64 labels of ``split``."""
        return self._group(split)["labels"][...].astype(np.int64)

    def sources(self, split: str) -> list[str]:
        """``N`` source strings of ``split``."""
        return list(self._group(split)["sources"].asstr()[...])

    def rotations(self, split: str) -> np.ndarray:
        """``(N, 3, 3)`` float32 rotations of ``split``."""
        return self._group(split)["rotations"][...].astype(np.float32)

    @property
    def errors(self) -> list[tuple[str, str]]:
        """Skipped inputs as ``(source, reason)`` pairs (empty when there is no ``/errors``)."""
        if ERRORS_GROUP not in self.h5:
            return []
        group = self.h5[ERRORS_GROUP]
        return list(zip(group["sources"].asstr()[...], group["reasons"].asstr()[...]))

    def close(self) -> None:
        self.h5.close()

    def __enter__(self) -> "VolumeFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"VolumeFile('{self.path}', resolution={self.resolution}, classes={len(self.classes)}, "
                f"splits={self.splits})")


def read_volumes(dataset: h5py.Dataset, indices) -> np.ndarray:
    """Read the samples ``dataset[indices]`` of an ``(N, R, R, R)`` dataset, fast.

    Samples are read in sorted index order (file locality); with one gzip or uncompressed chunk per
    sample the chunk is read raw and inflated with zlib, which skips h5py's per-call selection
    overhead (about 2x faster than ``dataset[i]``). Any other layout falls back to ``dataset[i]``.

    Args:
        dataset: an h5py dataset of shape ``(N, R, R, R)`` (or an in-memory numpy array).
        indices: ``(n,)`` integer indices in ``[0, N)``, any order, repeats allowed.

    Returns:
        ``(n, R, R, R)`` array of the dataset's dtype, in the order of ``indices``.
    """
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if isinstance(dataset, np.ndarray):
        return dataset[indices]
    read = _sample_reader(dataset)
    out = np.empty((len(indices),) + dataset.shape[1:], dataset.dtype)
    for j in np.argsort(indices, kind="stable"):
        out[j] = read(int(indices[j]))
    return out


def _sample_reader(dataset: h5py.Dataset):
    """A function ``i -> (R, R, R)`` sample, reading raw chunks when the layout allows it."""
    direct = (dataset.chunks == (1,) + dataset.shape[1:] and dataset.compression in (None, "gzip")
              and not dataset.shuffle and not dataset.fletcher32 and dataset.scaleoffset is None)
    if not direct:
        return dataset.__getitem__
    inflate = zlib.decompress if dataset.compression == "gzip" else bytes
    shape, dtype, zeros = dataset.shape[1:], dataset.dtype, (0,) * (dataset.ndim - 1)

    def read(i: int) -> np.ndarray:
        if not 0 <= i < dataset.shape[0]:
            raise IndexError(f"index {i} out of range for {dataset.shape[0]} samples")
        try:
            mask, raw = dataset.id.read_direct_chunk((i,) + zeros)
        except (KeyError, OSError, ValueError):  # chunk never written (all fill value)
            return dataset[i]
        if mask:  # a filter was skipped for this chunk: let HDF5 decode it
            return dataset[i]
        return np.frombuffer(inflate(raw), dtype).reshape(shape)

    return read


def open_dataset(path) -> VolumeFile:
    """Open and validate a vol3d dataset file for reading.

    Raises:
        FormatError: one line naming the file and the missing/malformed attribute or dataset, or
            saying the file is missing or not HDF5.
    """
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise FormatError(f"{path}: not an HDF5 file (expected a vol3d dataset)")
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise FormatError(f"{path}: cannot open as HDF5 ({exc})") from None
    try:
        validate(h5, path)
        return VolumeFile(path, h5)
    except BaseException:
        h5.close()
        raise


def validate(h5: h5py.File, path) -> None:
    """Check the root attributes and every split of an open file (see the module docstring).

    Raises:
        FormatError: naming the first missing or malformed attribute or dataset.
    """
    for name in REQUIRED_ATTRS:
        if name not in h5.attrs:
            raise FormatError(f"{path}: missing root attribute '{name}' (not a vol3d dataset?)")
    if _plain(h5.attrs["format"]) != FORMAT_NAME:
        raise FormatError(f"{path}: root attribute 'format' is {_plain(h5.attrs['format'])!r}, expected 'vol3d'")
    if int(h5.attrs["format_version"]) > FORMAT_VERSION:
        raise FormatError(f"{path}: format_version {int(h5.attrs['format_version'])} is newer than this "
                          f"vol3d supports ({FORMAT_VERSION}); upgrade vol3d")
    n_classes = len(_parse_classes(_plain(h5.attrs["classes"]), path))
    resolution = int(h5.attrs["resolution"])
    for split in _split_names(h5):
        _validate_split(h5[split], path, resolution, n_classes)
    if ERRORS_GROUP in h5:
        for name in ("sources", "reasons"):
            if name not in h5[ERRORS_GROUP]:
                raise FormatError(f"{path}: missing dataset '/{ERRORS_GROUP}/{name}'")


def _validate_split(group: h5py.Group, path, resolution: int, n_classes: int) -> None:
    """Check one split group: its four datasets exist with consistent shapes, dtypes and labels."""
    for name in SPLIT_DATASETS:
        if name not in group or not isinstance(group[name], h5py.Dataset):
            raise FormatError(f"{path}: missing dataset '{group.name}/{name}'")
    n = group["labels"].shape[0] if group["labels"].ndim == 1 else -1
    expected = {"volumes": (n,) + (resolution,) * 3, "labels": (n,), "sources": (n,), "rotations": (n, 3, 3)}
    for name, shape in expected.items():
        if group[name].shape != shape:
            raise FormatError(f"{path}: dataset '{group.name}/{name}' has shape {group[name].shape}, "
                              f"expected {shape}")
    if group["volumes"].dtype.name not in VOLUME_DTYPES:
        raise FormatError(f"{path}: dataset '{group.name}/volumes' has dtype {group['volumes'].dtype}, "
                          f"expected one of {VOLUME_DTYPES}")
    labels = group["labels"][...]
    if labels.dtype.kind not in "iu" or (n and (labels.min() < 0 or labels.max() >= n_classes)):
        raise FormatError(f"{path}: dataset '{group.name}/labels' must hold integers in [0, {n_classes})")


def _split_names(h5: h5py.File) -> list[str]:
    return [name for name, obj in h5.items() if isinstance(obj, h5py.Group) and name != ERRORS_GROUP]


def _parse_classes(value, path) -> list[str]:
    try:
        classes = json.loads(value) if isinstance(value, str) else None
    except json.JSONDecodeError:
        classes = None
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise FormatError(f"{path}: root attribute 'classes' must be a JSON list of strings")
    return classes


def _plain(value):
    """An h5py attribute value as a plain Python value (bytes -> str, numpy scalar -> Python)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _plain_attrs(attrs) -> dict:
    return {key: _plain(attrs[key]) for key in attrs if key != _RESUME_ATTR}


# --------------------------------------------------------------------------------------- writing


class DatasetWriter:
    """Write a vol3d dataset atomically, with resume after an interruption.

    Usage::

        with DatasetWriter("out.h5", classes=["a", "b"], resolution=32, representation="solid",
                           normalization="sphere", command="vol3d voxelize ...",
                           resume_key="hash-of-the-inputs-and-options") as w:
            for done, item in enumerate(items[w.num_done:], start=w.num_done + 1):
                w.append("train", vols, labels, sources, rotations)   # vols: (n, R, R, R)
                w.mark_done(done)                # commit: the first `done` items are processed

    Data goes to :func:`partial_path` ``(path)``; leaving the ``with`` block normally commits and
    renames it onto ``path``; an exception leaves the partial (with its last committed state) for a
    later writer with the same ``resume_key``. Appends made after the last :meth:`mark_done` are
    discarded on resume, so items are never duplicated.

    Args:
        path: the output ``.h5`` file; its folder must exist.
        classes: class names (labels index this list).
        resolution: grid size ``R``.
        representation, normalization: strings stored as root attributes.
        command: the creating command line (root attribute ``command``).
        dtype: ``"uint8"`` (occupancy) or ``"float16"`` (sdf, intensity).
        resume_key: any string identifying the inputs and options; ``None`` never resumes.
    """

    def __init__(self, path, *, classes, resolution: int, representation: str, normalization: str,
                 command: str = "", dtype: str = "uint8", resume_key: str | None = None):
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise Vol3dError(f"{self.path}: output folder {self.path.parent} does not exist")
        if np.dtype(dtype).name not in VOLUME_DTYPES:
            raise Vol3dError(f"{self.path}: volume dtype must be one of {VOLUME_DTYPES}, got {dtype}")
        self.partial = partial_path(self.path)
        self.classes = [str(c) for c in classes]
        self.resolution = int(resolution)
        self.dtype = np.dtype(dtype)
        self._header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                        "classes": json.dumps(self.classes), "resolution": self.resolution,
                        "representation": str(representation), "normalization": str(normalization),
                        "vol3d_version": __version__, "command": str(command or "")}
        self._state = {"key": resume_key, "num_done": 0, "counts": {}, "dtype": self.dtype.name}
        self.resumed = self._reopen(resume_key)
        if not self.resumed:
            self._create()

    # ----------------------------------------------------------------- state
    @property
    def num_done(self) -> int:
        """Number of input items committed by :meth:`mark_done` (including a resumed run's)."""
        return self._state["num_done"]

    @property
    def counts(self) -> dict[str, int]:
        """Committed samples per split (``"errors"`` counts skipped inputs)."""
        return dict(self._state["counts"])

    def _reopen(self, resume_key) -> bool:
        """Reopen a partial left by a writer with the same key and header; truncate to its commit."""
        if resume_key is None or not self.partial.is_file():
            return False
        try:
            h5 = h5py.File(self.partial, "r+")
        except OSError:  # killed mid-write: the partial is unusable, start over
            return False
        try:
            state = json.loads(_plain(h5.attrs.get(_RESUME_ATTR, "{}")))
            same = (state.get("key") == resume_key and state.get("dtype") == self.dtype.name
                    and all(_plain(h5.attrs.get(k)) == v for k, v in self._header.items() if k != "command"))
            if same:
                self._truncate(h5, state["counts"])
        except (OSError, KeyError, ValueError, RuntimeError):  # damaged metadata: start over
            same = False
        if not same:
            h5.close()
            return False
        self._h5, self._state = h5, state
        self._ensure_errors()
        return True

    @staticmethod
    def _truncate(h5: h5py.File, counts: dict) -> None:
        """Cut every group back to its committed row count; drop groups created after the commit."""
        for name in list(h5):
            if name in counts:
                for dataset in h5[name].values():
                    dataset.resize(counts[name], axis=0)
            else:
                del h5[name]

    def _create(self) -> None:
        self._h5 = h5py.File(self.partial, "w", track_order=True)  # splits listed in writing order
        self._h5.attrs.update(self._header)
        self._ensure_errors()
        self._commit()

    def _commit(self) -> None:
        self._h5.attrs[_RESUME_ATTR] = json.dumps(self._state)
        self._h5.flush()

    # ----------------------------------------------------------------- appending
    def append(self, split: str, volumes, labels, sources, rotations=None) -> None:
        """Append ``n`` samples to ``split`` (uncommitted until :meth:`mark_done` or close).

        Args:
            volumes: ``(n, R, R, R)`` array (cast to the writer's dtype; bool allowed).
            labels: ``(n,)`` integer class indices.
            sources: ``n`` strings.
            rotations: ``(n, 3, 3)`` or ``None`` (identity).
        """
        volumes = np.asarray(volumes).astype(self.dtype, copy=False)
        n = len(volumes)
        rotations = np.broadcast_to(np.eye(3, dtype=np.float32), (n, 3, 3)) if rotations is None else rotations
        arrays = {"volumes": volumes, "labels": np.asarray(labels), "sources": np.asarray(sources, dtype=object),
                  "rotations": np.asarray(rotations, dtype=np.float32)}
        self._check_batch(split, arrays)
        group = self._h5[split] if split in self._h5 else self._new_split(split)
        for name, array in arrays.items():
            _append_rows(group[name], array)

    def add_error(self, source, reason: str) -> None:
        """Record a skipped input (uncommitted until :meth:`mark_done` or close)."""
        group = self._h5[ERRORS_GROUP]
        _append_rows(group["sources"], np.asarray([str(source)], dtype=object))
        _append_rows(group["reasons"], np.asarray([str(reason)], dtype=object))

    def mark_done(self, num_done: int) -> None:
        """Commit everything appended so far and record that the first ``num_done`` input items
        (in the caller's fixed order) are processed; ``num_done`` never decreases."""
        if num_done < self.num_done:
            raise Vol3dError(f"{self.path}: mark_done({num_done}) after {self.num_done} items were done")
        self._state["num_done"] = int(num_done)
        self._state["counts"] = {name: len(group["sources"]) for name, group in self._h5.items()}
        self._commit()

    def _check_batch(self, split: str, arrays: dict) -> None:
        if not split or "/" in split or split == ERRORS_GROUP:
            raise Vol3dError(f"{self.path}: invalid split name {split!r}")
        n, r = len(arrays["volumes"]), self.resolution
        expected = {"volumes": (n, r, r, r), "labels": (n,), "sources": (n,), "rotations": (n, 3, 3)}
        for name, shape in expected.items():
            if arrays[name].shape != shape:
                raise Vol3dError(f"{self.path}: {name} for split '{split}' has shape {arrays[name].shape}, "
                                 f"expected {shape}")
        labels = arrays["labels"]
        if n and (labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= len(self.classes)):
            raise Vol3dError(f"{self.path}: labels for split '{split}' must be integers in [0, {len(self.classes)})")

    def _new_split(self, split: str) -> h5py.Group:
        r = self.resolution
        group = self._h5.create_group(split)
        group.create_dataset("volumes", (0, r, r, r), self.dtype, maxshape=(None, r, r, r),
                             chunks=(1, r, r, r), **COMPRESSION)
        group.create_dataset("labels", (0,), np.int64, maxshape=(None,), chunks=(4096,))
        group.create_dataset("sources", (0,), _STR, maxshape=(None,), chunks=(1024,))
        group.create_dataset("rotations", (0, 3, 3), np.float32, maxshape=(None, 3, 3), chunks=(1024, 3, 3))
        return group

    # ----------------------------------------------------------------- finishing
    def close(self) -> Path:
        """Commit, finalize the attributes and atomically move the partial onto ``path``."""
        if self._h5 is None:
            return self.path
        self._h5.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        del self._h5.attrs[_RESUME_ATTR]
        self._h5.close()
        self._h5 = None
        os.replace(self.partial, self.path)
        return self.path

    def abort(self) -> None:
        """Close without finishing: the partial keeps its last committed state for a resume."""
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def _ensure_errors(self) -> None:
        group = self._h5.require_group(ERRORS_GROUP)
        for name in ("sources", "reasons"):
            if name not in group:
                group.create_dataset(name, (0,), _STR, maxshape=(None,), chunks=(1024,))

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _append_rows(dataset: h5py.Dataset, rows: np.ndarray) -> None:
    start = dataset.shape[0]
    dataset.resize(start + len(rows), axis=0)
    if len(rows):
        dataset[start:] = rows


def write_dataset(path, splits: dict, *, classes, representation: str, normalization: str,
                  command: str = "", errors=()) -> Path:
    """Write a whole dataset in one go (atomically) from in-memory arrays.

    Args:
        path: output ``.h5`` file.
        splits: ``{split: {"volumes": (N,R,R,R), "labels": (N,), "sources": N strings,
            "rotations": (N,3,3) (optional)}}``; volumes uint8/bool are stored as uint8, any
            float dtype as float16.
        classes, representation, normalization, command: root attributes.
        errors: iterable of ``(source, reason)`` pairs.

    Returns:
        ``path`` as a Path.
    """
    if not splits:
        raise Vol3dError(f"{path}: nothing to write (no splits)")
    first = next(iter(splits.values()))["volumes"]
    dtype = "float16" if np.asarray(first).dtype.kind == "f" else "uint8"
    with DatasetWriter(path, classes=classes, resolution=np.shape(first)[-1], representation=representation,
                       normalization=normalization, command=command, dtype=dtype) as writer:
        for split, data in splits.items():
            writer.append(split, data["volumes"], data["labels"], data["sources"], data.get("rotations"))
        for source, reason in errors:
            writer.add_error(source, reason)
    return Path(path)
