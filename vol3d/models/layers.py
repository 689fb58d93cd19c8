"""Plain-PyTorch building blocks shared by the escnn models and their exported form.

Nothing here imports escnn: the nonlinearities, the downsampling and the invariant pooling are
written once, as ordinary modules on tensors ``(B, C, X, Y, Z)``, and appear unchanged in
:func:`vol3d.export`. All are TorchScript-compatible.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class EscnnLayout(nn.Module):
    """vol3d's ``(B, C, x, y, z)`` -> escnn's voxel layout ``(B, C, -z, -y, x)`` (a copy)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 1, 4, 3, 2).flip(2, 3)


class _WeightGradByConv(torch.autograd.Function):
    """``conv3d(x, w, b, padding=k // 2)`` whose weight gradient is itself computed as a convolution.

    ``dL/dw[o, c, a] = sum_{n, v} g[n, o, v] x_pad[n, c, v + a]`` is the correlation of the input
    with the output gradient: ``conv3d(x^T, g^T, padding)`` with the batch as channels. oneDNN's own
    weight-gradient kernel is pathologically slow for few input channels on CPU (~4 s for a 1-channel
    5^3 stem at 16 x 32^3, vs ~0.3 s this way); the input gradient keeps torch's kernel.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, padding: int):
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        ctx.has_bias = bias is not None
        return F.conv3d(x, weight, bias, padding=padding)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        p = ctx.padding
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = torch.nn.grad.conv3d_input(x.shape, weight, grad, padding=p)
        if ctx.needs_input_grad[1]:
            gw = F.conv3d(x.transpose(0, 1), grad.transpose(0, 1), padding=p).transpose(0, 1)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = grad.sum(dim=(0, 2, 3, 4))
        return gx, gw, gb, None


#: input channels up to which :func:`conv3d_same` computes the CPU weight gradient by convolution
SMALL_INPUT_CHANNELS = 4


def conv3d_same(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int) -> torch.Tensor:
    """``F.conv3d(x, weight, bias, padding=padding)`` (stride 1, ``padding = k // 2``, odd cubic
    ``k``): the same values, with a fast weight gradient for few input channels on CPU
    (:class:`_WeightGradByConv`)."""
    k = weight.shape[-1]
    if (x.device.type == "cpu" and weight.requires_grad and torch.is_grad_enabled()
            and x.shape[1] <= SMALL_INPUT_CHANNELS and k % 2 == 1 and padding == k // 2
            and weight.shape[-3:] == (k, k, k)):
        return _WeightGradByConv.apply(x, weight, bias, padding)
    return F.conv3d(x, weight, bias, padding=padding)


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` (stride 1) computed with :func:`conv3d_same`: same parameters and values;
    exported as a plain ``nn.Conv3d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.padding_mode != "zeros" or self.stride != (1, 1, 1) or self.dilation != (1, 1, 1)
                or self.groups != 1 or len(set(self.padding)) != 1):
            return super().forward(x)
        return conv3d_same(x, self.weight, self.bias, self.padding[0])


def _blur_taps(size: int, sigma: float) -> torch.Tensor:
    """1D Gaussian taps at offsets centred on 0 (half-integer offsets for even ``size``), sum 1.
    ``sigma <= 0`` gives a box (a plain stride for odd sizes, a 2-average for even)."""
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    if sigma <= 0:
        taps = torch.ones(size, dtype=torch.float64)
    else:
        taps = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (taps / taps.sum()).float()


class BlurDownsample3d(nn.Module):
    """Anti-aliased, centre-symmetric stride-2 downsampling, channelwise: ``(B, C, N1, N2, N3)`` ->
    ``(B, C, ceil(N1/2), ceil(N2/2), ceil(N3/2))``.

    Along each axis a 1D blur with taps ``g(t) ~ exp(-t^2 / 2 sigma^2)`` is applied with stride 2.
    The tap count has the parity of the axis length ``N`` (``2r+1`` taps on integer offsets for odd
    ``N``, ``2r+2`` taps on half-integer offsets for even ``N``, padding ``r``) so that the sampled
    positions are symmetric about the grid centre: the output is then exactly equivariant to the
    grid's 48 symmetries for odd *and* even sizes (a plain stride-2 sampling of an even grid is
    not). The same filter acts on every channel, so it commutes with any fibre representation.
    ``sigma = 0`` disables anti-aliasing (odd: plain subsampling; even: 2-average).
    """

    def __init__(self, sigma: float = 0.6):
        super().__init__()
        self.sigma = float(sigma)
        self.radius = max(1, int(math.ceil(2 * sigma))) if sigma > 0 else 0
        self.register_buffer("odd_taps", _blur_taps(2 * self.radius + 1, sigma), persistent=False)
        self.register_buffer("even_taps", _blur_taps(2 * self.radius + 2, sigma), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for axis in (2, 3, 4):
            taps = self.even_taps if x.shape[axis] % 2 == 0 else self.odd_taps
            x = _filter_axis(x, taps, axis, 2, self.radius)
        return x

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"


def _filter_axis(x: torch.Tensor, taps: torch.Tensor, axis: int, stride: int, padding: int) -> torch.Tensor:
    """The same 1D filter ``taps`` on every channel along ``axis`` (2, 3 or 4), zero-padded."""
    c = x.shape[1]
    shape = [1, 1, 1]
    shape[axis - 2] = taps.shape[0]
    strides = [1, 1, 1]
    strides[axis - 2] = stride
    pads = [0, 0, 0]
    pads[axis - 2] = padding
    weight = taps.view(1, 1, shape[0], shape[1], shape[2]).expand(c, 1, shape[0], shape[1], shape[2])
    return F.conv3d(x, weight, stride=strides, padding=pads, groups=c)


class GaussianBlur3d(nn.Module):
    """Isotropic Gaussian low-pass, channelwise: ``(B, C, X, Y, Z)`` -> the same shape (zero-padded).

    Separable taps ``g(t) ~ exp(-t^2 / 2 sigma^2)``, ``t = -r..r``, ``r = ceil(3 sigma)``. The kernel
    is rotation-invariant in the continuum, and it removes the high frequencies at which a rotated
    voxel grid differs most from the rotated shape (e3nn's voxel tetris example low-passes its input
    the same way). ``sigma = 0`` is the identity.
    """

    def __init__(self, sigma: float):
        super().__init__()
        self.sigma = float(sigma)
        self.radius = int(math.ceil(3 * sigma)) if sigma > 0 else 0
        self.register_buffer("taps", _blur_taps(2 * self.radius + 1, sigma), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.radius == 0:
            return x
        for axis in (2, 3, 4):
            x = _filter_axis(x, self.taps, axis, 1, self.radius)
        return x

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"


class BallMask3d(nn.Module):
    """Zero everything outside a ball about the grid centre: ``(B, C, X, Y, Z)`` -> the same shape.

    ``y = m(r) x`` with ``r`` the distance of a voxel centre from the grid centre (voxels) and
    ``m(r) = sin^2(pi/2 * clip((radius - r) / taper, 0, 1))``: 1 within ``radius - taper``, 0 from
    ``radius`` on, a smooth ramp between (a hard edge would alias as the object turns).
    Why: a model whose every layer sees only the ball computes the same features on any grid that
    holds the ball, so zero padding (as rotated evaluation does) changes nothing, and the ball,
    unlike the grid's cube, turns into itself. ``radius <= 0`` is the identity.
    """

    def __init__(self, radius: float, taper: float = 1.0):
        super().__init__()
        self.radius, self.taper = float(radius), float(taper)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.radius <= 0:
            return x
        r2 = torch.zeros(1, 1, 1, 1, 1, dtype=x.dtype, device=x.device)
        for axis in (2, 3, 4):
            n = x.shape[axis]
            t = torch.arange(n, dtype=x.dtype, device=x.device) - (n - 1) / 2
            shape = [1, 1, 1, 1, 1]
            shape[axis] = n
            r2 = r2 + t.view(shape).square()
        ramp = ((self.radius - r2.sqrt()) / self.taper).clamp(0.0, 1.0)
        return x * torch.sin(0.5 * math.pi * ramp).square()

    def extra_repr(self) -> str:
        return f"radius={self.radius}, taper={self.taper}"


class FourierELU(nn.Module):
    """Pointwise ELU on the group, in Fourier space: per field and voxel,
    ``f_hat -> A^+ elu(A f_hat)`` with ``A`` ``(S, D)`` sampling the band-limited function with
    coefficients ``f_hat`` on ``S`` group elements (see :func:`vol3d.models.groups.fourier_matrices`).

    Input/output ``(B, F*D, X, Y, Z)`` (``(B, F*D_out, ...)`` when ``Ainv`` ``(D_out, S)`` maps back to
    fewer coefficients, as an exported reference model's quotient ELU does). Exactly equivariant to every group element that permutes
    the grid; approximately to the rest. For a finite group on its full grid it is an exact
    change of basis to the regular representation.
    """

    def __init__(self, A: torch.Tensor, Ainv: torch.Tensor, fields: int):
        super().__init__()
        self.fields = fields
        self.register_buffer("A", torch.as_tensor(A, dtype=torch.float32).contiguous())
        self.register_buffer("Ainv", torch.as_tensor(Ainv, dtype=torch.float32).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # batched GEMMs over (B, F): (S, D) @ (D, voxels), then (D, S) @ (S, voxels)
        b = x.shape[0]
        f = x.view(b, self.fields, self.A.shape[1], -1)
        y = torch.matmul(self.Ainv, F.elu(torch.matmul(self.A, f)))
        return y.view(b, -1, x.shape[2], x.shape[3], x.shape[4])  # F * D_out channels

    def extra_repr(self) -> str:
        return f"fields={self.fields}, dim={self.A.shape[1]}, grid={self.A.shape[0]}"


class FourierPool(nn.Module):
    """Invariant group pooling: ``(B, F*D, ...) -> (B, F, ...)``, ``mean_s elu(A f_hat)(g_s)``: the
    average over the grid of the ELU of each field's function: unchanged when a group element
    permutes the grid."""

    def __init__(self, A: torch.Tensor, fields: int):
        super().__init__()
        self.fields = fields
        self.register_buffer("A", torch.as_tensor(A, dtype=torch.float32).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        y = F.elu(torch.matmul(self.A, x.view(b, self.fields, self.A.shape[1], -1))).mean(2)
        return y.view(b, self.fields, x.shape[2], x.shape[3], x.shape[4])

    def extra_repr(self) -> str:
        return f"fields={self.fields}, grid={self.A.shape[0]}"


def _signed_root(x: torch.Tensor, degree: int, eps: float = 1e-6) -> torch.Tensor:
    """``sign(x) ((|x| + eps)^(1/degree) - eps^(1/degree))``: a homogeneous polynomial of ``degree``
    brought back to degree ~1 (so every invariant scales like the features), with a finite slope
    at 0 and exact zeros kept."""
    root = 1.0 / degree
    return torch.sign(x) * ((x.abs() + eps).pow(root) - eps ** root)


class InvariantPool(nn.Module):
    """Invariant pooling of SO(3) fields by their polynomial invariants: ``(B, F*D, ...) -> (B, F*K, ...)``.

    A field of the spectral type holds, per frequency ``l``, a ``(2l+1) x c_l`` matrix ``M_l``
    whose columns (the ``c_l`` copies of irrep ``l``) all rotate by ``rho_l(g)``: ``M_l -> rho_l(g) M_l``.
    Per field this module returns the trivial channels, the upper triangle of every Gram matrix
    ``M_l^T M_l`` (``l >= 1``) and ``det M_1``, each brought to degree ~1 by :func:`_signed_root`.
    By the first fundamental theorem of invariant theory for SO(3), inner products and the
    determinant generate every polynomial invariant of three vectors, so for ``L = 1`` (a scalar and
    ``M_1``) the set is complete; for higher ``L`` the couplings between blocks are left out.
    Unlike group pooling (an average over group samples, approximate off the grid), every output is
    exactly invariant to any rotation of the field, and ``det M_1`` is a pseudo-scalar (a reflection
    of the field flips its sign): a direct handle on chirality, which group pooling sees only at
    third order, so mirror-image objects such as the chiral tetris pieces get well-separated
    features.

    ``layout``: per irrep copy of one field, ``(start, size, is_trivial)`` in channel order (see
    :func:`vol3d.models.groups.irrep_layout`); copies of equal size belong to one ``M_l``.
    """

    def __init__(self, layout, fields: int):
        super().__init__()
        self.fields = fields
        self.dim = sum(size for _, size, _ in layout)
        blocks = {}
        for start, size, triv in layout:
            if not triv:
                blocks.setdefault(size, []).append(start)
        # Gram entries of all blocks at once: entry p is sum_k x[left[p, k]] x[right[p, k]], rows
        # shorter than the largest irrep padded with channel `dim` (a zero appended in forward)
        width = max(blocks, default=1)
        left, right = [], []
        for size in sorted(blocks):
            starts = blocks[size]
            for i in range(len(starts)):
                for j in range(i, len(starts)):
                    pad = [self.dim] * (width - size)
                    left.append([starts[i] + k for k in range(size)] + pad)
                    right.append([starts[j] + k for k in range(size)] + pad)
        trivial = [start for start, _, triv in layout if triv]
        self.register_buffer("trivial", torch.tensor(trivial, dtype=torch.long), persistent=False)
        self.register_buffer("left", torch.tensor(left, dtype=torch.long).view(-1, width), persistent=False)
        self.register_buffer("right", torch.tensor(right, dtype=torch.long).view(-1, width), persistent=False)
        # det M_1: the channels [component, copy] of the three l = 1 copies
        self.has_det = len(blocks.get(3, [])) == 3
        det = [[start + k for start in blocks[3]] for k in range(3)] if self.has_det else []
        self.register_buffer("det_index", torch.tensor(det, dtype=torch.long).view(-1, 3), persistent=False)
        self.invariants = len(trivial) + len(left) + int(self.has_det)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        f = x.view(b, self.fields, self.dim, -1)
        f = torch.cat([f, torch.zeros_like(f[:, :, :1])], 2)
        gram = (f[:, :, self.left] * f[:, :, self.right]).sum(3)  # (B, F, pairs, V)
        out = [f[:, :, self.trivial], _signed_root(gram, 2)]
        if self.has_det:
            m = f[:, :, self.det_index]  # (B, F, 3 components, 3 copies, V)
            a, c, d = m[:, :, :, 0], m[:, :, :, 1], m[:, :, :, 2]
            cross = torch.stack([c[:, :, 1] * d[:, :, 2] - c[:, :, 2] * d[:, :, 1],
                                 c[:, :, 2] * d[:, :, 0] - c[:, :, 0] * d[:, :, 2],
                                 c[:, :, 0] * d[:, :, 1] - c[:, :, 1] * d[:, :, 0]], 2)
            out.append(_signed_root((a * cross).sum(2, keepdim=True), 3))
        y = torch.cat(out, 2)
        return y.view(b, self.fields * self.invariants, x.shape[2], x.shape[3], x.shape[4])

    def extra_repr(self) -> str:
        return f"fields={self.fields}, invariants={self.invariants}"


def _channel_index(layout, fields: int):
    """Per channel of ``fields`` spectral fields: (is_trivial mask (C,), block index (C,), n_blocks)
    numbering only the non-trivial irrep copies; trivial channels get block 0 (unused)."""
    trivial, block, nb = [], [], 0
    dim = sum(size for _, size, _ in layout)
    for _ in range(fields):
        for _, size, is_triv in layout:
            trivial += [is_triv] * size
            block += [0 if is_triv else nb] * size
            nb += 0 if is_triv else 1
    assert len(trivial) == fields * dim
    return torch.tensor(trivial), torch.tensor(block), nb


class NormELU(nn.Module):
    """Norm nonlinearity: trivial channels ``elu(x)``; each non-trivial irrep copy ``v``
    ``v * relu(|v| + b) / (|v| + eps)`` (a learned bias ``b`` per copy): only norms change, so any
    orthogonal fibre action commutes with it. Input/output ``(B, C, ...)``."""

    def __init__(self, layout, fields: int):
        super().__init__()
        trivial, block, nb = _channel_index(layout, fields)
        self.register_buffer("trivial", trivial.view(1, -1, 1, 1, 1), persistent=False)
        self.register_buffer("block", block, persistent=False)
        # (C, nb) 0/1 matrix summing squares of a block's channels
        member = torch.zeros(len(block), max(nb, 1))
        member[torch.arange(len(block))[~trivial], block[~trivial]] = 1.0
        self.register_buffer("member", member, persistent=False)
        self.bias = nn.Parameter(torch.zeros(max(nb, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norms = torch.einsum("bcxyz,cn->bnxyz", x * x, self.member).clamp_min(1e-12).sqrt()
        scale = F.relu(norms + self.bias.view(1, -1, 1, 1, 1)) / (norms + 1e-6)
        scale = scale.index_select(1, self.block)
        return torch.where(self.trivial, F.elu(x), x * scale)


class GatedELU(nn.Module):
    """Gated nonlinearity: input ``(B, C + G, ...)`` = ``C`` spectral-field channels then ``G`` gate
    scalars, one per non-trivial irrep copy; output ``(B, C, ...)``: trivial channels ``elu(x)``,
    non-trivial copies ``v * sigmoid(gate)``."""

    def __init__(self, layout, fields: int):
        super().__init__()
        trivial, block, nb = _channel_index(layout, fields)
        self.channels = len(block)
        self.gates = nb
        self.register_buffer("trivial", trivial.view(1, -1, 1, 1, 1), persistent=False)
        self.register_buffer("block", block, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x[:, : self.channels]
        gates = torch.sigmoid(x[:, self.channels:]).index_select(1, self.block)
        return torch.where(self.trivial, F.elu(v), v * gates)


class FieldNorm3d(nn.Module):
    """Zero-preserving, equivariant batch norm: per field ``f`` (a block of ``D_f`` channels
    carrying one representation), ``y = x * gamma_f / sqrt(E[|x_f|^2] + eps)``.

    ``E[|x_f|^2]`` is the mean squared norm of the field over batch and space (batch statistics in
    training, a running average with ``momentum`` in eval, as ``nn.BatchNorm3d``); ``gamma`` is a
    learnable per-field scale. A scalar per field commutes with any orthogonal fibre representation
    (equivariance), and with no mean subtraction and no bias an all-zero (background) region stays
    exactly zero, so zero padding of a feature map equals more background. Input/output
    ``(B, C, X, Y, Z)``, ``C = sum(field_sizes)``; fields are contiguous channel blocks in order.
    In eval mode it is a per-channel scaling (folded into the preceding convolution on export).
    """

    def __init__(self, field_sizes, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        sizes = [int(d) for d in field_sizes]
        if not sizes or min(sizes) < 1:
            raise ValueError(f"FieldNorm3d needs positive field sizes, got {sizes}")
        self.eps, self.momentum = float(eps), float(momentum)
        # (C,) field of each channel (a python list: also builds on the meta device)
        self.register_buffer("field", torch.tensor([f for f, d in enumerate(sizes) for _ in range(d)]),
                             persistent=False)
        self.weight = nn.Parameter(torch.ones(len(sizes)))
        self.register_buffer("running_sq", torch.ones(len(sizes)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            # mean over batch and space of each channel's square, summed per field
            sq = x.square().mean(dim=(0, 2, 3, 4))
            sq = torch.zeros_like(self.running_sq).index_add(0, self.field, sq)
            with torch.no_grad():
                self.running_sq.lerp_(sq.detach(), self.momentum)
        else:
            sq = self.running_sq
        scale = (self.weight * torch.rsqrt(sq + self.eps)).index_select(0, self.field)
        return x * scale.view(1, -1, 1, 1, 1)

    def extra_repr(self) -> str:
        return f"fields={self.weight.shape[0]}, channels={self.field.shape[0]}, eps={self.eps}, momentum={self.momentum}"


#: spatial pooling of :class:`Head`: ``mean`` (dilutes with background), ``max``, ``sum``
SPATIAL_POOLS = ("mean", "max", "sum")


class Head(nn.Module):
    """Global pooling over space, then an MLP: ``(B, C, X, Y, Z) -> (B, K)``.

    ``spatial_pool``: ``mean`` | ``max`` | ``sum`` over the voxels. With zero-preserving layers the
    features vanish far from the object, so ``max`` does not depend on how much empty space
    surrounds it once the grid holds the features' tails (a model trained on a grid that cut them
    off meets them when padded, and ``blur`` reaches further into them); ``mean`` does, and so
    does ``sum`` unless the model's margin holds the whole receptive field (a trained model sums
    the feature tails that a smaller grid cut off).
    ``blur``: sigma (voxels of this grid) of a Gaussian low-pass of the maps before pooling (0:
    none). Why: the max of a sharp map depends on where its peak falls between voxels, which a
    rotation moves; the low-pass (rotation-invariant, zero-preserving) makes the max follow the
    rotated map. ``mask`` (a :class:`BallMask3d`, or none): applied after the low-pass, so that
    the pooled voxels are the model's field of view. ``hidden`` widths each get ``Linear -> ELU -> Dropout``; the last ``Linear`` gives
    logits.
    """

    def __init__(self, in_features: int, num_classes: int, hidden=(64,), dropout: float = 0.0,
                 spatial_pool: str = "mean", blur: float = 0.0, mask: nn.Module | None = None):
        super().__init__()
        if spatial_pool not in SPATIAL_POOLS:
            raise ValueError(f"spatial_pool must be one of {SPATIAL_POOLS}, got {spatial_pool!r}")
        self.spatial_pool = spatial_pool
        self.blur = GaussianBlur3d(blur)
        self.mask = mask if mask is not None else nn.Identity()
        layers, width = [], in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ELU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.pool_space(x))

    def pool_space(self, x: torch.Tensor) -> torch.Tensor:
        """The MLP's input: ``(B, C, X, Y, Z) -> (B, C)``, low-passed, then pooled over space."""
        x = self.mask(self.blur(x))
        if self.spatial_pool == "max":
            return x.amax(dim=(2, 3, 4))
        if self.spatial_pool == "sum":
            return x.sum(dim=(2, 3, 4))
        return x.mean(dim=(2, 3, 4))

    def extra_repr(self) -> str:
        return f"spatial_pool={self.spatial_pool}, blur={self.blur.sigma}"
