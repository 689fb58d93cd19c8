"""Pretrained classifiers shipped with vol3d, loadable by name.

Each model is a vol3d checkpoint ``vol3d/pretrained/weights/NAME.pt`` with a JSON card
``NAME.json`` beside it: class names, the input it expects (resolution, normalization), the config
and command that trained it, its measured validation results and how long it trained on what.

>>> import vol3d
>>> model = vol3d.pretrained("adrenalmnist3d-so3")  # the module is callable: load_pretrained  # doctest: +SKIP
>>> from vol3d.pretrained import available, load_pretrained, info
>>> available()                                   # doctest: +SKIP
['adrenalmnist3d-so3', ...]
>>> model = load_pretrained("modelnet10-so3")     # eval mode, model.classes set  # doctest: +SKIP
>>> info("modelnet10-so3")["input"]["resolution"]  # doctest: +SKIP
56
"""

from __future__ import annotations

import hashlib
import json
import sys
import types
from pathlib import Path

from .errors import FormatError, UsageError

#: the folder of the shipped checkpoints and their JSON cards
WEIGHTS = Path(__file__).with_name("pretrained") / "weights"
PREFIX = "pretrained:"  # the spelling used on the command line (``vol3d evaluate pretrained:NAME``)


def available() -> list[str]:
    """Names of the shipped pretrained models (those with both ``NAME.pt`` and ``NAME.json``), sorted."""
    if not WEIGHTS.is_dir():
        return []
    return sorted(p.stem for p in WEIGHTS.glob("*.pt") if p.with_suffix(".json").is_file())


def _resolve(name: str) -> str:
    name = str(name)
    if name.startswith(PREFIX):
        name = name[len(PREFIX):]
    names = available()
    if name not in names:
        raise UsageError(f"unknown pretrained model {name!r}; available: {', '.join(names) or 'none'}")
    return name


def checkpoint_path(name: str) -> Path:
    """The checkpoint file of pretrained model ``name`` (``NAME`` or ``pretrained:NAME``)."""
    return WEIGHTS / f"{_resolve(name)}.pt"


def info(name: str) -> dict:
    """The JSON card of pretrained model ``name``: ``classes``, ``input`` (``resolution``,
    ``channels``, ``normalization``), ``model``, ``config``, ``command``, ``results``, ``training``,
    ``sha256`` of the checkpoint file."""
    card = WEIGHTS / f"{_resolve(name)}.json"
    try:
        return json.loads(card.read_text())
    except json.JSONDecodeError as exc:
        raise FormatError(f"{card}: not valid JSON ({exc.msg})") from None


def load_pretrained(name: str, map_location="cpu"):
    """The pretrained model ``name`` in eval mode, with ``model.classes`` and ``model.pretrained``
    (its card, see :func:`info`). The checkpoint's SHA-256 is checked against the card."""
    from .checkpoint import load_checkpoint, load_model

    card = info(name)
    path = checkpoint_path(name)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != card.get("sha256"):
        raise FormatError(f"{path}: checksum differs from its card {path.with_suffix('.json').name} (damaged file?)")
    ckpt = load_checkpoint(path, map_location)
    if list(ckpt["classes"]) != list(card["classes"]):
        raise FormatError(f"{path}: class names differ from its card")
    model = load_model(ckpt, map_location)
    model.pretrained = card
    return model


def publish(checkpoint, name: str, *, report: dict, config: str, command: str, hardware: str,
            seconds: float, notes: str = "", weights_dir=None) -> Path:
    """Ship the model of a training run as pretrained model ``name``: writes ``NAME.pt`` (the
    checkpoint without its resume state: weights, config, classes) and the card ``NAME.json``.

    Args:
        checkpoint: the run's checkpoint (e.g. ``runs/NAME/last.pt``).
        report: the :func:`vol3d.evaluation.evaluate` report of that checkpoint on the validation
            split (its accuracies, consistency, sample count and input are copied to the card).
        config: the config file, relative to the repository root; ``command`` the exact command run.
        hardware, seconds: where and how long it trained.
        weights_dir: where to write (default: the package's :data:`WEIGHTS`).

    Returns:
        The path of the written checkpoint.
    """
    import io

    import torch

    from .checkpoint import load_checkpoint, load_model, model_state
    from .files import write_bytes_atomic, write_text_atomic
    from .models import count_parameters

    ckpt = load_checkpoint(checkpoint)
    ckpt.pop("training", None)  # optimizer and RNG state: only needed to resume
    model = load_model(ckpt)
    ckpt["state_dict"] = model_state(model)  # the current storage (sparse bases) of the same weights
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    out = Path(weights_dir) if weights_dir is not None else WEIGHTS
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.pt"
    write_bytes_atomic(path, buffer.getvalue())
    data = report["data_info"]
    card = {
        "name": name,
        "file": path.name,
        "sha256": hashlib.sha256(buffer.getvalue()).hexdigest(),
        "classes": list(ckpt["classes"]),
        "input": {"resolution": int(data["resolution"]), "channels": int(getattr(model, "in_channels", 1)),
                  "normalization": str(data["normalization"]), "representation": str(data["representation"])},
        "model": {"group": model.config["group"], "parameters": count_parameters(model),
                  "options": ckpt["config"]["model"]},
        "config": config,
        "command": command,
        "results": {"split": report.get("split"), "n_val": int(report["num_samples"]),
                    "val_acc_aligned": float(report["accuracy_aligned"]),
                    "val_acc_rotated": float(report["accuracy_rotated"]),
                    "consistency": float(report["prediction_consistency"]),
                    "rotations": f"{report['num_rotations']} x {report['rotations']} per sample, seed {report['seed']}"},
        "training": {"seconds": float(seconds), "hardware": hardware},
        "vol3d_version": ckpt.get("vol3d_version"),
        "notes": notes,
    }
    write_text_atomic(out / f"{name}.json", json.dumps(card, indent=2) + "\n")
    return path


class _CallableModule(types.ModuleType):
    """Makes ``vol3d.pretrained(name)`` the same as ``vol3d.pretrained.load_pretrained(name)``."""

    def __call__(self, name: str, map_location="cpu"):
        return load_pretrained(name, map_location)


sys.modules[__name__].__class__ = _CallableModule
