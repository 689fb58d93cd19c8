"""Where a model's rotation error comes from: the network, or the resampling of its input.

Evaluates one classifier on the val objects of ModelNet10 (padded to ``--pad`` voxels), each
turned once (seed 0) by:

* a cube rotation (an exact axis permutation: no resampling),
* ``R`` then ``R^T`` (two trilinear resamplings, no net rotation: the cost of resampling alone),
* a random rotation about z, and a random SO(3) rotation.

and prints accuracy, agreement with the aligned prediction and the invariance error
(``|f(Tx) - f(x)| / |f(x)|``) for each. A model that is exact on the cube's rotations but loses
much more on random rotations than on the round trip is not equivariant off the cube's rotations.

    .venv/bin/python scripts/invariance_sources.py pretrained:modelnet10-so3-aligned-cpu
"""

import argparse

import numpy as np
import torch

from vol3d.data.resample import pad_volumes
from vol3d.evaluation.loading import load_classifier, load_split
from vol3d.rotations import cube_rotations, rotation_about_z, sample_rotations
from vol3d.transforms import rotate_volumes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", help="checkpoint, exported model or pretrained:NAME")
    p.add_argument("--data", default="../shared/data/modelnet10_train_32.npz")
    p.add_argument("--split", default="val")
    p.add_argument("--pad", type=int, default=28, help="grid size the volumes are zero-padded to (default 28)")
    args = p.parse_args()

    clf = load_classifier(args.model)
    data = load_split(args.data, args.split, clf, progress=False)
    volumes, labels, n = pad_volumes(data.volumes, args.pad, 0.0), data.labels, len(data.labels)
    rng = np.random.default_rng(0)
    so3 = sample_rotations(n, "so3", rng)
    cube = cube_rotations()[rng.integers(1, 24, n)]  # never the identity
    about_z = rotation_about_z(rng.uniform(0, 2 * np.pi, n))
    back = so3.transpose(0, 2, 1)

    @torch.no_grad()
    def logits(turn) -> np.ndarray:
        out = []
        for s in range(0, n, 32):
            x = torch.from_numpy(volumes[s:s + 32].astype(np.float32)).unsqueeze(1)
            out.append(clf.module.eval()(turn(x, slice(s, s + 32))).double().numpy())
        return np.concatenate(out)

    aligned = logits(lambda x, i: x)
    cases = {"aligned (padded)": aligned,
             "cube rotation (exact)": logits(lambda x, i: rotate_volumes(x, cube[i])),
             "R then R^T (resampling only)": logits(lambda x, i: rotate_volumes(rotate_volumes(x, so3[i]), back[i])),
             "random rotation about z": logits(lambda x, i: rotate_volumes(x, about_z[i])),
             "random SO(3) rotation": logits(lambda x, i: rotate_volumes(x, so3[i]))}
    print(f"{args.model} on {args.data} ({args.split}, {n} objects, padded to {args.pad}^3)")
    print(f"{'input':30s} {'accuracy':>9s} {'same pred':>10s} {'inv. error':>11s}")
    for name, z in cases.items():
        error = np.linalg.norm(z - aligned, axis=1) / np.linalg.norm(aligned, axis=1)
        print(f"{name:30s} {(z.argmax(1) == labels).mean():9.1%} {(z.argmax(1) == aligned.argmax(1)).mean():10.1%} "
              f"{error.mean():11.3f}")


if __name__ == "__main__":
    main()
