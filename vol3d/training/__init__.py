"""Training: ``vol3d train`` as a Python API.

>>> from vol3d.training import train
>>> summary = train("configs/demo.yaml", out="runs/demo")          # doctest: +SKIP
>>> summary["best_val_acc"], summary["checkpoints"]["best"]         # doctest: +SKIP

=========================  ====================================================================
:func:`train`              run (or resume) a training run from a YAML config or a dict
:func:`load_config`        the resolved, validated config (defaults filled in, overrides applied)
:mod:`.config`             the schema (:data:`~.config.SCHEMA`) and :class:`~.config.ConfigError`
:mod:`.data`               the ``data:`` section: HDF5 / npz / ``builtin:`` data, validation split
:mod:`.augment`            batch rotation augmentation on the training device
:mod:`.distributed`        ``torchrun`` (DDP) support
=========================  ====================================================================
"""

from .config import SCHEMA, ConfigError, defaults, dump_config, load_config
from .loop import TrainingError, TrainingInterrupted, train

__all__ = ["SCHEMA", "ConfigError", "TrainingError", "TrainingInterrupted", "defaults", "dump_config",
           "load_config", "train"]
