"""The two inputs of an evaluation: a classifier (MODEL) and a labelled split of volumes (DATA).

MODEL is one of

* a vol3d checkpoint (``vol3d train``'s ``best.pt`` / ``last.pt``, read by :func:`vol3d.load_model`);
* an exported TorchScript file (``vol3d export``, read by :func:`vol3d.models.export.load_exported`);
* ``pretrained:NAME``, a shipped model (:func:`vol3d.pretrained.load_pretrained`).

DATA is anything ``vol3d train`` accepts (a vol3d HDF5 file, an ``.npz`` that ``vol3d import``
reads, ``builtin:NAME``), resolved by :func:`vol3d.training.data.dataset_file` (the same cache).

The data's labels are mapped to the model's outputs by class *name* when both sides carry names,
else by index. The volumes are brought to the model's training resolution (the models are
resolution-agnostic, but the voxel size of the training data is what they learned); every such
step is recorded in :attr:`EvalData.notes`.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import FormatError, UsageError, Vol3dError


@dataclass
class Classifier:
    """A model ready to evaluate: ``module`` maps ``(B, 1, X, Y, Z)`` to logits ``(B, len(classes))``.

    Attributes:
        module: the model (eval mode).
        kind: ``checkpoint`` | ``torchscript`` | ``pretrained``.
        classes: class names (index = output), or None when the model carries none.
        group: symmetry group name (``so3``, ``cnn``, ...) or ``"unknown"``.
        num_params: trainable parameters (for exported models: of the dense plain convolutions).
        resolution: grid size of the training data when known, else None.
        num_outputs: logits per sample.
        representation: the training data's representation (``solid``, ``surface``, ``sdf``) when
            known: ``builtin:`` data is built in it, and other data is checked against it.
        pad_for_rotation: the training data was an ``.npz`` imported with ``pad_for_rotation``:
            ``.npz`` data is imported the same way (padded, not stretched, to the training grid).
        import_resolution: the ``data.resolution`` an ``.npz`` was resampled to in training before
            any padding (``.npz`` data is imported the same way), else None.
        holdout: ``{"fraction", "seed"}`` of the validation hold-out training made of the data's
            train split when it had no ``val`` split (``data.val_split: auto | holdout``), else None.
    """

    module: torch.nn.Module
    kind: str
    classes: list | None
    group: str
    num_params: int
    resolution: int | None
    num_outputs: int
    representation: str | None = None
    pad_for_rotation: bool | int = False
    holdout: dict | None = None
    import_resolution: int | None = None

    def info(self) -> dict:
        return {"kind": self.kind, "group": self.group, "params": self.num_params,
                "classes": self.classes, "training_resolution": self.resolution,
                "training_representation": self.representation}


def load_classifier(spec: str) -> Classifier:
    """The classifier named by ``spec`` (see the module docstring), on the CPU, in eval mode."""
    spec = str(spec)
    if spec.startswith("pretrained:"):
        return _pretrained(spec[len("pretrained:"):])
    path = Path(spec).expanduser()
    if not path.is_file():
        raise FormatError(f"{spec}: no such model file (expected a vol3d checkpoint, an exported "
                          "TorchScript file or pretrained:NAME)")
    if _is_torchscript(path):
        from ..models.export import load_exported

        return _wrap(load_exported(path), "torchscript")
    from ..checkpoint import load_checkpoint, load_model

    ckpt = load_checkpoint(path)  # FormatError: "not a vol3d checkpoint" for anything else
    return _trained(load_model(ckpt), "checkpoint", ckpt["config"])


def _trained(model, kind: str, config: dict) -> Classifier:
    """A classifier from a checkpoint's model and its training config: the evaluation data is
    prepared as the training data was (resolution, representation, padding), and ``split="val"``
    of a file without one is the validation hold-out the run made of its training split."""
    data = config.get("data") or {}
    builtin = str(data.get("path", "")).startswith("builtin:")  # data.representation applies to built-in data only
    # data.grid: the grid trained on (checkpoints before it kept that in data.resolution)
    resolution = data.get("grid") or data.get("resolution") or (32 if builtin else None)
    clf = _wrap(model, kind, resolution, data.get("representation") if builtin else None)
    clf.pad_for_rotation = data.get("pad_for_rotation", False)
    if "grid" in data and not builtin:
        clf.import_resolution = data.get("resolution")
    if data.get("val_split", "auto") in ("auto", "holdout") and float(data.get("val_fraction") or 0) > 0:
        clf.holdout = {"fraction": float(data["val_fraction"]), "seed": int(config.get("seed", 0))}
    return clf


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files with a ``constants.pkl`` record (``torch.save`` files have none)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())


def _pretrained(name: str) -> Classifier:
    try:
        from .. import pretrained
    except ImportError:
        raise Vol3dError(f"pretrained:{name}: this vol3d has no pretrained models (vol3d.pretrained is missing)") from None
    from ..checkpoint import load_checkpoint

    model = pretrained.load_pretrained(name)  # checks the file against its card
    return _trained(model, "pretrained", load_checkpoint(pretrained.checkpoint_path(name))["config"])


def _wrap(model, kind: str, resolution=None, representation=None) -> Classifier:
    from ..models import count_parameters

    classes = getattr(model, "classes", None)
    classes = [str(c) for c in classes] if classes else None
    in_channels = int(getattr(model, "in_channels", 1))
    if in_channels != 1:
        raise UsageError(f"the model takes {in_channels} input channels; vol3d datasets have one")
    with torch.no_grad():  # one tiny forward pass: the number of outputs of any model kind
        outputs = model.eval()(torch.zeros(1, 1, 8, 8, 8)).shape[-1]
    if classes is not None and len(classes) != outputs:
        raise FormatError(f"the model has {outputs} outputs but {len(classes)} class names")
    return Classifier(model, kind, classes, str(getattr(model, "group", "unknown")), count_parameters(model),
                      None if resolution is None else int(resolution), int(outputs), representation)


@dataclass
class EvalData:
    """One labelled split, ready for the model.

    Attributes:
        volumes: ``(N, R, R, R)`` array (uint8 occupancy or float), at the evaluation resolution.
        labels: ``(N,)`` int64 indices of the *model's* outputs.
        classes: names of the model's outputs (the data's names when the model has none).
        sources: ``(N,)`` source strings (mesh paths or ``builtin:...`` names) from the file.
        stored_rotations: ``(N, 3, 3)`` rotations the samples were voxelized with.
        file: the HDF5 file read; ``attrs``: its resolution, representation, normalization.
        class_matching: ``by name`` or ``by index``.
        notes: what was done to the data (resampling), one sentence each.
    """

    volumes: np.ndarray
    labels: np.ndarray
    classes: list
    sources: list
    stored_rotations: np.ndarray
    file: Path
    resolution: int
    representation: str
    normalization: str
    class_matching: str
    notes: list = field(default_factory=list)

    def info(self) -> dict:
        return {"file": str(self.file), "resolution": self.resolution, "representation": self.representation,
                "normalization": self.normalization, "class_matching": self.class_matching}


def data_file(spec: str, resolution: int | None, progress: bool = True, representation: str | None = None,
              pad_for_rotation: bool | int = False, import_resolution: int | None = None) -> Path:
    """The vol3d HDF5 file for DATA ``spec`` (built or imported into the training cache if needed).

    ``resolution`` and ``representation`` are the grid and representation of a ``builtin:`` dataset
    (default 32, ``solid``); other data keep theirs. An ``.npz`` is imported as ``data:`` in training
    does: resampled to ``import_resolution`` (None: kept), then, with ``pad_for_rotation``, padded to
    a rotation-safe grid.
    """
    from ..data.builtin import BUILTIN_NAMES
    from ..training.config import defaults
    from ..training.data import dataset_file

    spec = str(spec)
    if spec.startswith("builtin:"):
        if spec[len("builtin:"):] not in BUILTIN_NAMES:
            raise UsageError(f"{spec}: unknown built-in dataset (choose one of "
                             f"{', '.join('builtin:' + n for n in BUILTIN_NAMES)})")
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise FormatError(f"{spec}: no such data file")
        spec = str(path.resolve())
    section = {**defaults()["data"], "path": spec,
               "resolution": resolution if spec.startswith("builtin:") else None}
    if spec.startswith("builtin:") and representation:
        section["representation"] = representation
    if spec.lower().endswith(".npz"):
        section["pad_for_rotation"] = pad_for_rotation
        section["resolution"] = import_resolution
    return dataset_file(section, progress=progress)


def load_split(spec: str, split: str, model: Classifier, progress: bool = True) -> EvalData:
    """Read split ``split`` of DATA ``spec`` for ``model``: labels mapped to its outputs, volumes at
    its training resolution (see the module docstring)."""
    from ..data.resample import resample_volumes
    from ..data.store import open_dataset

    file = data_file(spec, model.resolution, progress, model.representation, model.pad_for_rotation,
                     model.import_resolution)
    notes = []
    with open_dataset(file) as f:
        index = None  # all of the split
        if split == "val" and "val" not in f.splits and model.holdout and f.splits.get("train"):
            split, index = "train", _holdout_index(f, model.holdout)
            notes.append(f"split 'val': the validation hold-out of the training run ({model.holdout['fraction']:.0%} "
                         f"of the train split per class, seed {model.holdout['seed']}: {len(index)} samples)")
        if split not in f.splits:
            raise UsageError(f"{spec}: no split {split!r} (has: {', '.join(f.splits) or 'none'})")
        if f.splits[split] == 0 or (index is not None and len(index) == 0):
            raise Vol3dError(f"{spec}: split {split!r} is empty")
        index = slice(None) if index is None else index  # h5py reads sorted indices directly
        volumes = f.volumes(split)[index]
        labels, classes = f.labels(split)[index], list(f.classes)
        sources, rotations = list(np.asarray(f.sources(split))[index]), f.rotations(split)[index]
        resolution, representation, normalization = f.resolution, f.representation, f.normalization
    mapping, matching = match_classes(classes, model, labels, spec)
    if str(spec).lower().endswith(".npz") and (model.import_resolution or model.pad_for_rotation):
        notes.append(_import_note(model, resolution))
    if model.resolution is not None and model.resolution != resolution:
        volumes = resample_volumes(volumes, model.resolution, "area")
        notes.append(f"the data's {resolution}^3 volumes were resampled (area filter) to the model's "
                     f"training resolution {model.resolution}^3")
        resolution = model.resolution
    elif model.resolution is None:
        notes.append(f"the model's training resolution is unknown: evaluated at the data's {resolution}^3")
    if model.representation and representation and model.representation != representation:
        notes.append(f"the model was trained on {model.representation} volumes, the data holds {representation}")
    names = model.classes if matching == "by name" else (model.classes or classes)
    return EvalData(volumes, mapping[labels], list(names), sources, rotations, file, resolution, representation,
                    normalization, matching, notes)


def _import_note(model: Classifier, grid: int) -> str:
    """What importing an ``.npz`` as the model's training run did (:func:`data_file`), in words."""
    steps = [f"area-filtered to {model.import_resolution}^3"] if model.import_resolution else []
    if model.pad_for_rotation is True:
        steps.append(f"zero-padded to {grid}^3 so that no occupied voxel leaves the grid under rotation")
    elif model.pad_for_rotation:
        steps.append(f"zero-padded to {grid}^3 (rotations cut what lies beyond radius {grid / 2:g})")
    return "the .npz was imported as the training run imported its data: " + ", then ".join(steps)


