"""How close a resampled rotation of a voxel grid is to voxelizing the rotated mesh.

``vol3d evaluate`` rotates stored grids by resampling them (trilinear); a real object arriving in a
new pose is voxelized in that pose. For each mesh (solid occupancy at ``--resolution``, ``fit``
sphere) and ``-k`` random SO(3) rotations ``R`` (seed 0), this compares the re-voxelized grid
``voxelize(mesh, rotation=R)`` with three resamplings of the aligned grid: trilinear, trilinear
thresholded at 0.5 (binary again, like the data) and nearest. It prints the mean relative difference
``|resampled - revoxelized| / |revoxelized|`` after a Gaussian low-pass of ``sigma`` voxels (a
model's ``input_blur``), and, for scale, the same for the aligned grid left unturned.

    .venv/bin/python scripts/resampling_vs_revoxelizing.py ../shared/data/meshes/*.off
"""

import argparse

import numpy as np
import torch

from vol3d.data.meshes import load_mesh
from vol3d.data.voxelize import voxelize
from vol3d.evaluation.robustness import relative_change
from vol3d.models.layers import GaussianBlur3d
from vol3d.rotations import sample_rotations
from vol3d.transforms import rotate_volumes

RESAMPLINGS = {
    "trilinear": lambda x, mats: rotate_volumes(x, mats),
    "trilinear >= 0.5": lambda x, mats: (rotate_volumes(x, mats) >= 0.5).float(),
    "nearest": lambda x, mats: rotate_volumes(x, mats, mode="nearest"),
    "not turned": lambda x, mats: x,
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("meshes", nargs="+", help="mesh files (any format vol3d voxelize reads)")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("-k", type=int, default=12, help="rotations per mesh (default 12)")
    p.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 0.87, 1.2])
    args = p.parse_args()

    rng = np.random.default_rng(0)
    errors = {name: [] for name in RESAMPLINGS}  # per mesh: (len(sigmas),) means over rotations
    r = args.resolution
    blurs = [GaussianBlur3d(s) for s in args.sigmas]
    for path in args.meshes:
        mesh = load_mesh(path)
        mats = sample_rotations(args.k, "so3", rng)
        aligned = torch.from_numpy(voxelize(mesh, r, "solid").astype(np.float32)).expand(args.k, 1, r, r, r)
        revoxelized = torch.from_numpy(np.stack([voxelize(mesh, r, "solid", rotation=m) for m in mats])
                                       .astype(np.float32)).unsqueeze(1)
        references = [blur(revoxelized).flatten(1).numpy() for blur in blurs]  # once per mesh
        for name, resample in RESAMPLINGS.items():
            resampled = resample(aligned.contiguous(), mats)
            errors[name].append([relative_change(ref, blur(resampled).flatten(1).numpy()).mean()
                                 for ref, blur in zip(references, blurs)])
    print(f"{len(args.meshes)} meshes at {r}^3 (solid), {args.k} SO(3) rotations each (seed 0): "
          "mean |resampled - revoxelized| / |revoxelized|")
    print(f"{'resampling':18s} " + " ".join(f"sigma {s:<5g}" for s in args.sigmas))
    for name, rows in errors.items():
        print(f"{name:18s} " + " ".join(f"{e:11.3f}" for e in np.mean(rows, axis=0)))


if __name__ == "__main__":
    main()
