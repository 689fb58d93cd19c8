"""``model:`` sections of the YAML configs -> :func:`build_model` keyword arguments, and named presets.

A section is a mapping with ``group`` and any :data:`vol3d.models.DEFAULTS` option, or ``preset``
naming an entry of :data:`PRESETS` (its options are then overridden by the other keys)::

    model:
      preset: escnn_se3        # or: group: so3, widths: [48, 96, 192], L: 1, ...

A preset with an ``architecture`` (``escnn_se3``) is a reference model of
:mod:`vol3d.models.reference`, which takes its own options (``multiplicity``, ``dropout``, ``init``).
"""

from __future__ import annotations

from ..errors import UsageError
from .builder import build_model, option_names
from .groups import check_group

#: named architectures (``configs/models/<name with - for _>.yaml`` mirror them for users)
PRESETS = {
    # the default: small enough to train on 2 CPU cores at 32^3
    "small_so3": dict(group="so3"),
    # vol3d's layout at escnn_se3's widths: stem 5^3, four residual stages of widths 200/480/480/960
    # (fields = round(width / 96)), Fourier ELU with L=2 on the 96-element thomson_cube grid
    # ('2_96'), anti-aliased stride-2 downsampling with sigma 0.33, pooling over the 24 snub-cube
    # points of the sphere (L=2) to 128 invariants, MLP 256-128 with dropout 0.1
    "large_so3": dict(group="so3", widths=[96, 200, 480, 480, 960], L=2, grid=4, kernel_sizes=[5, 3, 3, 3, 3],
                      residual=True, sigma=0.33, pool="sphere", pool_features=128, pool_L=2, pool_grid=1,
                      head=[256, 128], dropout=0.1),
    # escnn's reference SE(3) model, examples/se3_3Dcnn.py, built literally from escnn modules
    "escnn_se3": dict(group="so3", architecture="escnn_se3"),
}


def model_kwargs(section, num_classes: int | None = None) -> dict:
    """Resolve a ``model:`` section (dict) to ``build_model`` kwargs; validates every key."""
    if not isinstance(section, dict):
        raise UsageError(f"model section must be a mapping, got {type(section).__name__}")
    section = dict(section)
    preset = section.pop("preset", None)
    if preset is not None:
        if preset not in PRESETS:
            raise UsageError(f"unknown model preset {preset!r}; choose one of {', '.join(PRESETS)}")
        section = {**PRESETS[preset], **section}
    allowed = option_names(section.get("architecture", "vol3d")) | {"group", "num_classes", "in_channels"}
    for key in section:
        if key not in allowed:
            raise UsageError(f"unknown model option {key!r} in model section; valid: {', '.join(sorted(allowed))}")
    check_group(section.setdefault("group", "so3"))
    if num_classes is not None:
        section["num_classes"] = num_classes
    return section


def model_from_config(section, num_classes: int | None = None):
    """Build the model a ``model:`` section describes (``num_classes`` overrides the section's)."""
    return build_model(**model_kwargs(section, num_classes))
