"""Pretrained classifiers shipped with vol3d, loadable by name.

Each model is a vol3d checkpoint ``vol3d/pretrained/weights/NAME.pt`` with a JSON card
``NAME.json`` beside it: class names, the input it expects (resolution, normalization), the config
and command that trained it, its measured validation results and how long it trained on what.

>>> from vol3d.pretrained import available, load_pretrained, info
>>> available()                                   # doctest: +SKIP
['adrenalmnist3d-cnn', 'adrenalmnist3d-so3', 'modelnet10-cnn', ...]
>>> model = load_pretrained("modelnet10-so3")     # eval mode, model.classes set  # doctest: +SKIP
>>> info("modelnet10-so3")["input"]["resolution"]  # doctest: +SKIP
56
"""

from __future__ import annotations

import hashlib
import json
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
