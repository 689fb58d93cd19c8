"""Export a vol3d model to plain PyTorch (no escnn) and to TorchScript.

The models are built from plain modules (:mod:`vol3d.models.layers`, :mod:`vol3d.models.network`)
plus escnn convolutions and batch norms behind ``EscnnAdapter``. Exporting replaces, in an
eval-mode copy:

* ``ConvBN(R3Conv, IIDBatchNorm3d)`` -> one ``nn.Conv3d``: the expanded filter ``W`` and bias ``c``
  with the batch norm folded in. In eval mode a batch norm (escnn's or torch's) is a per-voxel affine
  map ``y = M x + b`` of the channel vector; ``M`` and ``b`` are read off by probing it with the zero
  vector and the unit vectors, then ``W' = M W`` and ``c' = M c + b``.
* a lone ``R3Conv`` -> ``nn.Conv3d`` with its expanded filter.

Fourier/norm/gated nonlinearities, anti-aliased downsampling and invariant pooling are already
plain modules and are kept as they are, so the exported network computes the same function.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import FormatError, UsageError
from ..files import atomic_write


@torch.no_grad()
def affine_of(module: nn.Module, channels: int, like: torch.Tensor):
    """``(M (C, C), b (C,))`` with ``module(x) = M x + b`` per voxel, for a per-voxel affine module."""
    probe = torch.cat([torch.zeros(1, channels), torch.eye(channels)]).to(like)
    out = module(probe.view(channels + 1, channels, 1, 1, 1)).view(channels + 1, channels)
    return (out[1:] - out[0]).T, out[0]


def _is_escnn_conv(module) -> bool:
    return type(module).__name__ == "EscnnAdapter" and type(module.module).__name__ == "R3Conv"


@torch.no_grad()
def _plain_conv(module: nn.Module):
    """(weight, bias or None, padding) of an ``nn.Conv3d`` or an escnn ``R3Conv`` adapter."""
    if isinstance(module, nn.Conv3d):
        if module.groups != 1 or module.stride != (1, 1, 1) or module.dilation != (1, 1, 1):
            raise UsageError("export: only stride-1 ungrouped convolutions are supported")
        return module.weight.detach().clone(), None if module.bias is None else module.bias.detach().clone(), module.padding[0]
    conv = module.module
    if conv.stride != 1 or conv.dilation != 1 or conv.groups != 1:
        raise UsageError("export: only stride-1 ungrouped escnn convolutions are supported")
    weight, bias = conv.expand_parameters()
    return weight.detach().clone(), None if bias is None else bias.detach().clone(), conv.padding


def _to_conv3d(weight, bias, padding) -> nn.Conv3d:
    out = nn.Conv3d(weight.shape[1], weight.shape[0], tuple(weight.shape[2:]), padding=padding, bias=True)
    out.weight.data.copy_(weight)
    out.bias.data.copy_(bias if bias is not None else torch.zeros(weight.shape[0]))
    return out


@torch.no_grad()
def _fold(convbn) -> nn.Conv3d:
    weight, bias, padding = _plain_conv(convbn.conv)
    if bias is None:
        bias = torch.zeros(weight.shape[0], dtype=weight.dtype)
    if not isinstance(convbn.bn, nn.Identity):
        M, b = affine_of(convbn.bn, weight.shape[0], weight)
        weight = torch.einsum("oc,c...->o...", M, weight)
        bias = M @ bias + b
    return _to_conv3d(weight, bias, padding)


def _replace(module: nn.Module) -> nn.Module:
    """A plain copy of ``module`` (recursively; ``module`` is left untouched)."""
    from .network import ConvBN

    if isinstance(module, ConvBN):
        return _fold(module)
    if _is_escnn_conv(module) or isinstance(module, nn.Conv3d):  # vol3d's Conv3d -> a plain nn.Conv3d
        return _to_conv3d(*_plain_conv(module))
    if type(module).__name__ == "EscnnAdapter":
        raise UsageError(f"export: no plain equivalent for escnn module {type(module.module).__name__}")
    if not any(True for _ in module.children()):
        return copy.deepcopy(module)
    # a container: shallow copy with copied parameters/buffers and exported children (escnn modules
    # hold cached non-leaf tensors that deepcopy refuses)
    new = copy.copy(module)
    new.__dict__ = dict(module.__dict__)
    new._parameters = {k: None if v is None else nn.Parameter(v.detach().clone(), v.requires_grad)
                       for k, v in module._parameters.items()}
    new._buffers = {k: None if v is None else v.detach().clone() for k, v in module._buffers.items()}
    new._modules = {name: _replace(child) for name, child in module._modules.items()}
    return new


def export(model: nn.Module) -> nn.Module:
    """A plain-PyTorch copy of ``model`` (eval mode), with no escnn modules inside.

    Input and logits are as for ``model``; outputs agree with ``model.eval()`` to float rounding.
    ``model`` itself is not modified. Works with ``torch.jit.script``/``trace`` and ``torch.compile``.
    """
    from .network import Network

    if not isinstance(model, Network):
        raise UsageError(f"export expects a vol3d model (vol3d.models.Network), got {type(model).__name__}")
    was_training = model.training
    model.eval()  # escnn builds its filters on eval()
    try:
        plain = _replace(model).eval()
    finally:
        model.train(was_training)
    for m in plain.modules():
        if type(m).__module__.startswith("escnn"):
            raise UsageError(f"export: escnn module {type(m).__name__} left in the exported model")
    return plain


def export_torchscript(checkpoint_or_model, out_path, example_resolution: int = 32) -> Path:
    """Write the exported model of a checkpoint path (or a model) as TorchScript to ``out_path``
    (atomic: a temporary file in the same folder, then ``os.replace``).

    The module is scripted (``torch.jit.script``), so it accepts any grid size; it is checked
    against the eager model on a random ``example_resolution^3`` batch before writing. Load it with
    :func:`load_exported` or ``torch.jit.load`` (needs only torch). Returns the path.
    """
    from ..checkpoint import load_model

    model = load_model(checkpoint_or_model) if isinstance(checkpoint_or_model, (str, os.PathLike)) else checkpoint_or_model
    plain = export(model)
    scripted = torch.jit.script(plain)
    r = int(example_resolution)
    x = torch.rand(2, plain.in_channels, r, r, r)
    with torch.no_grad():
        ref, got = plain(x), scripted(x)
    if not torch.allclose(ref, got, rtol=1e-4, atol=1e-5):
        raise RuntimeError("export: the TorchScript module disagrees with the eager exported model")
    out_path = Path(out_path)
    with atomic_write(out_path) as tmp:
        scripted.save(str(tmp))
    return out_path


def load_exported(path) -> torch.jit.ScriptModule:
    """Load a model written by :func:`export_torchscript` (plain ``torch.jit.load``, eval mode)."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: no such exported model file")
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # torch raises RuntimeError/ValueError subclasses for non-TorchScript files
        raise FormatError(f"{path}: not a TorchScript model ({type(exc).__name__})") from None
    return module.eval()
