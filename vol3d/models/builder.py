"""``build_model``: steerable (escnn) classifiers over SO(3), O(3) and subgroups, and the CNN baseline.

Widths are counted in *group-grid samples per voxel*, as in escnn's reference model
(``examples/se3_3Dcnn.py``: ``fields = round(channels / |grid|)``): a stage of width ``w`` holds
``max(1, round(w / S))`` fields, each the Fourier coefficients (``D`` channels) of a band-limited
function on the group sampled on ``S`` grid points by the nonlinearity. For the CNN a width is a
channel count. So the same ``widths`` give every group the same number of activations evaluated.
"""

from __future__ import annotations

import copy

import math

import numpy as np
import torch
from torch import nn

from ..errors import UsageError
from . import groups as G
from .layers import (SPATIAL_POOLS, BallMask3d, BlurDownsample3d, GaussianBlur3d, Conv3d, EscnnLayout, FieldNorm3d, FourierELU, FourierPool,
                     InvariantPool,
                     GatedELU, Head, NormELU, conv3d_same)
from .network import ConvBN, Network, PlainBlock, ResidualBlock

NONLINEARITIES = ("fourier_elu", "gated", "norm")
POOLS = ("group", "sphere", "invariants")
INITS = ("he", "escnn_he", "delta")
NORMS = ("rms", "batch")
#: values of the options added later that reproduce models saved before them (see vol3d.checkpoint)
LEGACY = dict(norm="batch", spatial_pool="mean")

#: defaults of every option of :func:`build_model` (also the valid keys of a ``model:`` section);
#: ``architecture`` other than ``vol3d`` names a reference model (:mod:`vol3d.models.reference`),
#: which takes its own options instead of the others
DEFAULTS = dict(
    architecture="vol3d",
    widths=(48, 96, 192),
    L=1,
    grid=None,
    nonlinearity="fourier_elu",
    kernel_sizes=None,
    kernel_max_frequency=None,
    blocks=1,
    residual=False,
    sigma=0.6,
    pool="group",
    pool_features=64,
    pool_L=None,
    pool_grid=None,
    head=(64,),
    dropout=0.1,
    norm="rms",
    spatial_pool="max",
    spatial_pool_blur=0.0,
    margin=0,
    field_of_view=None,
    input_blur=0.0,
    init="he",
    match=None,
    reference="so3",
    match_resolution=32,
)


def _private_buffers(module: nn.Module) -> nn.Module:
    """A shallow copy of ``module`` (and its submodules) with its own copies of the buffers; other
    attributes (escnn's group and basis objects, which do not deep-copy) stay shared."""
    clone = copy.copy(module)
    clone._buffers = {k: None if v is None else v.clone() for k, v in module._buffers.items()}
    clone._parameters = dict(module._parameters)
    clone._modules = {k: _private_buffers(m) for k, m in module._modules.items()}
    return clone


