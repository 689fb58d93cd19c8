"""The layout shared by every vol3d classifier (steerable or plain), in plain PyTorch.

``Network``: ``(B, C, X, Y, Z)`` float -> logits ``(B, K)``::

    layout  (escnn's voxel layout for steerable models, identity for the CNN)
    margin  zero-pad ``margin`` voxels on every side (features near the border are not cropped)
    filter  optional Gaussian low-pass of the input (``input_blur``)
    pad     zero-pad each axis symmetrically to N' >= N, N' = N mod 2 (mod size_multiple)
    stem    ConvBN(k0) -> act                                   full resolution
    stage i BlurDownsample3d (stride 2) -> blocks x Block(k_i)  resolution / 2^i
    pool    ConvBN(1x1) -> invariant pooling (group pooling to scalars, or ELU for the CNN)
    head    global average over space -> MLP -> logits

The convolutions and batch norms are escnn modules (behind :class:`EscnnAdapter` in
:mod:`vol3d.models.builder`) or plain ``nn.Conv3d`` / ``nn.BatchNorm3d``; :func:`vol3d.export`
swaps the former for the latter, so this module is also the exported model.
"""

from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import nn


class ConvBN(nn.Module):
    """A stride-1 convolution followed by a batch norm (``nn.Identity`` when none); exported as one
    ``nn.Conv3d`` with the (eval-mode, per-voxel affine) batch norm folded in."""

    def __init__(self, conv: nn.Module, bn: nn.Module | None = None):
        super().__init__()
        self.conv = conv
        self.bn = bn if bn is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class PlainBlock(nn.Module):
    """``mask(act(BN(conv(x))))``; ``mask`` (no parameters) is the identity unless the model has a
    field of view (:class:`~vol3d.models.layers.BallMask3d`)."""

    def __init__(self, conv: ConvBN, act: nn.Module, mask: nn.Module | None = None):
        super().__init__()
        self.conv = conv
        self.act = act
        self.mask = mask if mask is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mask(self.act(self.conv(x)))


class ResidualBlock(nn.Module):
    """ResNet basic block: ``mask(act2(BN(conv2(h)) + skip(x)))``, ``h = mask(act1(BN(conv1(x))))``;
    ``skip`` is the identity when the feature types agree, else a 1x1 convolution; ``mask`` as
    :class:`PlainBlock`'s."""

    def __init__(self, conv1: ConvBN, act1: nn.Module, conv2: ConvBN, act2: nn.Module, skip: nn.Module,
                 mask: nn.Module | None = None):
        super().__init__()
        self.conv1, self.act1, self.conv2, self.act2, self.skip = conv1, act1, conv2, act2, skip
        self.mask = mask if mask is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.mask(self.act1(self.conv1(x)))
        return self.mask(self.act2(self.conv2(h) + self.skip(x)))


class Network(nn.Module):
    """A vol3d classifier: ``(B, in_channels, X, Y, Z)`` -> logits ``(B, num_classes)``, any grid size.

    ``config`` holds the keyword arguments of :func:`vol3d.models.build_model` that rebuild it (plain
    python types; saved in checkpoints). ``group`` is the symmetry group name (``"cnn"`` for none).

    ``size_multiple`` (``2^(downsamplings + 1)``, or 1 for none) makes zero padding harmless. A
    centred stride-2 downsampling ``N -> M = ceil(N/2)`` samples at offsets ``2j - (M - 1)`` from
    the grid centre (odd offsets for even ``M``) with taps chosen by the parity of ``N``, so padding
    ``16 -> 18`` (``8 -> 9`` one stage later) or ``16 -> 20`` (``4 -> 5`` at the end) would move the
    sampling lattice relative to the object. Each axis is first zero-padded symmetrically to the
    smallest ``N' >= N`` with ``N' = N mod 2 (mod size_multiple)``: every downsampling then sees
    the parities of the first, so two grids of the same parity that differ by empty space give the
    same features (with zero-preserving layers: ``norm: rms``). Symmetric, so the grid centre and
    its symmetries are kept.

    ``margin`` voxels of zeros go around the input first: every convolution keeps its grid's size,
    so features within a receptive field of the border would otherwise be cut off there, and which
    ones are cut depends on how the object is turned (the grid is a cube, not a ball).
    ``input_filter`` (a :class:`~vol3d.models.layers.GaussianBlur3d` or the identity) low-passes
    the padded input.

    A margin holds the receptive field only if it is as wide; a trained model's features reach
    further, and a grid larger than the training one shows it tails it never saw. With a field of
    view (``build_model(field_of_view=R)``) every block, downsampling, the input filter and the
    head cut their outputs to a ball of radius ``R`` input voxels about the grid centre
    (:class:`~vol3d.models.layers.BallMask3d`): every grid that holds the ball then gives the same
    logits.
    """

    def __init__(self, layout: nn.Module, stem: nn.Module, stages: nn.Module, pool: nn.Module,
                 head: nn.Module, in_channels: int, group: str, config: Dict, size_multiple: int = 1,
                 margin: int = 0, input_filter: nn.Module | None = None):
        super().__init__()
        self.margin = int(margin)
        self.input_filter = input_filter if input_filter is not None else nn.Identity()
        self.layout, self.stem, self.stages, self.pool, self.head = layout, stem, stages, pool, head
        self.in_channels = in_channels
        self.group = group
        self.config = dict(config)
        self.size_multiple = int(size_multiple)

    def _canonical_pad(self, x: torch.Tensor) -> torch.Tensor:
        m = self.size_multiple
        if m <= 2:
            return x
        pads: List[int] = []
        for axis in (4, 3, 2):  # F.pad lists the last axis first
            n = x.shape[axis]
            half = (m - (n - n % 2) % m) % m // 2  # (n % 2 - n) mod m, non-negative operands
            pads += [half, half]
        return F.pad(x, pads) if max(pads) > 0 else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.feature_maps(x))

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        """The invariant maps that the head pools: ``(B, C_in, X, Y, Z) -> (B, C, X', Y', Z')``."""
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError("expected a volume batch (B, {}, X, Y, Z), got shape {}".format(
                self.in_channels, list(x.shape)))
        x = self.layout(x)
        if self.margin > 0:
            x = F.pad(x, [self.margin] * 6)
        x = self.input_filter(x)
        return self.pool(self.stages(self.stem(self._canonical_pad(x))))
