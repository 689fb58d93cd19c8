"""vol3d's classifiers: steerable 3D CNNs (escnn) over SO(3), O(3) and subgroups, and a plain baseline.

>>> from vol3d.models import build_model
>>> model = build_model("so3", num_classes=10)            # doctest: +SKIP
>>> logits = model(torch.rand(4, 1, 32, 32, 32))          # (4, 10)  # doctest: +SKIP

See :func:`build_model` for the options and :func:`model_from_config` for YAML ``model:`` sections.
"""

from .builder import DEFAULTS, build_model, count_macs, count_parameters
from .config import PRESETS, model_from_config, model_kwargs
from .groups import MODEL_GROUPS, STEERABLE_GROUPS, grid_symmetries
from .network import Network

__all__ = [
    "DEFAULTS", "MODEL_GROUPS", "Network", "PRESETS", "STEERABLE_GROUPS", "build_model", "count_macs",
    "count_parameters", "grid_symmetries", "model_from_config", "model_kwargs",
]
