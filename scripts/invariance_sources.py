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
from vol3d.evaluation.robustness import logits_of, robustness_metrics
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

    module = clf.module.eval()

    def run(inputs, mats) -> np.ndarray:  # logits (n, C), the batching of vol3d evaluate
        return logits_of(module, inputs, np.arange(n), mats, batch_size=32)

    def stored(index, mats):
        return torch.from_numpy(volumes[index].astype(np.float32)).unsqueeze(1)

    def turned(index, mats):
        return rotate_volumes(stored(index, mats), mats)

    aligned = run(stored, np.repeat(np.eye(3)[None], n, axis=0))
    cases = {"aligned (padded)": aligned,
             "cube rotation (exact)": run(turned, cube),
             "R then R^T (resampling only)": run(lambda i, m: rotate_volumes(turned(i, m), m.transpose(0, 2, 1)), so3),
             "random rotation about z": run(turned, about_z),
             "random SO(3) rotation": run(turned, so3)}
    print(f"{args.model} on {args.data} ({args.split}, {n} objects, padded to {args.pad}^3)")
    print(f"{'input':30s} {'accuracy':>9s} {'same pred':>10s} {'inv. error':>11s}")
    outputs = [str(c) for c in range(aligned.shape[1])]
    for name, z in cases.items():  # vol3d evaluate's metrics, one "draw" per case
        m = robustness_metrics(aligned, z[:, None], labels, outputs, np.zeros((n, 1)))
        print(f"{name:30s} {m['accuracy_rotated']:9.1%} {m['prediction_consistency']:10.1%} "
              f"{m['invariance_error']:11.3f}")


if __name__ == "__main__":
    main()
