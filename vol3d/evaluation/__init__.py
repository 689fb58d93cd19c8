"""Evaluation under rotations: ``vol3d evaluate`` and ``vol3d compare`` as a Python API.

>>> from vol3d.evaluation import evaluate, compare
>>> report = evaluate("runs/tetris-so3/best.pt", "builtin:tetris", rotations="so3", out="eval/so3")  # doctest: +SKIP
>>> print(compare([report, "eval/cnn/report.json"]))                                              # doctest: +SKIP

=========================  =====================================================================
:func:`evaluate`           aligned vs rotated accuracy, consistency, invariance error, TTA, report
:func:`compare`            reports side by side (model, group, params, accuracies, consistency)
:mod:`.robustness`         the metrics and the seeded rotations per sample
:mod:`.loading`            MODEL (checkpoint, TorchScript, ``pretrained:NAME``) and DATA inputs
:mod:`.exact`              ``--exact``: re-voxelized rotated source meshes
:mod:`.report`, `.plots`   ``report.json``, ``report.md``, the PNG figures
=========================  =====================================================================
"""

from .compare import compare, read_report  # light (no torch); also shadows the submodule name

_LAZY = {
    "load_classifier": "loading",
    "draw_rotations": "robustness", "evaluate": "robustness", "robustness_metrics": "robustness",
}

__all__ = ["compare", "read_report", *sorted(_LAZY)]


def __getattr__(name):
    # lazy (PEP 562): the CLI imports vol3d.evaluation.cli to build its parser without loading torch
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
