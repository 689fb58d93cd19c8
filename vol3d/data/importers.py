"""Import existing voxel volumes into the vol3d dataset format (``vol3d import SRC OUT.h5``).

Sources (``src``):

``.npz`` archives, in one of three layouts (found by key names):
    * MedMNIST: ``{split}_images`` with ``{split}_labels`` (labels ``(N,)`` or ``(N, 1)``);
    * ``X_{split}`` with ``y_{split}`` (e.g. ``X_train, y_train, X_test, y_test``);
    * ``volumes`` with ``labels`` and optional ``classes`` (one split, ``train``); ``key=`` names
      another volumes array, still labelled by ``labels``.
HDF5 files
    ``file.h5:/group/volumes`` (or ``key="/group/volumes"``): the volumes dataset, labels from the
    sibling ``labels`` dataset, class names from a sibling ``classes`` dataset or a ``classes``
    attribute when present; one split, ``train``. A vol3d dataset without a key is re-imported
    with all its splits (e.g. to resample or pad it).
Folders of ``.binvox`` or ``.npy`` files (one ``(R, R, R)`` volume per file)
    The class is the file's parent folder name; a ``train``/``test``/``val`` folder level anywhere
    on the path gives the split (``<class>/train/x.binvox`` or ``train/<class>/x.binvox``), else
    ``train``. ``.binvox`` is read with trimesh (axes x, y, z).

Volumes must be cubic, ``(N, R, R, R)`` or ``(N, 1, R, R, R)``. Values: bool / ``{0, 1}`` /
``{0, 255}`` volumes are stored as uint8 occupancy ``{0, 1}`` (representation ``occupancy``);
other integer volumes become float16 greyscale in ``[0, 1]`` (divided by 255 for uint8, else by
the maximum; representation ``intensity``); float volumes are stored as float16 as they are
(``intensity`` when within ``[0, 1]``, else ``imported``). Normalization is ``imported``.

Labels may be integers or strings. Class names come from the source when it has them, from the
folder names, or are ``"0", "1", ...``; ``classes=`` overrides them.

Options: ``resolution`` resamples (:func:`~vol3d.data.resample.resample_volumes`, ``resample=``
``"area"`` or ``"trilinear"``), ``pad_for_rotation`` then pads every split to one rotation-safe
size (:func:`~vol3d.data.resample.pad_for_rotation`) or to a given size, and ``test_fraction > 0`` carves a seeded,
per-class test split out of a source that has only ``train``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from ..errors import FormatError, UsageError
from . import resample as rs
from .sources import assign_splits
from .store import FORMAT_NAME, DatasetWriter, open_dataset

FOLDER_EXTENSIONS = (".binvox", ".npy")
SPLIT_FOLDERS = ("train", "test", "val", "valid", "validation")
_WRITE_BLOCK = 256  # samples per append (progress granularity)


@dataclass
class Split:
    """One split read from a source: ``volumes (N, R, R, R)``, ``labels (N,)`` (ints or strings),
    ``sources`` (N strings)."""

    volumes: np.ndarray
    labels: np.ndarray
    sources: list


@dataclass
class Source:
    """Everything read from a source: splits by name and class names (``None``: derive them)."""

    splits: dict = field(default_factory=dict)
    classes: list | None = None
    resolutions: list = field(default_factory=list)  # as read, before any resampling


# --------------------------------------------------------------------------------------- public


def import_volumes(src, out, *, key=None, resolution=None, resample="area", pad_for_rotation=False,
                   test_fraction=0.0, seed=0, classes=None, command=None, show_progress=True) -> dict:
    """Import the volumes of ``src`` (see the module docstring) into the vol3d file ``out``.

    Args:
        src: an ``.npz``, an HDF5 file (``"file.h5:/path/to/volumes"`` allowed), a folder of
            ``.binvox``/``.npy`` files, or a single such file.
        out: the ``.h5`` file to write (atomically).
        key: the volumes array/dataset to read (npz: array name; HDF5: dataset path).
        resolution: resample to this grid size (``None``: keep; required for folders whose files
            differ in size).
        resample: ``"area"`` or ``"trilinear"``.
        pad_for_rotation: ``True``: pad to a grid where any rotation keeps every occupied voxel;
            an integer ``N``: pad to ``N^3`` (cheaper; rotations cut what lies beyond radius ``N/2``).
        test_fraction, seed: seeded stratified test split for single-split sources.
        classes: class names overriding the source's (one per label value).
        command: stored as the ``command`` attribute.
        show_progress: tqdm progress bars on reading folders and on writing.

    Returns:
        summary dict: ``out``, ``source``, ``classes``, ``resolution``, ``original_resolutions``,
        ``representation``, ``dtype``, ``splits`` (split -> count), ``padded``.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise UsageError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    if resample not in rs.METHODS:
        raise UsageError(f"--resample must be one of {rs.METHODS}, got {resample!r}")
    source = read_source(src, key=key, resolution=resolution, resample=resample, show_progress=show_progress)
    names, splits = _label_splits(source, classes, src)
    splits = _split_test(splits, test_fraction, seed, src)
    original = source.resolutions or [next(iter(splits.values())).volumes.shape[1]]
    splits, representation = _to_storage(splits)
    if resolution is not None:
        splits = {s: _replace(sp, rs.resample_volumes(sp.volumes, resolution, resample)) for s, sp in splits.items()}
    if pad_for_rotation is True:
        size = max(rs.rotation_safe_size(sp.volumes) for sp in splits.values())
    elif pad_for_rotation:
        size, grid = int(pad_for_rotation), next(iter(splits.values())).volumes.shape[1]
        if size < grid or (size - grid) % 2:
            raise UsageError(f"{src}: pad_for_rotation={size}: cannot pad the {grid}^3 grid symmetrically "
                             f"(need a size >= {grid} that differs from it by an even number)")
    if pad_for_rotation:
        splits = {s: _replace(sp, rs.pad_volumes(sp.volumes, size)) for s, sp in splits.items()}
    final = next(iter(splits.values())).volumes
    _write(out, splits, names, representation, command or f"vol3d.import_volumes({str(src)!r})", show_progress)
    return {"out": str(out), "source": str(src), "classes": names, "resolution": final.shape[1],
            "original_resolutions": original, "representation": representation, "dtype": final.dtype.name,
            "splits": {s: len(sp.labels) for s, sp in splits.items()}, "padded": bool(pad_for_rotation)}


