"""Rotation robustness of a classifier: :func:`evaluate`, the engine of ``vol3d evaluate``.

For each of the ``N`` samples, ``K`` rotations ``R_ik`` are drawn from the chosen group with
``default_rng([seed, i])`` (:func:`draw_rotations`): the same rotations for every model evaluated
with the same seed and data, so reports compare. The model sees the aligned volume ``x_i`` and
every rotated ``R_ik x_i``, rotated by :func:`vol3d.transforms.rotate_volumes` (the routine
training uses): the 48 cube symmetries are exact axis permutations, other rotations trilinear
resampling, on a grid padded first (with the representation's background value) so that no occupied voxel leaves it
(:func:`vol3d.data.resample.rotation_safe_size`). With ``exact=True`` the rotated source meshes
are re-voxelized instead (:mod:`.exact`).

With logits ``a_i = f(x_i)``, ``r_ik = f(R_ik x_i)``, labels ``y_i`` and predictions ``argmax``:

==========================  =================================================================
``accuracy_aligned``        ``mean_i [argmax a_i = y_i]`` (on the volumes as stored; when the grid was
                            padded for rotation, ``accuracy_aligned_padded`` is that of the padded
                            ``x_i``, the reference of consistency and invariance error)
``accuracy_rotated``        ``mean_ik [argmax r_ik = y_i]``
``accuracy_rotated_std``    standard deviation over the draws ``k`` of ``mean_i [argmax r_ik = y_i]``
``prediction_consistency``  fraction of samples whose prediction is the same for ``x_i`` and all ``R_ik x_i``
``invariance_error``        ``mean_ik |r_ik - a_i| / |a_i|`` (Euclidean norms of the logit vectors)
``accuracy_tta``            with ``tta = T``: accuracy of ``mean_j f(S_ij R_ik x_i)`` over ``T``
                            further rotations ``S_ij`` of the same group (one resampling of
                            ``x_i`` by the product)
==========================  =================================================================
"""

from __future__ import annotations

import time

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.voxelize import background_value
from ..errors import UsageError
from ..rotations import GROUPS, rotation_angle, sample_rotations
from ..transforms import rotate_volumes, signed_permutation
from .loading import Classifier, EvalData, load_classifier, load_split

#: elements of the finite groups: up to this many rotations per sample are drawn without repetition
FINITE_ORDER = {"octa": 24, "full_octa": 48}
ANGLE_BIN_DEGREES = 15.0
INTERPOLATION = "trilinear (grid_sample, align_corners=True, zeros outside the grid)"


def draw_rotations(num_samples: int, k: int, group: str, seed: int, stream: int = 0) -> np.ndarray:
    """``(num_samples, k, 3, 3)``: the rotations of sample ``i`` come from ``default_rng([seed, i, stream])``,
    so they do not depend on the model, the batch size or the other samples. Finite groups give
    distinct elements per sample when ``k`` allows."""
    replace = k > FINITE_ORDER.get(group, 0)
    out = np.empty((num_samples, k, 3, 3))
    for i in range(num_samples):
        out[i] = sample_rotations(k, group, np.random.default_rng([seed, i, stream]), replace=replace)
    return out


def is_exact(mats) -> np.ndarray:
    """``(...)`` bool: which rotations ``(..., 3, 3)`` are cube symmetries (rotated exactly, no interpolation)."""
    mats = np.asarray(mats)
    flat = mats.reshape(-1, 3, 3)
    return np.array([signed_permutation(m) is not None for m in flat], dtype=bool).reshape(mats.shape[:-2])


class _Inputs:
    """Model inputs for (sample index, rotation) pairs: rotated voxel grids, or re-voxelized meshes."""

    def __init__(self, volumes: np.ndarray, device, revoxelize=None, background: float = 0.0):
        self.volumes, self.device, self.revoxelize, self.background = volumes, device, revoxelize, background

    def __call__(self, index: np.ndarray, mats: np.ndarray) -> torch.Tensor:
        if self.revoxelize is not None:
            grids = self.revoxelize(index, mats)
            return torch.from_numpy(grids.astype(np.float32)).unsqueeze(1).to(self.device)
        x = torch.from_numpy(self.volumes[index].astype(np.float32)).unsqueeze(1).to(self.device)
        return rotate_volumes(x, mats, background=self.background)


