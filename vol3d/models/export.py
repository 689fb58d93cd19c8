"""Export a vol3d model to plain PyTorch (no escnn) and to TorchScript.

The models are built from plain modules (:mod:`vol3d.models.layers`, :mod:`vol3d.models.network`)
plus escnn modules behind ``EscnnAdapter``: single convolutions and batch norms in vol3d's layout
(:class:`~vol3d.models.network.Network`), a whole escnn ``SequentialModule`` in the reference
models (:mod:`vol3d.models.reference`). Exporting replaces, in an eval-mode copy:

* ``ConvBN(R3Conv, IIDBatchNorm3d)``, or an ``IIDBatchNorm3d`` right after an ``R3Conv`` in an
  escnn sequence -> one ``nn.Conv3d``: the expanded filter ``W`` and bias ``c`` with the batch norm
  folded in. In eval mode a batch norm (escnn's or torch's) is a per-voxel affine map
  ``y = M x + b`` of the channel vector; ``M`` and ``b`` are read off by probing it with the zero
  vector and the unit vectors, then ``W' = M W`` and ``c' = M c + b``. A lone escnn batch norm
  becomes the 1x1 convolution ``(M, b)``.
* an ``R3Conv`` (any stride and zero padding) -> ``nn.Conv3d`` with its expanded filter.
* escnn's ``FourierELU`` / ``QuotientFourierELU`` -> ``ChannelsLastFourierELU`` (vol3d's plain
  ``FourierELU`` on channels-last tensors, output irreps of its own) with the module's grid
  matrices ``A``, ``A^+``. The body of an exported reference model runs channels-last.
* escnn's ``PointwiseAvgPoolAntialiased3D`` -> a fixed depthwise ``nn.Conv3d`` (its Gaussian
  filter, stride and padding).
* ``SequentialModule`` -> ``nn.Sequential``; vol3d's ``ResBlock`` -> ``Residual`` (``branch + skip``).

vol3d's own nonlinearities, anti-aliased downsampling and invariant pooling are already plain
modules and are kept as they are, so the exported network computes the same function.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import FormatError, UsageError
from ..files import atomic_write
from .builder import EscnnAdapter
from .network import ConvBN, Network


@torch.no_grad()
def affine_of(module: nn.Module, channels: int, like: torch.Tensor):
    """``(M (C, C), b (C,))`` with ``module(x) = M x + b`` per voxel, for a per-voxel affine module."""
    probe = torch.cat([torch.zeros(1, channels), torch.eye(channels)]).to(like)
    out = module(probe.view(channels + 1, channels, 1, 1, 1)).view(channels + 1, channels)
    return (out[1:] - out[0]).T, out[0]


def _is_escnn(module) -> bool:
    """An escnn module, or a module derived from one (vol3d's :class:`~vol3d.models.reference.ResBlock`)."""
    return any(c.__module__.startswith("escnn") for c in type(module).__mro__)


@torch.no_grad()
def _plain_conv(module: nn.Module):
    """(weight, bias or None, stride, padding) of an ``nn.Conv3d`` or an escnn ``R3Conv`` (bare or
    behind an ``EscnnAdapter``; its expanded filter)."""
    conv = module.module if isinstance(module, EscnnAdapter) else module
    if isinstance(conv, nn.Conv3d):
        weight, bias, dilation = conv.weight, conv.bias, conv.dilation
    else:
        (weight, bias), dilation = conv.expand_parameters(), (conv.dilation,) * 3
    if (conv.groups != 1 or tuple(dilation) != (1, 1, 1) or conv.padding_mode != "zeros"
            or isinstance(conv.padding, str)):
        raise UsageError("export: only ungrouped, undilated, zero-padded convolutions are supported")
    return weight.detach().clone(), None if bias is None else bias.detach().clone(), conv.stride, conv.padding


def _to_conv3d(weight, bias, stride=1, padding=0) -> nn.Conv3d:
    out = nn.Conv3d(weight.shape[1], weight.shape[0], tuple(weight.shape[2:]), stride=stride, padding=padding)
    out.weight.data.copy_(weight)
    out.bias.data.copy_(bias if bias is not None else torch.zeros(weight.shape[0]))
    return out


@torch.no_grad()
def _fold(convbn) -> nn.Conv3d:
    weight, bias, stride, padding = _plain_conv(convbn.conv)
    if bias is None:
        bias = torch.zeros(weight.shape[0], dtype=weight.dtype)
    if not isinstance(convbn.bn, nn.Identity):
        M, b = affine_of(convbn.bn, weight.shape[0], weight)
        weight = torch.einsum("oc,c...->o...", M, weight)
        bias = M @ bias + b
    return _to_conv3d(weight, bias, stride, padding)


def _is_batch_norm(module) -> bool:
    return type(module).__name__ == "IIDBatchNorm3d"


@torch.no_grad()
def _plain_blur(pool) -> nn.Conv3d:
    """escnn's ``PointwiseAvgPoolAntialiased3D``: its Gaussian filter as a fixed depthwise convolution."""
    c = pool.in_type.size
    conv = nn.Conv3d(c, c, pool.kernel_size, stride=pool.stride, padding=pool.padding, groups=c, bias=False)
    conv.weight.copy_(pool.filter)
    conv.weight.requires_grad_(False)
    return conv


def _plain_fourier(module) -> nn.Module:
    """escnn's ``FourierELU`` / ``QuotientFourierELU``: ``A^+ elu(A f)`` with their grid matrices."""
    from .reference import ChannelsLastFourierELU

    if module._function not in (F.elu, F.elu_):
        raise UsageError(f"export: only ELU Fourier nonlinearities have a plain equivalent ({type(module).__name__})")
    return ChannelsLastFourierELU(module.A, module.Ainv, len(module.in_type))


def _plain_sequence(modules, fold: bool) -> nn.Sequential:
    """escnn modules in sequence; a batch norm right after an ``R3Conv`` is folded into it (or, with
    ``fold=False``, kept beside it in a ``ConvBN``)."""
    out, previous = [], None
    for m in modules:
        if _is_batch_norm(m) and type(previous).__name__ == "R3Conv":
            conv = out.pop()
            out.append(_fold(ConvBN(conv, EscnnAdapter(m))) if fold else ConvBN(conv, _plain_escnn(m, fold)))
        else:
            out.append(_plain_escnn(m, fold))
        previous = m
    return nn.Sequential(*out)


def _plain_escnn(module, fold: bool = True) -> nn.Module:
    """The plain module computing what the escnn ``module`` computes in eval mode."""
    name = type(module).__name__
    if name == "R3Conv":
        return _to_conv3d(*_plain_conv(module))
    if name == "SequentialModule":
        return _plain_sequence(module.children(), fold)
    if _is_batch_norm(module):  # alone: a per-voxel affine map, i.e. a 1x1 convolution
        c = module.in_type.size
        return _fold(ConvBN(_to_conv3d(torch.eye(c).view(c, c, 1, 1, 1), None), EscnnAdapter(module)))
    if name in ("FourierELU", "QuotientFourierELU"):
        return _plain_fourier(module)
    if name == "PointwiseAvgPoolAntialiased3D":
        return _plain_blur(module)
    if hasattr(module, "to_plain"):  # vol3d's own escnn modules
        return module.to_plain(lambda m: _plain_escnn(m, fold))
    raise UsageError(f"export: no plain equivalent for escnn module {name}")


def _replace(module: nn.Module, fold: bool) -> nn.Module:
    """A plain copy of ``module`` (recursively; ``module`` is left untouched)."""
    if isinstance(module, ConvBN) and fold:
        return _fold(module)
    if isinstance(module, nn.Conv3d):  # vol3d's Conv3d -> a plain nn.Conv3d
        return _to_conv3d(*_plain_conv(module))
    if isinstance(module, EscnnAdapter):
        return _plain_escnn(module.module, fold)
    if not any(True for _ in module.children()):
        return copy.deepcopy(module)
    # a container: shallow copy with copied parameters/buffers and exported children (escnn modules
    # hold cached non-leaf tensors that deepcopy refuses)
    new = copy.copy(module)
    new.__dict__ = dict(module.__dict__)
    new._parameters = {k: None if v is None else nn.Parameter(v.detach().clone(), v.requires_grad)
                       for k, v in module._parameters.items()}
    new._buffers = {k: None if v is None else v.detach().clone() for k, v in module._buffers.items()}
    new._modules = {name: _replace(child, fold) for name, child in module._modules.items()}
    return new


def export(model: nn.Module, fold_batch_norms: bool = True) -> nn.Module:
    """A plain-PyTorch copy of ``model`` (eval mode), with no escnn modules inside.

    Input and logits are as for ``model``; outputs agree with ``model.eval()`` to float rounding.
    ``model`` itself is not modified. Works with ``torch.jit.script``/``trace`` and ``torch.compile``.
    ``fold_batch_norms=False`` keeps each batch norm that follows a convolution as its own module
    beside it (``ConvBN(conv, bn)``, an escnn batch norm as a 1x1 convolution), e.g. for a benchmark
    that swaps them for ``nn.BatchNorm3d``.
    """
    reference = not isinstance(model, Network)
    if reference:
        from .reference import ChannelsLast, ReferenceNetwork

        if not isinstance(model, ReferenceNetwork):
            raise UsageError(f"export expects a vol3d model (vol3d.models.Network or ReferenceNetwork), "
                             f"got {type(model).__name__}")
    was_training = model.training
    model.eval()  # escnn builds its filters on eval()
    try:
        plain = _replace(model, fold_batch_norms).eval()
    finally:
        model.train(was_training)
    if reference:
        # a reference model's body runs channels-last: oneDNN's 3D convolutions are faster on it
        # (1.2-1.5x for escnn_se3's) and its Fourier ELUs read each voxel's coefficients in place
        plain.body = nn.Sequential(ChannelsLast(), plain.body)
        plain = plain.to(memory_format=torch.channels_last_3d)
    for m in plain.modules():
        if _is_escnn(m):
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