def read_source(src, *, key=None, resolution=None, resample="area", show_progress=False) -> Source:
    """Read the splits of ``src`` without converting values (see the module docstring).

    ``resolution``/``resample`` are used only for folders, where each file is resampled on reading
    so files of different sizes can be stacked.
    """
    path, key = _split_key(src, key)
    if path.is_dir() or path.suffix.lower() in FOLDER_EXTENSIONS:
        return _read_folder(path, resolution, resample, show_progress)
    if path.suffix.lower() == ".npz":
        return _read_npz(path, key)
    if h5py.is_hdf5(path):
        return _read_hdf5(path, key)
    raise FormatError(f"{path}: unsupported source (expected .npz, HDF5, or a folder of .binvox/.npy files)")


# --------------------------------------------------------------------------------------- readers


def _split_key(src, key):
    """``"file.h5:/a/b"`` -> (Path("file.h5"), "/a/b"); checks that the path exists."""
    text = str(src)
    path = Path(text)
    if not path.exists() and ":" in text:
        head, tail = text.rsplit(":", 1)
        if Path(head).is_file():
            path, key = Path(head), key or tail
    if not path.exists():
        raise UsageError(f"{src}: no such file or folder")
    return path, key


def _read_npz(path: Path, key) -> Source:
    try:
        data = np.load(path, allow_pickle=False)
        files = set(data.files)
    except (OSError, ValueError) as exc:
        raise FormatError(f"{path}: cannot read as .npz ({exc})") from None
    if key is not None:
        pairs = {"train": (key, "labels")}
    else:
        pairs = (_pairs(files, r"(.+)_images", "{}_labels") or _pairs(files, r"X_(.+)", "y_{}")
                 or ({"train": ("volumes", "labels")} if "volumes" in files else {}))
    if not pairs:
        raise FormatError(f"{path}: no volumes found (expected keys 'volumes'/'labels', "
                          f"'{{split}}_images'/'{{split}}_labels' or 'X_{{split}}'/'y_{{split}}'; has {sorted(files)})")
    splits = {}
    for split, (vkey, lkey) in pairs.items():
        for k in (vkey, lkey):
            if k not in files:
                raise FormatError(f"{path}: missing array '{k}'")
        splits[split] = _make_split(path, vkey, data[vkey], lkey, data[lkey])
    classes = [str(c) for c in data["classes"]] if "classes" in files else None
    return Source(splits, classes)


def _pairs(files, pattern: str, label_format: str) -> dict:
    """``{split: (volumes_key, labels_key)}`` for keys matching ``pattern`` with a labels partner."""
    found = {}
    for name in sorted(files):
        match = re.fullmatch(pattern, name)
        if match and label_format.format(match.group(1)) in files:
            found[match.group(1)] = (name, label_format.format(match.group(1)))
    return found


