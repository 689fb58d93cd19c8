"""The one vol3d checkpoint format.

A checkpoint is a ``torch.save``\\ d dict of plain python types and tensors only (loadable with
``torch.load(weights_only=True)``)::

    format          "vol3d-checkpoint"
    format_version  1
    vol3d_version   str
    config          dict: the run's configuration; config["model"] = build_model kwargs
                    (group, num_classes, in_channels and options) that rebuild the network
    classes         list[str]: class names, index = label
    state_dict      dict[str, Tensor]: the weights, without escnn's derived buffers
    training        optional dict (optimizer / scheduler state dicts, epoch, rng states, ...)

escnn's ``R3Conv`` keeps an expanded ``filter`` (and ``expanded_bias``) buffer in eval mode only;
these are functions of the weights: they are left out, so a checkpoint saved in either mode loads
into a model in either mode; :func:`load_model` recomputes them with ``eval()``. Its sampled basis
is kept (see :func:`basis_keys`); mostly zero (about 4% non-zeros for a 5^3 SO(3) kernel), it is
stored flattened as a sparse tensor, which :func:`load_model_state` restores to its dense shape.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import FormatError, UsageError
from .files import atomic_write

FORMAT = "vol3d-checkpoint"
FORMAT_VERSION = 1
REQUIRED = ("format_version", "vol3d_version", "config", "classes", "state_dict")


def derived_keys(model: torch.nn.Module) -> set:
    """State-dict keys of escnn's eval-mode filter caches (``R3Conv.filter``/``expanded_bias``):
    recomputed from the weights, present only in eval mode, never saved."""
    keys = set()
    for name, m in model.named_modules():
        if type(m).__name__ in ("R3Conv", "R2Conv", "R3ConvTransposed"):
            prefix = f"{name}." if name else ""
            keys |= {prefix + "filter", prefix + "expanded_bias"}
    return keys


def basis_keys(model: torch.nn.Module) -> set:
    """State-dict keys of escnn's sampled steerable bases. They ARE saved: the weights are
    coefficients in this basis, and the basis escnn computes depends on its set-up (py3nj or the
    numerical Clebsch-Gordan fallback, its disk cache), so a checkpoint carries its own."""
    keys = set()
    for name, m in model.named_modules():
        if type(m).__name__ in ("R3Conv", "R2Conv", "R3ConvTransposed"):
            prefix = f"{name}." if name else ""
            keys |= {f"{prefix}_basisexpansion.{k}" for k in m._basisexpansion.state_dict()}
    return keys


def model_state(model: torch.nn.Module) -> dict:
    """``model.state_dict()`` without escnn's filter caches (same content in train and eval mode);
    sampled bases that are mostly zeros are stored sparse (:func:`_compact`)."""
    skip, bases = derived_keys(model), basis_keys(model)
    return {k: _compact(v) if k in bases else v.detach().clone()
            for k, v in model.state_dict().items() if k not in skip}


def _compact(tensor: torch.Tensor) -> torch.Tensor:
    """A flattened sparse copy of ``tensor`` when that is smaller (12 bytes per non-zero against 4
    per entry), else a dense copy. Lossless: only exact zeros are dropped."""
    flat = tensor.detach().reshape(-1)
    if 3 * int(torch.count_nonzero(flat)) < flat.numel():
        return flat.to_sparse()
    return tensor.detach().clone()


def _dense_state(model: torch.nn.Module, state: dict, source) -> dict:
    """``state`` with sparse-stored tensors back in the dense shape of ``model``'s own entries."""
    own = model.state_dict()
    out = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_sparse and key in own:
            if value.numel() != own[key].numel():
                raise FormatError(f"{source}: weights do not fit the model ({key!r} has {value.numel()} "
                                  f"entries, the model {own[key].numel()})")
            value = value.to_dense().reshape(own[key].shape)
        out[key] = value
    return out