class EscnnAdapter(nn.Module):
    """Runs an escnn module on plain tensors: ``x -> module(GeometricTensor(x, in_type)).tensor``."""

    def __init__(self, module):
        super().__init__()
        self.module = module
        # stride-1 zero-padded R3Convs run through conv3d_same (same values, faster CPU backward)
        self.same_conv = (type(module).__name__ == "R3Conv" and module.padding_mode == "zeros"
                          and module.stride == 1 and module.dilation == 1 and module.groups == 1
                          and 2 * module.padding + 1 == module.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from escnn.nn import GeometricTensor

        if self.same_conv:
            conv = self.module
            # as R3Conv.forward: escnn caches the expanded filter in eval mode, expands it in training
            weight, bias = (conv.filter, conv.expanded_bias) if not conv.training else conv.expand_parameters()
            return conv3d_same(x, weight, bias, conv.padding)
        return self.module(GeometricTensor(x, self.module.in_type)).tensor


@torch.no_grad()
def fast_he_init(conv) -> None:
    """He initialization of an escnn ``R3Conv`` in one basis expansion.

    escnn's ``generalized_he_init`` walks the basis description in python (slow for wide layers).
    Here the weights are drawn ``N(0, 1)`` and scaled by one factor so that the expanded filter has
    the He variance ``2 / fan_in``, ``fan_in = C_in k^3``. A global scale keeps the filter in the
    steerable basis, so equivariance is untouched.
    """
    conv.weights.normal_()
    filt, _ = conv.expand_parameters()
    fan_in = filt.shape[1] * int(np.prod(filt.shape[2:]))
    std = float(filt.std())
    if std > 0:
        conv.weights.mul_(math.sqrt(2.0 / fan_in) / std)
    if conv.bias is not None:
        conv.bias.zero_()


def frequency_cap(max_frequency: int):
    """A ``basis_filter`` for escnn's ``R3Conv`` that keeps the kernel basis elements of angular
    frequency ``j <= max_frequency``.

    escnn's default cut-off allows ``j <= 2`` on every ring of radius >= 1 of a 5^3 kernel: a
    ``j = 2`` harmonic on the radius-1 ring is sampled by a handful of voxels, so the sampled kernel
    is steerable only approximately, and a model trained on aligned objects can lean on the error.
    """
    return lambda attributes: abs(attributes["irrep:frequency"]) <= max_frequency


def steerable_conv(in_type, out_type, kernel_size: int, init: str = "he", max_frequency=None, **options):
    """An escnn ``R3Conv(in_type, out_type, kernel_size, **options)`` (``options``: padding, stride,
    bias, ...) with its own copy of the sampled basis, initialized by ``init`` (one of ``INITS``).
    ``max_frequency``: keep only kernel basis elements of angular frequency up to it
    (:func:`frequency_cap`); ``None``: escnn's default cut-off."""
    from escnn import nn as enn
    from escnn.nn import init as escnn_init

    if init not in INITS:
        raise UsageError(f"model option init={init!r}; choose one of {', '.join(INITS)}")
    if max_frequency is not None:
        options["basis_filter"] = frequency_cap(max_frequency)
    with G.cached_clebsch_gordan():
        conv = enn.R3Conv(in_type, out_type, kernel_size, initialize=False, **options)
    # escnn shares sampled-basis modules between convs and models through a global cache; a
    # private copy lets a checkpoint restore the exact basis it was trained with (the sampled
    # basis depends on the escnn set-up, e.g. py3nj) without touching other models
    conv._basisexpansion = _private_buffers(conv._basisexpansion)
    if init == "he":
        fast_he_init(conv)
    elif init == "escnn_he":
        escnn_init.generalized_he_init(conv.weights.data, conv.basisexpansion, cache=True)
    else:
        escnn_init.deltaorthonormal_init(conv.weights.data, conv.basisexpansion)
    return conv


class _Plain:
    """Parts of the CNN baseline: feature "types" are channel counts."""

    layout = nn.Identity

    def __init__(self, norm="rms"):
        self.norm = norm

    def fields(self, width):
        return max(1, int(round(width)))

    def input_type(self, c):
        return c

    def pre(self, f):
        return f

    def post(self, f):
        return f

    def conv(self, cin, cout, k, bias=False):
        return Conv3d(cin, cout, k, padding=k // 2, bias=bias)

    def bn(self, c):
        return FieldNorm3d([1] * c) if self.norm == "rms" else nn.BatchNorm3d(c)

    def act(self, f):
        return nn.ELU()

    def pool(self, cin, n, opts):
        if opts["pool"] != "group":
            raise UsageError(f"model option pool={opts['pool']!r} needs a steerable group")
        return nn.Sequential(ConvBN(self.conv(cin, n, 1), self.bn(n)), nn.ELU())


class _Steerable:
    """Parts of a steerable model of ``group``: feature types are escnn ``FieldType``s."""

    layout = EscnnLayout

    def __init__(self, group, opts):
        from escnn import nn as enn

        self.enn = enn
        self.group, self.L = group, int(opts["L"])
        if self.L < 0:
            raise UsageError(f"model option L must be >= 0, got {opts['L']}")
        self.gs = G.gspace(group, self.L)
        self.rho = G.spectral_representation(group, self.L)
        self.A, self.Ainv = G.fourier_matrices(group, self.L, opts["grid"])
        self.layout_irreps = G.irrep_layout(group, self.L)
        self.nonlinearity, self.init, self.norm = opts["nonlinearity"], opts["init"], opts["norm"]
        self.max_frequency = opts["kernel_max_frequency"]
        self.n_gates = sum(not triv for _, _, triv in self.layout_irreps)

    def fields(self, width):
        return max(1, int(round(width / self.A.shape[0])))

    def input_type(self, c):
        return self.enn.FieldType(self.gs, [self.gs.trivial_repr] * c)

    def post(self, f):
        return self.enn.FieldType(self.gs, [self.rho] * f)

    def pre(self, f):
        if self.nonlinearity == "gated":
            return self.enn.FieldType(self.gs, [self.rho] * f + [self.gs.trivial_repr] * (self.n_gates * f))
        return self.post(f)

    def conv(self, cin, cout, k, bias=False):
        return EscnnAdapter(steerable_conv(cin, cout, k, self.init, self.max_frequency, padding=k // 2, bias=bias))

    def bn(self, t):
        if self.norm == "rms":
            return FieldNorm3d([r.size for r in t.representations])
        return EscnnAdapter(self.enn.IIDBatchNorm3d(t, affine=True))

    def act(self, f):
        if self.nonlinearity == "fourier_elu":
            return FourierELU(torch.from_numpy(self.A), torch.from_numpy(self.Ainv), f)
        if self.nonlinearity == "norm":
            return NormELU(self.layout_irreps, f)
        return GatedELU(self.layout_irreps, f)

    def pool(self, cin, n, opts):
        L = self.L if opts["pool_L"] is None else int(opts["pool_L"])
        if opts["pool"] == "invariants":
            if self.group != "so3":
                raise UsageError("model option pool='invariants' is available for group so3 only")
            # n invariant features: n / K fields of K invariants each
            per_field = InvariantPool(G.irrep_layout(self.group, L), 1).invariants
            fields = max(1, int(round(n / per_field)))
            tout = self.enn.FieldType(self.gs, [G.spectral_representation(self.group, L)] * fields)
            return nn.Sequential(ConvBN(self.conv(cin, tout, 1), self.bn(tout)),
                                 InvariantPool(G.irrep_layout(self.group, L), fields))
        if opts["pool"] == "sphere":
            if self.group != "so3":
                raise UsageError("model option pool='sphere' is available for group so3 only")
            A, rho = G.sphere_fourier_matrix(L, 1 if opts["pool_grid"] is None else int(opts["pool_grid"]))
        else:
            A, _ = G.fourier_matrices(self.group, L, opts["pool_grid"])
            rho = G.spectral_representation(self.group, L)
        tout = self.enn.FieldType(self.gs, [rho] * n)
        return nn.Sequential(ConvBN(self.conv(cin, tout, 1), self.bn(tout)), FourierPool(torch.from_numpy(A), n))


def _per_stage(name, value, n):
    values = [value] * n if isinstance(value, (int, float)) else list(value)
    if len(values) != n:
        raise UsageError(f"model option {name} needs {n} values (one per stage), got {len(values)}")
    return values


def _validate(group, opts):
    G.check_group(group)
    unknown = sorted(set(opts) - set(DEFAULTS))
    if unknown:
        raise UsageError(f"unknown model option {unknown[0]!r}; valid options: {', '.join(sorted(DEFAULTS))}")
    full = {**DEFAULTS, **opts}
    for key, allowed in (("nonlinearity", NONLINEARITIES), ("pool", POOLS), ("init", INITS), ("norm", NORMS),
                         ("spatial_pool", SPATIAL_POOLS)):
        if full[key] not in allowed:
            raise UsageError(f"model option {key}={full[key]!r}; choose one of {', '.join(allowed)}")
    if full["match"] not in (None, "params", "compute"):
        raise UsageError(f"model option match={full['match']!r}; choose params, compute or null")
    if full["match"] is not None and group != "cnn":
        raise UsageError("model option match sizes the cnn baseline: use it with group cnn")
    if not full["widths"] or any(w <= 0 for w in full["widths"]):
        raise UsageError(f"model option widths must be positive numbers, got {full['widths']}")
    full["widths"] = tuple(full["widths"])
    if int(full["margin"]) != full["margin"] or full["margin"] < 0 or full["input_blur"] < 0:
        raise UsageError(f"model options margin (an integer) and input_blur must be >= 0, got "
                         f"{full['margin']} and {full['input_blur']}")
    blur = full["spatial_pool_blur"]
    if isinstance(blur, bool) or not isinstance(blur, (int, float)) or not blur >= 0:
        raise UsageError(f"model option spatial_pool_blur must be a number >= 0 (sigma, voxels), got {blur!r}")
    fov = full["field_of_view"]
    if fov is not None and (isinstance(fov, bool) or not isinstance(fov, (int, float)) or not fov > 0):
        raise UsageError(f"model option field_of_view must be a number > 0 (radius, input voxels) or null, got {fov!r}")
    if full["kernel_sizes"] is None:  # 5^3 stem, 3^3 after
        full["kernel_sizes"] = (5,) + (3,) * (len(full["widths"]) - 1)
    full["kernel_sizes"] = tuple(_per_stage("kernel_sizes", full["kernel_sizes"], len(full["widths"])))
    if any(k < 1 or k % 2 == 0 for k in full["kernel_sizes"]):
        raise UsageError(f"model option kernel_sizes must be odd (centred filters), got {full['kernel_sizes']}")
    cap = full["kernel_max_frequency"]
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 0):
        raise UsageError(f"model option kernel_max_frequency must be an integer >= 0 or null, got {cap!r}")
    if cap is not None and group == "cnn":
        raise UsageError("model option kernel_max_frequency limits steerable kernels: the cnn group has none")
    full["head"] = tuple(full["head"])
    return full


def _assemble(parts, group, num_classes, in_channels, o, config):
    ks = o["kernel_sizes"]
    fov = o["field_of_view"]

    def mask(stage):
        """The field of view on stage ``stage``'s grid (half the radius per downsampling)."""
        return None if fov is None else BallMask3d(float(fov) / 2 ** stage)

    def block(cur, f, k, stage):
        conv1 = ConvBN(parts.conv(cur, parts.pre(f), k), parts.bn(parts.pre(f)))
        if not o["residual"]:
            return PlainBlock(conv1, parts.act(f), mask(stage))
        conv2 = ConvBN(parts.conv(parts.post(f), parts.pre(f), k), parts.bn(parts.pre(f)))
        skip = nn.Identity() if cur == parts.pre(f) else parts.conv(cur, parts.pre(f), 1)
        return ResidualBlock(conv1, parts.act(f), conv2, parts.act(f), skip, mask(stage))

    f = parts.fields(o["widths"][0])
    stem = PlainBlock(ConvBN(parts.conv(parts.input_type(in_channels), parts.pre(f), ks[0]),
                             parts.bn(parts.pre(f))), parts.act(f), mask(0))
    cur = parts.post(f)
    stages = []
    for stage, (width, k) in enumerate(zip(o["widths"][1:], ks[1:]), start=1):
        down = BlurDownsample3d(o["sigma"])
        # parameterless, so wrapping it keeps every state-dict key
        mods = [down if fov is None else nn.Sequential(down, mask(stage))]
        for _ in range(int(o["blocks"])):
            f = parts.fields(width)
            mods.append(block(cur, f, k, stage))
            cur = parts.post(f)
        stages.append(nn.Sequential(*mods))
    last = len(o["widths"]) - 1
    pool = parts.pool(cur, int(o["pool_features"]), o)
    head = Head(_pooled_features(pool), num_classes, o["head"], float(o["dropout"]), o["spatial_pool"],
                float(o["spatial_pool_blur"]), mask(last))
    input_filter = GaussianBlur3d(float(o["input_blur"]))
    if fov is not None:  # the blur reads only the field of view, and its output is cut to it
        input_filter = nn.Sequential(mask(0), input_filter, mask(0))
    # zero-preserving models pad to a canonical size so that stage parities ignore extra empty space
    multiple = 2 ** len(o["widths"]) if o["norm"] == "rms" else 1
    return Network(parts.layout(), stem, nn.Sequential(*stages), pool, head, in_channels, group, config, multiple,
                   margin=int(o["margin"]), input_filter=input_filter)


def _pooled_features(pool: nn.Sequential) -> int:
    """Channels out of an invariant pooling block (its last module: ELU for the CNN)."""
    last = pool[-1]
    if isinstance(last, InvariantPool):
        return last.fields * last.invariants
    if isinstance(last, FourierPool):
        return last.fields
    return pool[0].conv.out_channels


def option_names(architecture: str = "vol3d") -> set:
    """The option keys :func:`build_model` accepts for ``architecture`` (besides group, num_classes
    and in_channels)."""
    if architecture == "vol3d":
        return set(DEFAULTS)
    from .reference import reference_options

    return {"architecture", *reference_options(architecture)}


def build_model(group: str = "so3", num_classes: int = 10, in_channels: int = 1, **options) -> nn.Module:
    """Build a classifier ``(B, in_channels, X, Y, Z) -> logits (B, num_classes)`` (train mode).

    Args:
        group: ``so3`` | ``o3`` | ``octa`` | ``full_octa`` | ``ico`` | ``so2`` (steerable, escnn) or
            ``cnn`` (the plain baseline with the same layout).
        num_classes, in_channels: output logits and input channels.
        **options (see ``DEFAULTS``):
            widths: per stage, in group-grid samples per voxel (module docstring); stage 0 is the
                stem at full resolution, every later stage halves the grid first.
            L: band limit of the hidden features (continuous groups; finite ones use all irreps).
            grid: grid parameter of the Fourier nonlinearity (so3/o3: ``thomson_cube`` N, 24N
                rotations; so2: number of rotations, a multiple of 4); default ~2.5 samples per
                Fourier coefficient (so3, L=1: the cube's 24 rotations, exact on them but aliasing
                off them: a model trained without rotation augmentation needs 4, or ``gated``;
                README, Results).
            nonlinearity: ``fourier_elu`` (ELU on the group grid) | ``gated`` (sigmoid gates) |
                ``norm`` (norm-ReLU); trivial channels always get ELU. ``gated`` and ``norm`` are
                exactly equivariant for every rotation (``grid`` then only counts the fields):
                trained on aligned ModelNet10, gated kept more of its accuracy under rotation than
                the Fourier ELU (README, Results).
            kernel_sizes: odd int or one per stage (default 5 for the stem, 3 after). blocks: blocks per stage after the stem.
            kernel_max_frequency: keep only kernel basis elements of angular frequency ``j`` up to
                it (:func:`frequency_cap`; ``null``: escnn's default cut-off, ``j <= 2`` on 5^3
                kernels). Smoother kernels, closer to steerable once sampled on the grid.
            residual: ResNet basic blocks (two convolutions and a skip) instead of one conv.
            sigma: anti-aliasing blur of the stride-2 downsampling (0: plain centred subsampling).
            pool: ``group`` (Fourier pooling over the group grid) | ``sphere`` (so3: over a sphere
                grid, escnn's reference pooling) | ``invariants`` (so3: the polynomial
                invariants of each field, :class:`~vol3d.models.layers.InvariantPool`: exact, and
                chirality-sensitive; ``pool_features / K`` fields of ``K`` invariants). pool_features: invariant features;
                pool_L / pool_grid: band limit and grid of the pooling (default: the hidden ones).
            head: hidden widths of the MLP; dropout: its dropout.
            norm: ``rms`` (:class:`FieldNorm3d`: per-field scaling by the running RMS norm, no mean,
                no bias, so background stays exactly zero) | ``batch`` (escnn ``IIDBatchNorm3d`` /
                ``nn.BatchNorm3d``, the behaviour before; background gets nonzero features).
            spatial_pool: the head's pooling over space, ``max`` | ``sum`` | ``mean``. With
                ``norm: rms`` ``max`` makes the logits independent of the empty space around the
                object (zero padding), as rotated evaluation needs; ``mean`` dilutes, and ``sum``
                adds the feature tails that a smaller grid cut off (caveats: :class:`Head`).
            spatial_pool_blur: sigma (voxels of the last stage) of a Gaussian low-pass of the
                pooled maps before the spatial pooling (0: none), so that the max follows a
                rotation of the maps instead of where their peaks fall between voxels.
            margin: voxels of zeros added on every side of the input, so that no feature near the
                object is cut off at the grid border (which would depend on the object's pose).
            field_of_view: radius (input voxels, about the grid centre after the margin) of the
                ball that every layer sees (:class:`~vol3d.models.layers.BallMask3d` on the input,
                after every block and downsampling, and before the spatial pooling; ``null``: the
                whole grid). A model trained on a grid that holds the ball then computes the same
                logits on any larger grid, so the zero padding of rotated evaluation costs
                nothing, and the ball turns into itself where the grid's cube does not. Set it to
                half the training grid plus the margin (e.g. 20^3, margin 2: 12).
            input_blur: sigma (voxels) of a Gaussian low-pass of the input; 0: none.
            init: ``he`` (fast, see :func:`fast_he_init`) | ``escnn_he`` | ``delta``.
            match: cnn only: ``params`` | ``compute`` scales the widths so that the number of
                parameters / the multiply-adds at ``match_resolution`` match ``reference`` (a group
                name, built with the same options, or a dict of ``build_model`` kwargs).
            architecture: ``vol3d`` (the layout above, a :class:`Network`) or the name of a reference
                model of :mod:`vol3d.models.reference` (e.g. ``escnn_se3``), built literally from
                escnn modules and taking its own options (e.g. ``multiplicity``).
    """
    architecture = options.pop("architecture", "vol3d")
    if architecture != "vol3d":
        from .reference import build_reference

        return build_reference(architecture, group, num_classes, in_channels, **options)
    o = _validate(group, options)
    if num_classes < 1 or in_channels < 1:
        raise UsageError(f"num_classes and in_channels must be >= 1, got {num_classes}, {in_channels}")
    config = {"group": group, "num_classes": num_classes, "in_channels": in_channels,
              **{k: (list(v) if isinstance(v, tuple) else v) for k, v in options.items()}}
    # recorded explicitly: checkpoints without them load with their LEGACY values
    config.update({k: o[k] for k in LEGACY})
    if group == "cnn":
        if o["match"] is not None:
            o = {**o, "widths": _matched_widths(num_classes, in_channels, o)}
            config["widths"] = list(o["widths"])
            config.pop("match", None)
            config.pop("reference", None)
            config.pop("match_resolution", None)
        return _assemble(_Plain(o["norm"]), group, num_classes, in_channels, o, config)
    return _assemble(_Steerable(group, o), group, num_classes, in_channels, o, config)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (for escnn convolutions: the steerable basis coefficients)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def count_macs(model: nn.Module, resolution: int = 32) -> int:
    """Multiply-adds of the convolutions and linear layers for one ``resolution^3`` sample
    (dense cost of the expanded steerable filters)."""
    total = [0]

    def hook(mod, inp, out):
        if isinstance(mod, nn.Linear):
            total[0] += mod.in_features * mod.out_features
            return
        weight = mod.weight if isinstance(mod, nn.Conv3d) else mod.module.filter
        total[0] += out[0].numel() * int(np.prod(weight.shape[1:]))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv3d, nn.Linear)) or
               (isinstance(m, EscnnAdapter) and type(m.module).__name__ == "R3Conv")]
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        model(torch.zeros(1, model.in_channels, resolution, resolution, resolution, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total[0]


def _matched_widths(num_classes, in_channels, o):
    """Widths ``round(s * w)`` of the cnn, ``s`` found by bisection (log scale) so that its parameter
    count / multiply-adds match the reference model's."""
    ref = o["reference"]
    ref_kwargs = dict(ref) if isinstance(ref, dict) else {"group": ref}
    base = {k: v for k, v in o.items() if k not in ("match", "reference", "match_resolution")}
    ref_kwargs = {**base, **ref_kwargs}
    ref_group = ref_kwargs.pop("group", "so3")
    if ref_group == "cnn":
        raise UsageError("model option reference must be a steerable model")
    reference = build_model(ref_group, num_classes, in_channels, **ref_kwargs)
    res = int(o["match_resolution"])
    measure = count_parameters if o["match"] == "params" else (lambda m: count_macs(m, res))
    target = measure(reference)
    plain = {k: v for k, v in base.items()}

    def widths(s):
        return tuple(max(1, int(round(s * w))) for w in o["widths"])

    def size(s):
        # on the meta device: shapes only, no compute
        with torch.device("meta"):
            cnn = _assemble(_Plain(plain["norm"]), "cnn", num_classes, in_channels, {**plain, "widths": widths(s)}, {})
        return measure(cnn)

    lo, hi = 1e-2, 1e2
    for _ in range(24):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if size(mid) < target else (lo, mid)
    best = min((lo, hi), key=lambda s: abs(size(s) - target))
    return widths(best)