def _read_hdf5(path: Path, key) -> Source:
    with h5py.File(path, "r") as h5:
        if key is None and h5.attrs.get("format") in (FORMAT_NAME, FORMAT_NAME.encode()):
            return _read_vol3d(path)
        if key is None:
            raise UsageError(f"{path}: name the volumes dataset, e.g. '{path}:/group/volumes' or --key")
        if key not in h5 or not isinstance(h5[key], h5py.Dataset):
            raise FormatError(f"{path}: missing dataset '{key}'")
        group = h5[key].parent
        labels_key = f"{group.name.rstrip('/')}/labels"
        if "labels" not in group:
            raise FormatError(f"{path}: missing dataset '{labels_key}' (labels beside '{key}')")
        split = _make_split(path, key, h5[key][...], labels_key, group["labels"][...])
        classes = group["classes"].asstr()[...] if "classes" in group else group.attrs.get("classes")
        if isinstance(classes, (str, bytes)):  # a JSON list, as vol3d itself stores it
            classes = json.loads(classes)
        return Source({"train": split}, None if classes is None else [str(c) for c in np.atleast_1d(classes)])


def _read_vol3d(path: Path) -> Source:
    with open_dataset(path) as f:
        splits = {s: Split(f.volumes(s)[...], f.labels(s), f.sources(s)) for s in f.splits}
        return Source(splits, f.classes)


def _read_folder(path: Path, resolution, resample: str, show_progress: bool) -> Source:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix.lower() in FOLDER_EXTENSIONS)
    if not files:
        raise FormatError(f"{path}: no .binvox or .npy files found")
    root = path.parent if path.is_file() else path
    grouped, sizes = {}, set()
    for file in tqdm(files, desc="read", unit="file", disable=not show_progress):
        volume = _read_volume_file(file)
        sizes.add(volume.shape[0])
        if resolution is not None:
            volume = rs.resample_volumes(volume[None], resolution, resample)[0]
        split, label = _folder_labels(file, root)
        grouped.setdefault(split, []).append((volume, label, str(file)))
    return Source({s: _stack(rows, path) for s, rows in grouped.items()}, resolutions=sorted(sizes))


def _read_volume_file(file: Path) -> np.ndarray:
    """One ``(R, R, R)`` volume from a ``.binvox`` or ``.npy`` file."""
    try:
        if file.suffix.lower() == ".npy":
            volume = np.load(file, allow_pickle=False)
        else:
            from trimesh.exchange.binvox import load_binvox

            with open(file, "rb") as fh:
                volume = np.asarray(load_binvox(fh).matrix)
    except Exception as exc:  # any parser error: the file is unreadable, say which one
        raise FormatError(f"{file}: cannot read volume ({type(exc).__name__}: {exc})") from None
    volume = volume[0] if volume.ndim == 4 and volume.shape[0] == 1 else volume
    if volume.ndim != 3 or len(set(volume.shape)) != 1:
        raise FormatError(f"{file}: volume has shape {volume.shape}, expected cubic (R, R, R)")
    return volume


def _folder_labels(file: Path, root: Path) -> tuple[str, str]:
    """(split, class) of a file: a split folder level on its path, and its parent folder's name."""
    parts = file.relative_to(root).parts[:-1]
    split = next((p.lower() for p in parts if p.lower() in SPLIT_FOLDERS), "train")
    named = [p for p in parts if p.lower() not in SPLIT_FOLDERS]
    return split, named[-1] if named else root.name


def _stack(rows, path: Path) -> Split:
    sizes = {volume.shape[0] for volume, _, _ in rows}
    if len(sizes) > 1:
        raise UsageError(f"{path}: volumes have different resolutions {sorted(sizes)}; pass --resolution")
    volumes = np.stack([_as_comparable(v) for v, _, _ in rows])
    return Split(volumes, np.array([label for _, label, _ in rows]), [s for _, _, s in rows])


def _as_comparable(volume: np.ndarray) -> np.ndarray:
    """bool -> uint8 so files of one folder stack to one dtype."""
    return volume.astype(np.uint8) if volume.dtype == bool else volume


def _make_split(path: Path, vkey: str, volumes: np.ndarray, lkey: str, labels: np.ndarray) -> Split:
    """Validate shapes ``(N, R, R, R)`` / ``(N, 1, R, R, R)`` and ``(N,)`` / ``(N, 1)`` labels."""
    volumes = volumes[:, 0] if volumes.ndim == 5 and volumes.shape[1] == 1 else volumes
    if volumes.ndim != 4 or len(set(volumes.shape[1:])) != 1:
        raise FormatError(f"{path}: '{vkey}' has shape {volumes.shape}, expected (N, R, R, R) or (N, 1, R, R, R)")
    labels = labels.reshape(-1) if labels.ndim == 2 and labels.shape[1] == 1 else labels
    if labels.shape != (len(volumes),):
        raise FormatError(f"{path}: '{lkey}' has shape {labels.shape}, expected ({len(volumes)},) to match '{vkey}'")
    return Split(volumes, labels, [f"{path.name}:{vkey}[{i}]" for i in range(len(volumes))])