def load_model_state(model: torch.nn.Module, state: dict, source="state_dict") -> None:
    """Load weights saved by :func:`model_state` (or a raw state dict of either mode) into ``model``;
    missing or unexpected keys other than the derived buffers raise :class:`FormatError`. A state
    without sampled bases (written before they were saved) keeps the freshly computed ones."""
    skip = derived_keys(model)
    optional = skip | basis_keys(model)
    was_training = model.training
    model.train()  # escnn: drops the cached filters, which eval() rebuilds from the new weights
    state = _dense_state(model, {k: v for k, v in state.items() if k not in skip}, source)
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k not in optional]
    unexpected = [k for k in result.unexpected_keys if k not in skip]
    if missing or unexpected:
        what = f"missing key {missing[0]!r}" if missing else f"unexpected key {unexpected[0]!r}"
        raise FormatError(f"{source}: weights do not fit the model ({what})")
    model.train(was_training)


def _atomic_torch_save(obj, path: Path) -> None:
    with atomic_write(path) as tmp:
        torch.save(obj, tmp)


def save_checkpoint(path, model, classes, config: dict | None = None, training: dict | None = None) -> Path:
    """Write ``model`` (a vol3d model: ``Network`` or ``ReferenceNetwork``) with its class names and
    run config to ``path`` (atomic).

    ``config["model"]`` is set from ``model.config``; ``training`` (optional) must hold plain types
    and tensors only (e.g. ``optimizer.state_dict()``, epoch, ``torch.get_rng_state()``).
    """
    from . import __version__

    classes = [str(c) for c in classes]
    model_config = dict(getattr(model, "config", {}) or {})
    if not model_config:
        raise UsageError("save_checkpoint needs a vol3d model (built by vol3d.models.build_model)")
    if model_config.get("num_classes") != len(classes):
        raise UsageError(f"model has {model_config.get('num_classes')} outputs but {len(classes)} class names were given")
    ckpt = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "vol3d_version": __version__,
        "config": {**(config or {}), "model": model_config},
        "classes": classes,
        "state_dict": model_state(model),
    }
    if training is not None:
        ckpt["training"] = training
    path = Path(path)
    _atomic_torch_save(ckpt, path)
    return path


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read and validate a checkpoint (``weights_only=True``); raises :class:`FormatError` naming
    the file and the problem (not a torch file, not a vol3d checkpoint, missing key)."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for foreign files
        raise FormatError(f"{path}: not a vol3d checkpoint (unreadable by torch.load: {type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise FormatError(f"{path}: not a vol3d checkpoint (missing key 'format' = {FORMAT!r})")
    for key in REQUIRED:
        if key not in ckpt:
            raise FormatError(f"{path}: checkpoint is missing key {key!r}")
    if ckpt["format_version"] > FORMAT_VERSION:
        raise FormatError(f"{path}: checkpoint format_version {ckpt['format_version']} is newer than this vol3d reads")
    if not isinstance(ckpt["config"], dict) or "model" not in ckpt["config"]:
        raise FormatError(f"{path}: checkpoint is missing key 'config.model'")
    return ckpt


def load_model(path_or_checkpoint, map_location="cpu"):
    """The checkpoint's model, weights loaded, in eval mode (``vol3d.load_model``).

    Accepts a path or an already loaded checkpoint dict. ``model.classes`` holds the class names.
    """
    from .models import build_model
    from .models.builder import LEGACY

    if isinstance(path_or_checkpoint, dict):
        ckpt, source = path_or_checkpoint, "checkpoint"
    else:
        ckpt, source = load_checkpoint(path_or_checkpoint, map_location), str(path_or_checkpoint)
    config = ckpt["config"]["model"]
    if config.get("architecture", "vol3d") == "vol3d":
        # options added after a checkpoint was written take the values that reproduce its model
        config = {**LEGACY, **config}
    try:
        model = build_model(**config)
    except TypeError as exc:
        raise FormatError(f"{source}: bad config.model ({exc})") from None
    load_model_state(model, ckpt["state_dict"], source)
    model.classes = list(ckpt["classes"])
    return model.eval()
