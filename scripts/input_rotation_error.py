"""How far a turned low-resolution volume is from the low-resolution volume of the turned object.

Takes every ``--every``-th volume of an ``.npz`` (``volumes`` key, high resolution ``N^3``), pads
it, and compares, for one random rotation ``R`` per volume (seed 0):

* reference: turn the ``N^3`` volume, then area-average to ``(N/2)^3`` (closer to the object turned),
* fast: area-average to ``(N/2)^3``, then turn (what rotated evaluation at ``(N/2)^3`` feeds a model),

both after a Gaussian low-pass of ``sigma`` voxels (a model's ``input_blur``), and prints the mean
relative difference ``|fast - reference| / |reference|`` per sigma, for SO(3) rotations and for
rotations about z. A model can be no more invariant than its input allows.

    .venv/bin/python scripts/input_rotation_error.py ../shared/data/modelnet10_train_32.npz
"""

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from vol3d.evaluation.robustness import relative_change
from vol3d.models.layers import GaussianBlur3d
from vol3d.rotations import rotation_about_z, sample_rotations
from vol3d.transforms import rotate_volumes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("npz", help=".npz with a 'volumes' array (M, N, N, N), N even")
    p.add_argument("--every", type=int, default=30, help="use every k-th volume (default 30)")
    p.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 0.87, 1.2, 1.5])
    args = p.parse_args()

    with np.load(args.npz) as f:
        volumes = f["volumes"][:: args.every].astype(np.float32)
    n, size = len(volumes), volumes.shape[-1]
    x = F.pad(torch.from_numpy(volumes).unsqueeze(1), (size // 4,) * 6)  # room to turn the corners
    rng = np.random.default_rng(0)
    print(f"{args.npz}: {n} volumes at {size}^3, compared at {(x.shape[-1]) // 2}^3")
    print(f"{'rotations':10s} " + " ".join(f"sigma {s:<5g}" for s in args.sigmas))
    with torch.no_grad():
        for name, rotations in (("SO(3)", sample_rotations(n, "so3", rng)),
                                ("about z", rotation_about_z(rng.uniform(0, 2 * np.pi, n)))):
            reference = F.avg_pool3d(rotate_volumes(x, rotations), 2)
            fast = rotate_volumes(F.avg_pool3d(x, 2), rotations)
            errors = []
            for sigma in args.sigmas:
                blur = GaussianBlur3d(sigma)  # sigma 0: the identity
                errors.append(relative_change(blur(reference).flatten(1).numpy(),
                                              blur(fast).flatten(1).numpy()).mean())
            print(f"{name:10s} " + " ".join(f"{e:11.3f}" for e in errors))


if __name__ == "__main__":
    main()
