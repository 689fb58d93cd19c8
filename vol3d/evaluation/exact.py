"""``--exact``: rotated samples made by re-voxelizing the rotated source mesh, not by resampling voxels.

A vol3d dataset made by ``vol3d voxelize`` (or a ``builtin:`` dataset) stores, per sample, its
source (a mesh path or ``builtin:NAME/class/i``) and the rotation it was voxelized with (stored
rotated copies included). The rotated sample ``R x`` is then ``voxelize(mesh, rotation=R @ R_stored)``
with the file's resolution, representation and ``fit=sphere`` normalization (rotation-invariant
centre and scale, so only the pose changes). Imported volumes carry no meshes: there ``--exact``
stops with a message.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UsageError, Vol3dError
from .loading import EvalData


def _mesh_loaders(sources) -> dict:
    """``source -> callable returning the mesh`` for every distinct source; raises when one has no mesh."""
    from ..data.builtin import BUILTIN_NAMES, builtin_meshes
    from ..data.meshes import load_mesh

    loaders, builtin = {}, {}
    for i, source in enumerate(sources):
        if source in loaders:
            continue
        if source.startswith("builtin:"):
            name = source[len("builtin:"):].split("/", 1)[0]
            if name in BUILTIN_NAMES and name not in builtin:
                builtin[name] = {item.source: item for item in builtin_meshes(name)}
            item = builtin.get(name, {}).get(source)
            if item is not None:
                loaders[source] = item.load
                continue
        elif Path(source).is_file():
            loaders[source] = lambda path=source: load_mesh(path)
            continue
        raise Vol3dError(f"--exact: the source mesh of sample {i} ({source}) is not available; "
                         "evaluate without --exact (rotations are then resampled)")
    return loaders


def revoxelizer(data: EvalData):
    """A function ``(index (B,), mats (B, 3, 3)) -> (B, R, R, R)``: sample ``index[b]`` voxelized
    under rotation ``mats[b]`` (composed with its stored rotation) at ``data.resolution``."""
    from ..data.voxelize import FITS, REPRESENTATIONS, voxelize

    if data.representation not in REPRESENTATIONS or data.normalization not in FITS:
        raise UsageError(f"--exact needs source meshes, but {data.file} holds imported volumes "
                         f"(representation {data.representation!r}, normalization {data.normalization!r}); evaluate without --exact")
    if data.normalization != "sphere":
        raise UsageError(f"--exact needs data voxelized with --fit sphere (rotation-invariant scale); "
                         f"{data.file} used {data.normalization!r}")
    loaders = _mesh_loaders(data.sources)
    meshes = {}

    def mesh(source):
        if source not in meshes:
            meshes[source] = loaders[source]()
        return meshes[source]

    def run(index, mats):
        grids = [voxelize(mesh(data.sources[i]), resolution=data.resolution, representation=data.representation,
                          fit="sphere", rotation=np.asarray(m) @ data.stored_rotations[i])
                 for i, m in zip(index, mats)]
        return np.stack(grids)

    return run