# --------------------------------------------------------------------------------------- conversion


def _replace(split: Split, volumes: np.ndarray) -> Split:
    """The split with its volumes replaced (same samples, e.g. converted or resampled)."""
    return Split(volumes, split.labels, split.sources)


def _subset(split: Split, mask: np.ndarray) -> Split:
    """The samples of ``split`` where the boolean ``(N,)`` ``mask`` is true."""
    return Split(split.volumes[mask], split.labels[mask], [s for s, keep in zip(split.sources, mask) if keep])


def _label_splits(source: Source, classes, src) -> tuple[list[str], dict]:
    """Turn labels into int64 indices into the class names; returns ``(classes, splits)``.

    Integer labels index the source's class names (or ``"0", "1", ...``); other labels (strings)
    are class names themselves, sorted alphabetically.
    """
    all_labels = np.concatenate([sp.labels for sp in source.splits.values()])
    if all_labels.dtype.kind in "iub" or (all_labels.dtype.kind == "f" and np.all(all_labels == np.rint(all_labels))):
        names = source.classes or [str(i) for i in range(int(all_labels.max()) + 1 if len(all_labels) else 0)]
        indices = {s: sp.labels.astype(np.int64) for s, sp in source.splits.items()}
    else:
        names = sorted({str(x) for x in all_labels})
        indices = {s: np.searchsorted(names, sp.labels.astype(str)).astype(np.int64) for s, sp in source.splits.items()}
    names = [str(c) for c in classes] if classes is not None else names
    for s, labels in indices.items():
        if len(labels) and (labels.min() < 0 or labels.max() >= len(names)):
            raise FormatError(f"{src}: labels of split '{s}' are outside [0, {len(names)}) ({len(names)} classes)")
    return names, {s: Split(sp.volumes, indices[s], sp.sources) for s, sp in source.splits.items()}


def _split_test(splits: dict, test_fraction: float, seed: int, src) -> dict:
    """Carve a seeded per-class ``test`` split out of ``train`` (the one split), if asked."""
    if test_fraction == 0:
        return splits
    if set(splits) != {"train"}:
        raise UsageError(f"{src}: already has splits {sorted(splits)}; --test-fraction needs a single-split source")
    train = splits["train"]
    records = assign_splits([(i, str(y), None) for i, y in enumerate(train.labels)], test_fraction, seed)
    test = np.array([split == "test" for _, _, split in sorted(records)])
    return {"train": _subset(train, ~test), "test": _subset(train, test)}


def _to_storage(splits: dict) -> tuple[dict, str]:
    """Convert volume values for storage; returns ``(splits, representation)`` (module docstring)."""
    volumes = [sp.volumes for sp in splits.values()]
    if all(_binary_scale(v) for v in volumes):
        return ({s: _replace(sp, (sp.volumes >= _binary_scale(sp.volumes) / 2).astype(np.uint8))
                 for s, sp in splits.items()}, "occupancy")
    if all(v.dtype.kind in "iub" for v in volumes):
        top = 255 if all(v.dtype == np.uint8 for v in volumes) else max(max(int(v.max()), 1) for v in volumes if v.size)
        return {s: _replace(sp, (sp.volumes / top).astype(np.float16)) for s, sp in splits.items()}, "intensity"
    inside = all(v.size == 0 or (v.min() >= 0 and v.max() <= 1) for v in volumes)
    return ({s: _replace(sp, sp.volumes.astype(np.float16)) for s, sp in splits.items()},
            "intensity" if inside else "imported")


def _binary_scale(volumes: np.ndarray) -> int:
    """1 or 255 when the volumes hold only ``{0, 1}`` / ``{0, 255}`` (bool counts as 1), else 0."""
    if volumes.dtype == bool or rs.is_binary(volumes):
        return 1
    if volumes.dtype.kind in "iu" and np.isin(volumes, (0, 255)).all():
        return 255
    return 0


def _write(out, splits: dict, classes: list, representation: str, command: str, show_progress: bool) -> None:
    first = next(iter(splits.values())).volumes
    total = sum(len(sp.labels) for sp in splits.values())
    with DatasetWriter(out, classes=classes, resolution=first.shape[1], representation=representation,
                       normalization="imported", command=command, dtype=first.dtype.name) as writer, \
            tqdm(total=total, desc="write", unit="vol", disable=not show_progress) as bar:
        for split, sp in splits.items():
            for start in range(0, len(sp.labels), _WRITE_BLOCK):
                block = slice(start, start + _WRITE_BLOCK)
                writer.append(split, sp.volumes[block], sp.labels[block], sp.sources[block])
                bar.update(len(sp.labels[block]))
