"""Does a low-pass before the head's spatial max pooling make a trained model more rotation-invariant?

Keeps a trained model's backbone (everything before the head) frozen and, for each ``--sigmas``
value, refits a fresh head (same MLP) on the training objects' pooled features, the maps
low-passed by a Gaussian of that sigma (voxels of the last stage; see ``model.spatial_pool_blur``)
before the max over space. Sigma 0 is the control: the same refit without the low-pass. Then
reports, on the val objects padded to ``--pad`` and each turned once by a random SO(3) rotation
(seed 0): accuracy aligned and rotated, agreement with the aligned prediction, and the invariance
error of the logits. Training objects are used as the run saw them (aligned, at its padding); the
val hold-out is the run's own.

    .venv/bin/python scripts/pool_blur_probe.py pretrained:modelnet10-so3-aligned --pad 56
"""

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from vol3d.data.resample import pad_volumes
from vol3d.evaluation.loading import load_classifier, load_split
from vol3d.evaluation.robustness import robustness_metrics
from vol3d.models.layers import Head
from vol3d.rotations import sample_rotations
from vol3d.transforms import rotate_volumes


def backbone_maps(module, volumes: np.ndarray, mats=None, batch_size: int = 16) -> torch.Tensor:
    """The maps the head pools, ``(N, C, X, Y, Z)``, of the volumes (turned by ``mats`` if given)."""
    out = []
    with torch.no_grad():
        for start in range(0, len(volumes), batch_size):
            x = torch.from_numpy(volumes[start:start + batch_size].astype(np.float32)).unsqueeze(1)
            if mats is not None:
                x = rotate_volumes(x, mats[start:start + batch_size])
            out.append(module.feature_maps(x))
    return torch.cat(out)


def fit_head(maps: torch.Tensor, labels: torch.Tensor, like: Head, sigma: float, epochs: int, seed: int = 0) -> Head:
    """A fresh head of ``like``'s shape with a low-pass of ``sigma`` before its max, its MLP
    trained on the pooled features of ``maps`` (AdamW, label smoothing 0.1)."""
    torch.manual_seed(seed)
    linears = [m for m in like.mlp if isinstance(m, torch.nn.Linear)]
    hidden = tuple(m.out_features for m in linears[:-1])
    dropout = next((m.p for m in like.mlp if isinstance(m, torch.nn.Dropout)), 0.0)
    head = Head(maps.shape[1], linears[-1].out_features, hidden, dropout, "max", sigma)
    with torch.no_grad():
        features = torch.cat([head.pool_space(chunk) for chunk in maps.split(64)])
    opt = torch.optim.AdamW(head.mlp.parameters(), lr=3e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for _ in range(epochs):
        head.train()
        for batch in torch.randperm(len(labels)).split(64):
            loss = F.cross_entropy(head.mlp(features[batch]), labels[batch], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return head.eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", help="checkpoint or pretrained:NAME (a vol3d Network)")
    p.add_argument("--data", default="../shared/data/modelnet10_train_32.npz")
    p.add_argument("--pad", type=int, default=28, help="grid size the val volumes are zero-padded to (default 28)")
    p.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 0.5, 1.0, 1.5])
    p.add_argument("--epochs", type=int, default=60, help="epochs of each head refit (default 60)")
    args = p.parse_args()

    clf = load_classifier(args.model)
    module = clf.module.eval()
    val = load_split(args.data, "val", clf, progress=False)
    train = load_split(args.data, "train", clf, progress=False)
    keep = ~np.isin(np.asarray(train.sources), np.asarray(val.sources))  # the run's training objects
    n = len(val.labels)
    mats = sample_rotations(n, "so3", np.random.default_rng(0))
    t0 = time.perf_counter()
    train_maps = backbone_maps(module, train.volumes[keep])
    val_volumes = pad_volumes(val.volumes, args.pad, 0.0)
    aligned_maps, rotated_maps = backbone_maps(module, val_volumes), backbone_maps(module, val_volumes, mats)
    print(f"{args.model}: {int(keep.sum())} training objects, {n} val objects padded to {args.pad}^3, "
          f"one SO(3) rotation each (seed 0); backbone {time.perf_counter() - t0:.0f} s")
    labels = torch.from_numpy(train.labels[keep]).long()
    outputs = [str(c) for c in range(len(val.classes))]
    print(f"{'head':44s} {'aligned':>8s} {'rotated':>8s} {'same pred':>10s} {'inv. error':>11s}")

    def report(name: str, head: Head) -> None:
        with torch.no_grad():
            a, r = head(aligned_maps).double().numpy(), head(rotated_maps).double().numpy()
        m = robustness_metrics(a, r[:, None], val.labels, outputs, np.zeros((n, 1)))
        print(f"{name:44s} {m['accuracy_aligned']:8.1%} {m['accuracy_rotated']:8.1%} "
              f"{m['prediction_consistency']:10.1%} {m['invariance_error']:11.3f}", flush=True)

    report(f"trained head ({module.head.extra_repr()})", module.head)
    for sigma in args.sigmas:
        report(f"refit, low-pass sigma {sigma:g}", fit_head(train_maps, labels, module.head, sigma, args.epochs))


if __name__ == "__main__":
    main()