def _holdout_index(f, holdout: dict) -> np.ndarray:
    """Sorted indices (into ``f``'s train split) of the objects training held out for validation:
    the same :func:`vol3d.training.data.holdout` call on the same objects, so the same samples."""
    from ..training.data import holdout as choose, object_groups

    groups = object_groups(f.sources("train"))
    is_val = choose(groups, f.labels("train"), holdout["fraction"], holdout["seed"])
    return np.sort(np.concatenate([g for g, v in zip(groups, is_val) if v] or [np.zeros(0, np.int64)]))


def _unnamed(classes) -> bool:
    """Class names that are only the label indices (``"0", "1", ...``): no real names."""
    return list(classes) == [str(i) for i in range(len(classes))]


def match_classes(data_classes, model: Classifier, labels, spec: str) -> tuple[np.ndarray, str]:
    """``(mapping, how)``: ``mapping[data_label]`` is the model output of that class.

    By name when both sides have names; by index otherwise (then the counts must agree). A class
    that occurs in the split but not in the model is an error naming it.
    """
    present = [data_classes[i] for i in np.unique(labels)]
    if model.classes is not None and not _unnamed(data_classes) and not _unnamed(model.classes):
        index = {name: i for i, name in enumerate(model.classes)}
        unknown = [name for name in present if name not in index]
        if unknown:
            raise Vol3dError(f"{spec}: classes unknown to the model: {', '.join(unknown[:5])}"
                             f"{' ...' if len(unknown) > 5 else ''} (the model knows: {', '.join(model.classes)})")
        return np.array([index.get(name, -1) for name in data_classes], dtype=np.int64), "by name"
    if len(data_classes) != model.num_outputs:
        raise Vol3dError(f"{spec}: {len(data_classes)} classes but the model has {model.num_outputs} outputs "
                         "(and no class names to match by)")
    return np.arange(len(data_classes), dtype=np.int64), "by index"
