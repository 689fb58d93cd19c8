"""vol3d: rotation-robust 3D deep learning on volumes.

The pipeline, as the sub-packages:

- :mod:`vol3d.data`: meshes and existing volumes in, one HDF5 dataset format out, and its loader.
- :mod:`vol3d.models`: SO(3)/O(3)-steerable 3D CNNs (escnn) and plain-CNN baselines.
- :mod:`vol3d.checkpoint` / :mod:`vol3d.models.export`: the one checkpoint format; export to plain PyTorch.
- :mod:`vol3d.rotations` / :mod:`vol3d.transforms`: the one rotation sampler and the one
  volume-rotation routine.

The most used functions are importable from here (``vol3d.voxelize``, ``vol3d.load_model``, ...);
they load their sub-packages on first use, so ``import vol3d`` stays fast.
"""

__version__ = "0.1.0"

_LAZY = {
    "voxelize": ("vol3d.data.voxelize", "voxelize"),
    "voxelize_dataset": ("vol3d.data.pipeline", "voxelize_dataset"),
    "import_volumes": ("vol3d.data.importers", "import_volumes"),
    "open_dataset": ("vol3d.data.store", "open_dataset"),
    "VolumeDataset": ("vol3d.data.dataset", "VolumeDataset"),
    "build_model": ("vol3d.models", "build_model"),
    "load_model": ("vol3d.checkpoint", "load_model"),
    "save_checkpoint": ("vol3d.checkpoint", "save_checkpoint"),
    "export": ("vol3d.models.export", "export"),
    "export_torchscript": ("vol3d.models.export", "export_torchscript"),
    "pretrained": ("vol3d.pretrained", None),  # a callable module: vol3d.pretrained("NAME") loads NAME
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    # lazy attribute access (PEP 562): escnn and torch load only when a model function is used
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        module = importlib.import_module(module)
        return module if attr is None else getattr(module, attr)
    raise AttributeError(f"module 'vol3d' has no attribute {name!r}")