@torch.no_grad()
def logits_of(model, inputs, index: np.ndarray, mats: np.ndarray, batch_size: int, bar=None) -> np.ndarray:
    """``(M, C)`` float64 logits of the inputs ``(index[m], mats[m])``, ``batch_size`` at a time."""
    out = []
    for start in range(0, len(index), batch_size):
        stop = start + batch_size
        out.append(model(inputs(index[start:stop], mats[start:stop])).double().cpu().numpy())
        if bar is not None:
            bar.update(len(index[start:stop]))
    return np.concatenate(out) if out else np.zeros((0, 0))


# ----------------------------------------------------------------------------------- metrics


def confusion(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """``(C, C)`` counts: row = true class, column = predicted class."""
    return np.bincount(labels * num_classes + preds, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def accuracy_by_angle(angles_deg: np.ndarray, correct: np.ndarray, width: float = ANGLE_BIN_DEGREES) -> list:
    """Accuracy of the rotated predictions in rotation-angle bins ``[a, a + width)`` over [0, 180] degrees."""
    edges = np.arange(0.0, 180.0 + width / 2, width)
    which = np.clip(np.digitize(angles_deg.ravel(), edges) - 1, 0, len(edges) - 2)
    count = np.bincount(which, minlength=len(edges) - 1)
    hits = np.bincount(which, weights=correct.ravel().astype(float), minlength=len(edges) - 1)
    return [{"from_deg": float(lo), "to_deg": float(hi), "count": int(n),
             "accuracy": float(h / n) if n else None}
            for lo, hi, n, h in zip(edges[:-1], edges[1:], count, hits)]


def relative_change(reference: np.ndarray, changed: np.ndarray) -> np.ndarray:
    """``|changed - reference| / |reference|`` over the last axis (Euclidean norms; broadcasts)."""
    norm = np.maximum(np.linalg.norm(reference, axis=-1), 1e-12)
    return np.linalg.norm(changed - reference, axis=-1) / norm


def robustness_metrics(aligned: np.ndarray, rotated: np.ndarray, labels: np.ndarray, classes: list,
                       angles_deg: np.ndarray) -> dict:
    """The metrics of the module docstring from logits ``aligned (N, C)``, ``rotated (N, K, C)``,
    ``labels (N,)`` (output indices), ``classes`` (C names) and rotation angles ``(N, K)``."""
    num_classes = len(classes)
    pred_a, pred_r = aligned.argmax(-1), rotated.argmax(-1)
    ok_a, ok_r = pred_a == labels, pred_r == labels[:, None]
    change = relative_change(aligned[:, None], rotated)
    consistent = (pred_r == pred_a[:, None]).all(axis=1)
    per_class = {}
    for c, name in enumerate(classes):
        mine = labels == c
        if mine.any():
            per_class[name] = {"count": int(mine.sum()), "accuracy_aligned": float(ok_a[mine].mean()),
                               "accuracy_rotated": float(ok_r[mine].mean()),
                               "prediction_consistency": float(consistent[mine].mean())}
    per_draw = ok_r.mean(axis=0)
    return {
        "accuracy_aligned": float(ok_a.mean()),
        "accuracy_rotated": float(ok_r.mean()),
        "accuracy_rotated_std": float(per_draw.std()),
        "accuracy_rotated_per_draw": [float(a) for a in per_draw],
        "prediction_consistency": float(consistent.mean()),
        "invariance_error": float(change.mean()),
        "invariance_error_max": float(change.max()),
        "per_class": per_class,
        "confusion_aligned": confusion(labels, pred_a, num_classes).tolist(),
        "confusion_rotated": confusion(np.repeat(labels, rotated.shape[1]), pred_r.ravel(), num_classes).tolist(),
        "accuracy_by_angle": accuracy_by_angle(angles_deg, ok_r),
    }


# ----------------------------------------------------------------------------------- evaluate


def _check_arguments(rotations, num_rotations, seed, tta, batch_size) -> None:
    if rotations not in GROUPS:
        raise UsageError(f"--rotations must be one of {', '.join(GROUPS)}, got {rotations!r}")
    for name, value, low in (("--num-rotations", num_rotations, 1), ("--seed", seed, 0), ("--tta", tta, 0),
                             ("--batch-size", batch_size, 1)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise UsageError(f"{name} must be an integer >= {low}, got {value!r}")
    if tta and rotations == "none":
        raise UsageError("--tta averages over rotations of the --rotations group; it needs a group other than none")


def _device(name) -> torch.device:
    from ..training.config import ConfigError
    from ..training.distributed import resolve_device

    try:
        return resolve_device(str(name or "auto"))
    except ConfigError:
        raise UsageError(f"device {name!r} is not available here") from None


def _padding(data: EvalData, mats: np.ndarray, exact: bool) -> dict:
    """Zero-pad ``data.volumes`` in place (attribute) when interpolated rotations could cut off voxels."""
    from ..data.resample import pad_volumes, rotation_safe_size

    size = data.volumes.shape[1]
    record = {"applied": False, "from": size, "to": size, "voxels_per_side": 0}
    if exact:
        record["why_not"] = "re-voxelized meshes are normalized into the grid's inscribed sphere"
        return record
    if is_exact(mats).all():
        record["why_not"] = "every rotation is a cube symmetry (an exact permutation of the grid)"
        return record
    fill = background_value(data.representation)
    target = rotation_safe_size(data.volumes, fill)
    if target == size:
        record["why_not"] = "the occupied voxels already fit the grid under any rotation"
        return record
    data.volumes = pad_volumes(data.volumes, target, fill)
    record.update(applied=True, to=target, voxels_per_side=(target - size) // 2, fill=fill,
                  why=f"padded {size}^3 -> {target}^3 with the background value {fill:g} so that no "
                      "occupied voxel leaves the grid under rotation")
    return record


def evaluate(model, data, *, split: str = "test", rotations: str = "so3", num_rotations: int = 8, seed: int = 0,
             tta: int = 0, batch_size: int = 32, out=None, exact: bool = False, device=None,
             progress: bool = True) -> dict:
    """Evaluate a classifier on aligned and rotated copies of a data split; returns the report dict.

    Args:
        model: a checkpoint path, an exported TorchScript path, ``"pretrained:NAME"``, or a model
            (``nn.Module`` with optional ``classes``; it is moved to ``device``).
        data: anything ``vol3d train`` accepts: a vol3d HDF5 file, an importable ``.npz``, ``builtin:NAME``.
        split: the split to evaluate.
        rotations: the group the rotations come from (``none | z | so3 | o3 | octa | full_octa``).
        num_rotations: rotations ``K`` per sample.
        seed: seeds the rotations (see :func:`draw_rotations`).
        tta: ``T > 0`` also reports test-time augmentation over ``T`` rotations (costs ``T``x).
        batch_size: volumes per forward pass.
        out: folder for ``report.json``, ``report.md``, the plots and ``draws.npz`` (None: nothing written).
        exact: re-voxelize the rotated source meshes instead of rotating voxel grids.
        device: ``auto`` (default) | ``cpu`` | ``cuda`` | ``cuda:N`` | ``mps``.
        progress: show a progress bar.

    Returns:
        The report: the keys of the module docstring plus ``per_class``, ``confusion_aligned`` /
        ``confusion_rotated`` (rows: true class), ``accuracy_by_angle``, ``rotation_method`` (which
        rotations were exact / interpolated / re-voxelized), ``padding``, ``notes`` and the inputs.
    """
    _check_arguments(rotations, num_rotations, seed, tta, batch_size)
    started = time.time()
    clf = _classifier(model)
    dev = _device(device)
    evaldata = load_split(str(data), split, clf, progress=progress)
    n, k = len(evaldata.labels), num_rotations
    mats = draw_rotations(n, k, rotations, seed)
    tta_mats = draw_rotations(n, tta, rotations, seed, stream=1) if tta else np.zeros((n, 0, 3, 3))
    revoxelize = None
    if exact:
        from .exact import revoxelizer

        revoxelize = revoxelizer(evaldata)
    original = evaldata.volumes
    padding = _padding(evaldata, np.concatenate([mats, tta_mats], axis=1), exact)
    module = clf.module.to(dev).eval()
    inputs = _Inputs(evaldata.volumes, dev, revoxelize, background_value(evaldata.representation))
    eye = np.repeat(np.eye(3)[None, None], n, axis=0)
    groups = np.concatenate([eye, mats], axis=1)  # (N, 1 + K, 3, 3): aligned, then the K draws
    if tta:  # S_ij R_ik for every evaluated input (aligned included)
        groups = np.concatenate([groups, np.einsum("ntab,nkbc->nktac", tta_mats, groups[:, :1 + k]).reshape(n, -1, 3, 3)], 1)
    total = groups.shape[1]
    index = np.repeat(np.arange(n), total)
    with tqdm(total=n * total, desc="evaluate", unit="volume", disable=not progress, leave=False) as bar:
        logits = logits_of(module, inputs, index, groups.reshape(-1, 3, 3), batch_size, bar).reshape(n, total, -1)
    aligned, rotated = logits[:, 0], logits[:, 1:1 + k]
    angles = np.degrees(rotation_angle(mats))
    report = _header(model, data, split, rotations, k, seed, clf, evaldata, dev)
    report.update(robustness_metrics(aligned, rotated, evaldata.labels, evaldata.classes, angles))
    if padding["applied"]:  # the plain test accuracy is that of the data as stored, unpadded
        report["accuracy_aligned_padded"] = report["accuracy_aligned"]
        unpadded = logits_of(module, _Inputs(original, dev), np.arange(n), eye[:, 0], batch_size)
        report["accuracy_aligned"] = float((unpadded.argmax(-1) == evaldata.labels).mean())
    report["tta"] = None
    if tta:
        averaged = logits[:, 1 + k:].reshape(n, 1 + k, tta, -1).mean(axis=2)
        ok = averaged.argmax(-1) == evaldata.labels[:, None]
        report["tta"] = {"num_rotations": tta, "group": rotations, "accuracy_aligned": float(ok[:, 0].mean()),
                         "accuracy_rotated": float(ok[:, 1:].mean())}
    report["accuracy_tta"] = report["tta"]["accuracy_rotated"] if tta else None
    report["rotation_method"] = _method(mats, tta_mats, exact)
    report["padding"] = padding
    report["seconds"] = round(time.time() - started, 3)
    if out is not None:
        from .report import write_report

        draws = {"rotations": mats.astype(np.float32), "exact": is_exact(mats) | exact,
                 "angles_deg": angles.astype(np.float32), "labels": evaldata.labels,
                 "pred_aligned": aligned.argmax(-1), "pred_rotated": rotated.argmax(-1)}
        report["files"] = write_report(report, out, draws)
    return report


def _classifier(model) -> Classifier:
    if isinstance(model, Classifier):
        return model
    if isinstance(model, torch.nn.Module):
        from .loading import _wrap

        return _wrap(model, "module", getattr(model, "resolution", None))
    return load_classifier(model)


def _method(mats: np.ndarray, tta_mats: np.ndarray, exact: bool) -> dict:
    flags = is_exact(mats)
    if exact:
        return {"revoxelized": int(mats.shape[0] * mats.shape[1]), "exact": 0, "interpolated": 0,
                "how": "every rotated volume is the rotated source mesh voxelized again"}
    record = {"exact": int(flags.sum()), "interpolated": int((~flags).sum()), "revoxelized": 0,
              "how": f"cube symmetries: exact axis permutations and flips; other rotations: {INTERPOLATION}",
              "per_draw": "draws.npz: rotations (N, K, 3, 3), exact (N, K)"}
    if tta_mats.shape[1]:
        record["tta_exact"] = int(is_exact(tta_mats).sum())
    return record


def _header(model, data, split, rotations, k, seed, clf: Classifier, evaldata: EvalData, device) -> dict:
    from .. import __version__

    name = model if isinstance(model, str) else getattr(model, "__fspath__", lambda: type(model).__name__)()
    return {
        "vol3d_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": str(name), "data": str(data), "split": split,
        "rotations": rotations, "num_rotations": k, "seed": seed,
        "num_samples": int(len(evaldata.labels)), "classes": list(evaldata.classes),
        "model_info": clf.info(), "data_info": evaldata.info(), "device": str(device),
        "notes": list(evaldata.notes),
    }
