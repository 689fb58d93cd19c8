"""Reference models built literally from escnn modules, behind vol3d's model interface.

``escnn_se3``: escnn's reference SE(3) classifier (escnn ``examples/se3_3Dcnn.py``), with its layer
widths, feature types, Fourier ELU grids and pooling. Feature types are escnn ``FieldType``s of
``rot3dOnR3``; ``poly_K = (+)_{k <= K} rho_1^(x)k`` (the trivial irrep, the vector irrep and its
tensor powers: ``poly_2`` has 1 + 3 + 9 = 13 channels, ``poly_3`` 40)::

    input   (B, C, X, Y, Z) in vol3d's axes -> escnn's layout (B, C, -Z, -Y, X), zero-padded (below)
    stem    R3Conv(C x trivial -> 3 x poly_2, 5^3, padding 2)                     N^3
    block i ResBlock(t_i -> t_(i+1), width w_i), stride 2                          ceil(N / 2^i)^3
              branch  R3Conv 3^3 -> IIDBatchNorm3d -> FourierELU -> R3Conv 3^3, stride 2
              skip    PointwiseAvgPoolAntialiased3D(sigma .33, stride 2, padding 1)
                      -> R3Conv 1^3 (the identity when t_i = t_(i+1))
            t = 3 x poly_2, 2 x poly_3, 6 x poly_3, 12 x poly_3, 8 x poly_3;  w = 200, 480, 480, 960
    final   R3Conv(8 x poly_3 -> 128 x sphere_2, 3^3, padding 0) -> QuotientFourierELU
    head    mean over the remaining voxels -> Linear(128, 256) -> BN1d -> ELU -> Dropout(.1)
            -> Linear(256, 128) -> BN1d -> ELU -> Dropout(.1) -> Linear(128, K)

The Fourier ELU of block ``i`` holds ``round(w_i / 96)`` fields of band limit L = 2 (``1 + 9 + 25``
coefficients each) sampled on the 96 rotations of escnn's ``thomson_cube`` grid (N = 4; escnn's
``'2_96'`` features). The final one samples 128 band-limited (L = 2) functions on the sphere
``SO(3)/SO(2)`` at the 24 points of the snub cube (``thomson_cube`` N = 1) and keeps frequency 0 of
their ELU: 128 invariants. Both grids are unions of orbits of the cube's rotation group.

Sizes: every stride-2 layer maps ``N -> ceil(N / 2)``, and the final valid 3^3 convolution needs 3
voxels, so escnn's model needs ``N >= 33`` (its example feeds 33^3: 33 -> 17 -> 9 -> 5 -> 3 -> 1).
Smaller inputs are zero-padded symmetrically to 33 (odd N) or 34 (even N); what is left after the
final convolution (1^3 at 33^3 or 34^3) is averaged, so at 33^3 the model is exactly escnn's.

Invariance: with odd N at every stage the strided layers sample voxels ``0, 2, ..., N - 1``, a set
symmetric about the grid centre, and the grids are closed under the cube's rotations, so the logits
are exactly invariant to the 24 rotations of an odd grid. A stride-2 sampling of an even grid
(``0, 2, ..., N - 2``) is not centre-symmetric: on even grids the invariance is approximate.

:func:`vol3d.export` turns these models into plain PyTorch (see :mod:`vol3d.models.export`).
"""

from __future__ import annotations

import inspect
from typing import Dict, List

import torch
import torch.nn.functional as F
from escnn import nn as enn
from torch import nn

from ..errors import UsageError
from . import groups as G
from .builder import EscnnAdapter, steerable_conv
from .layers import EscnnLayout, FourierELU

