"""Data in: meshes and existing volumes to one HDF5 dataset format, and its torch loader.

=========================  ==================================================================
:func:`voxelize`           one mesh (or path) to an ``(R, R, R)`` grid: solid, surface or sdf
:func:`voxelize_dataset`   a whole mesh dataset (folder, CSV, ``builtin:``) to a vol3d HDF5 file
:func:`import_volumes`     existing volumes (npz, HDF5, binvox/npy folders) to the same format
:func:`open_dataset`       read and validate a vol3d HDF5 file
:class:`VolumeDataset`     the torch ``Dataset`` over one split
:func:`dataset_info`       counts, classes and occupancy statistics (``vol3d info``)
:func:`render_sample`      one sample to a PNG (``vol3d show``)
=========================  ==================================================================
"""

from .dataset import VolumeDataset
from .importers import import_volumes
from .inspect import dataset_info, format_info, render_sample
from .meshes import load_mesh
from .pipeline import voxelize_dataset
from .sources import MeshSource, discover_sources
from .store import DatasetWriter, open_dataset
from .voxelize import voxelize

__all__ = [
    "DatasetWriter",
    "MeshSource",
    "VolumeDataset",
    "dataset_info",
    "discover_sources",
    "format_info",
    "import_volumes",
    "load_mesh",
    "open_dataset",
    "render_sample",
    "voxelize",
    "voxelize_dataset",
]