#: (K, fields) of the stem's output type ``fields x poly_K`` and of each residual block's output
TYPES = ((2, 3), (3, 2), (3, 6), (3, 12), (3, 8))
#: width of each residual block: group-grid samples per voxel of its Fourier ELU
WIDTHS = (200, 480, 480, 960)
L = 2  # band limit of the Fourier ELU and of the final sphere features
GRID = 4  # thomson_cube N of the Fourier ELU: 24 N = 96 rotations
SPHERE_GRID = 1  # thomson_cube N of the sphere grid: the 24 points of the snub cube
SIGMA = 0.33  # anti-aliasing blur of the skip path's pooling (a 3^3 Gaussian)
POOL_FIELDS = 128
HEAD = (256, 128)
FINAL_KERNEL = 3
#: smallest grid the model runs on: 4 halvings ``ceil(N / 2)`` must leave FINAL_KERNEL voxels
MIN_SIZE = 2 ** len(WIDTHS) * (FINAL_KERNEL - 1) + 1


def _scaled(n: float, multiplicity: float) -> int:
    return max(1, int(round(n * multiplicity)))


def polynomial_type(gspace, degree: int, fields: int):
    """``fields x poly_degree``: escnn's ``build_representation`` of the example (trivial, vector
    and its tensor powers up to ``degree``, as one direct sum)."""
    from escnn.group import directsum

    so3 = gspace.fibergroup
    powers = [so3.trivial_representation, so3.irrep(1)]
    while len(powers) <= degree:
        powers.append(powers[-1].tensor(so3.irrep(1)))
    return enn.FieldType(gspace, [directsum(powers, name=f"polynomial_{degree}")] * fields)


class ResBlock(enn.EquivariantModule):
    """escnn's residual block of the reference model, on ``GeometricTensor``s:
    ``branch(x) + skip(x)``, both ``in_type`` at ``N^3`` -> ``out_type`` at ``ceil(N / 2)^3``.

    ``branch``: R3Conv 3^3 -> IIDBatchNorm3d -> FourierELU (``fields`` fields, L = 2, 96-rotation
    grid) -> R3Conv 3^3 with stride 2. ``skip``: anti-aliased stride-2 average pooling, then a 1x1
    R3Conv when the types differ.
    """

    def __init__(self, in_type, out_type, fields: int, init: str = "he"):
        super().__init__()
        self.in_type, self.out_type = in_type, out_type
        so3 = in_type.gspace.fibergroup
        elu = enn.FourierELU(in_type.gspace, fields, irreps=so3.bl_irreps(L), inplace=True,
                             type="thomson_cube", N=GRID)
        self.branch = enn.SequentialModule(
            steerable_conv(in_type, elu.in_type, 3, init, padding=1, bias=False),
            enn.IIDBatchNorm3d(elu.in_type, affine=True),
            elu,
            steerable_conv(elu.in_type, out_type, 3, init, padding=1, stride=2, bias=False),
        )
        skip = [enn.PointwiseAvgPoolAntialiased3D(in_type, SIGMA, 2, 1)]
        if in_type != out_type:
            skip.append(steerable_conv(in_type, out_type, 1, init, bias=False))
        self.skip = enn.SequentialModule(*skip)

    def forward(self, x):
        return self.branch(x) + self.skip(x)

    def evaluate_output_shape(self, input_shape):
        return self.branch.evaluate_output_shape(input_shape)

    def to_plain(self, convert) -> nn.Module:
        """The plain-PyTorch block, its two paths converted by ``convert`` (see vol3d.export)."""
        return Residual(convert(self.branch), convert(self.skip))


class Residual(nn.Module):
    """``branch(x) + skip(x)``: the exported :class:`ResBlock`."""

    def __init__(self, branch: nn.Module, skip: nn.Module):
        super().__init__()
        self.branch, self.skip = branch, skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.branch(x) + self.skip(x)


class ChannelsLastFourierELU(FourierELU):
    """:class:`~vol3d.models.layers.FourierELU` for channels-last tensors, with its own output irreps:
    per field and voxel ``f_hat -> A_out^+ elu(A f_hat)``, ``A`` ``(S, D_in)``, ``Ainv`` ``(D_out, S)``,
    so ``(B, F * D_in, X, Y, Z) -> (B, F * D_out, X, Y, Z)`` (escnn's FourierELU, and its
    QuotientFourierELU with ``out_irreps``: ``D_out = 1`` is an invariant pooling).

    The exported reference models run channels-last (see :func:`vol3d.export`): there each voxel's
    ``F * D_in`` coefficients are contiguous, so both products are GEMMs on views, with no copies;
    the ELU runs in place on the samples. Other layouts are copied first. In inference the
    ``(voxels * F, S)`` samples are made ``chunk_rows`` rows at a time, so that they stay in cache
    between the two products (1.4x faster on CPU at 32^3); with autograd, tracing or compiling,
    one GEMM per product (a Python loop would be unrolled or break the graph).
    """

    __constants__ = ["chunk_rows"]
    chunk_rows = 4096  # rows of the (voxels * F, S) samples per GEMM chunk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, nx, ny, nz = x.shape
        coefficients = x.permute(0, 2, 3, 4, 1).reshape(-1, self.A.shape[1])  # (voxels * F, D_in)
        one_gemm = torch.is_grad_enabled() or torch.jit.is_tracing()
        if not torch.jit.is_scripting():  # TorchScript skips this branch
            one_gemm = one_gemm or torch.compiler.is_compiling()
        if one_gemm:
            y = torch.mm(F.elu(torch.mm(coefficients, self.A.t()), inplace=True), self.Ainv.t())
        else:
            y = coefficients.new_empty(coefficients.shape[0], self.Ainv.shape[0])
            for start in range(0, coefficients.shape[0], self.chunk_rows):
                stop = start + self.chunk_rows
                samples = F.elu(torch.mm(coefficients[start:stop], self.A.t()), inplace=True)
                torch.mm(samples, self.Ainv.t(), out=y[start:stop])
        return y.view(b, nx, ny, nz, -1).permute(0, 4, 1, 2, 3)


class ChannelsLast(nn.Module):
    """``x`` in the channels-last memory format (same values and shape; a copy unless it already is)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last_3d)


class ReferenceNetwork(nn.Module):
    """A reference model with vol3d's interface: ``(B, in_channels, X, Y, Z)`` (vol3d's axes) ->
    logits ``(B, K)``, any grid size; ``group`` and ``config`` (the :func:`build_model` kwargs that
    rebuild it) as for :class:`~vol3d.models.network.Network`.

    ``layout`` -> zero-pad each axis symmetrically to ``min_size`` (odd N) / ``min_size + 1`` (even
    N) when smaller -> ``body`` (escnn modules behind an ``EscnnAdapter``; plain modules once
    exported) -> mean over space -> ``head``.
    """

    def __init__(self, layout: nn.Module, body: nn.Module, head: nn.Module, in_channels: int, min_size: int,
                 config: Dict):
        super().__init__()
        self.layout, self.body, self.head = layout, body, head
        self.in_channels = int(in_channels)
        self.min_size = int(min_size)
        self.config = dict(config)
        self.group = str(self.config["group"])

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        # per axis (N - n) / 2 zeros each side, N the smallest size >= min_size of the parity of n
        half = [max(0, self.min_size + (n - self.min_size) % 2 - n) // 2 for n in x.shape[2:]]
        if max(half) == 0:
            return x
        return F.pad(x, [half[2], half[2], half[1], half[1], half[0], half[0]])  # last axis first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError("expected a volume batch (B, {}, X, Y, Z), got shape {}".format(
                self.in_channels, list(x.shape)))
        features = self.body(self._pad(self.layout(x)))
        return self.head(features.mean(dim=(2, 3, 4)))


def _mlp(in_features: int, hidden, num_classes: int, dropout: float) -> nn.Sequential:
    """``(Linear without bias -> BatchNorm1d -> ELU -> Dropout)`` per hidden width, then ``Linear``;
    weights orthogonal, biases zero (the example's ``init``)."""
    layers, width = [], in_features
    for h in hidden:
        layers += [nn.Linear(width, h, bias=False), nn.BatchNorm1d(h), nn.ELU(inplace=True), nn.Dropout(dropout)]
        width = h
    layers.append(nn.Linear(width, num_classes))
    for m in layers:
        if isinstance(m, nn.Linear):
            nn.init.orthogonal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return nn.Sequential(*layers)


def escnn_se3(num_classes: int = 10, in_channels: int = 1, multiplicity: float = 1.0, dropout: float = 0.1,
              init: str = "he") -> ReferenceNetwork:
    """escnn's reference SE(3) model (module docstring), in train mode.

    Args:
        num_classes, in_channels: logits and input channels (scalar fields).
        multiplicity: scales every width (fields of each type, Fourier ELU fields, the 128 pooled
            invariants, the MLP), each rounded and at least 1; 1.0 is escnn's model, small values
            give tiny models for tests.
        dropout: dropout of the MLP.
        init: of the R3Convs: ``he`` (vol3d's fast He init; escnn's ``generalized_he_init`` is slow
            on wide layers) | ``escnn_he`` | ``delta``. The linear layers get orthogonal weights.
    """
    if num_classes < 1 or in_channels < 1 or not multiplicity > 0:
        raise UsageError(f"escnn_se3 needs num_classes, in_channels >= 1 and multiplicity > 0, got "
                         f"{num_classes}, {in_channels}, {multiplicity}")
    config = dict(architecture="escnn_se3", group="so3", num_classes=num_classes, in_channels=in_channels,
                  multiplicity=multiplicity, dropout=dropout, init=init)
    gs = G.gspace("so3", L)
    so3 = gs.fibergroup
    types = [polynomial_type(gs, k, _scaled(n, multiplicity)) for k, n in TYPES]
    layers = [steerable_conv(enn.FieldType(gs, [gs.trivial_repr] * in_channels), types[0], 5, init,
                             padding=2, bias=False)]
    for t_in, t_out, width in zip(types, types[1:], WIDTHS):
        fields = _scaled(width / len(so3.grid(type="thomson_cube", N=GRID)), multiplicity)
        layers.append(ResBlock(t_in, t_out, fields, init))
    pool = enn.QuotientFourierELU(gs, (False, -1), _scaled(POOL_FIELDS, multiplicity), irreps=so3.bl_irreps(L),
                                  out_irreps=so3.bl_irreps(0), grid=so3.sphere_grid(type="thomson_cube", N=SPHERE_GRID))
    layers += [steerable_conv(types[-1], pool.in_type, FINAL_KERNEL, init, padding=0, bias=False), pool]
    head = _mlp(pool.out_type.size, [_scaled(h, multiplicity) for h in HEAD], num_classes, float(dropout))
    body = EscnnAdapter(enn.SequentialModule(*layers))
    return ReferenceNetwork(EscnnLayout(), body, head, in_channels, MIN_SIZE, config)


#: reference architectures by name: (symmetry group, builder)
REFERENCE_MODELS = {"escnn_se3": ("so3", escnn_se3)}


def reference_options(name: str) -> List[str]:
    """The options of reference model ``name``: its builder's keyword arguments."""
    if name not in REFERENCE_MODELS:
        raise UsageError(f"unknown model architecture {name!r}; choose vol3d or one of {', '.join(REFERENCE_MODELS)}")
    params = inspect.signature(REFERENCE_MODELS[name][1]).parameters
    return [p for p in params if p not in ("num_classes", "in_channels")]


def build_reference(name: str, group: str, num_classes: int, in_channels: int, **options) -> ReferenceNetwork:
    """Reference model ``name`` (``build_model(architecture=name, ...)``); options are validated."""
    valid = reference_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise UsageError(f"model option {unknown[0]!r} does not apply to architecture {name}; valid options: "
                         f"{', '.join(valid)}")
    needed, builder = REFERENCE_MODELS[name]
    if group != needed:
        raise UsageError(f"architecture {name} is a {needed} model, got group {group!r}")
    return builder(num_classes=num_classes, in_channels=in_channels, **options)
