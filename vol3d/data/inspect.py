"""Summaries and pictures of vol3d dataset files (``vol3d info`` and ``vol3d show``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import Vol3dError
from ..files import atomic_write
from .store import occupancy, open_dataset

_BLOCK = 512  # samples read at once for the occupancy statistics
_MAX_VOXEL_GRID = 48  # larger grids are max-pooled down for ax.voxels (which is slow past ~50^3)
MODES = ("voxels", "projections")


# --------------------------------------------------------------------------------------- info


def dataset_info(path) -> dict:
    """Summary of a vol3d file.

    Returns:
        dict with ``path``, ``classes``, ``resolution``, ``representation``, ``normalization``,
        ``dtype``, ``command``, ``created``, ``vol3d_version``, ``errors`` (number of skipped
        inputs), ``error_examples`` (up to 5 ``(source, reason)``), and ``splits``: split ->
        ``{"count", "per_class" (class -> count), "fill_mean", "fill_min", "fill_max", "empty"}``
        where a sample's fill is its fraction of occupied voxels (``sdf``: negative, else non-zero)
        and ``empty`` counts samples with no occupied voxel.
    """
    with open_dataset(path) as f:
        errors = f.errors
        return {
            "path": str(path), "classes": f.classes, "resolution": f.resolution,
            "representation": f.representation, "normalization": f.normalization,
            "dtype": f.h5[next(iter(f.splits))]["volumes"].dtype.name if f.splits else None,
            "command": str(f.attrs.get("command", "")), "created": str(f.attrs.get("created", "")),
            "vol3d_version": str(f.attrs.get("vol3d_version", "")),
            "errors": len(errors), "error_examples": errors[:5],
            "splits": {split: _split_info(f, split) for split in f.splits},
        }


def _split_info(f, split: str) -> dict:
    labels = f.labels(split)
    fills = _fill_fractions(f.volumes(split), f.representation)
    counts = np.bincount(labels, minlength=len(f.classes))
    stats = (fills.mean(), fills.min(), fills.max()) if len(fills) else (0.0, 0.0, 0.0)
    return {"count": len(labels), "per_class": dict(zip(f.classes, counts.tolist())),
            "fill_mean": float(stats[0]), "fill_min": float(stats[1]), "fill_max": float(stats[2]),
            "empty": int((fills == 0).sum())}


def _fill_fractions(volumes, representation: str) -> np.ndarray:
    """``(N,)`` occupied fraction of each sample of an ``(N, R, R, R)`` dataset, read in blocks."""
    blocks = [occupancy(volumes[i:i + _BLOCK], representation).mean(axis=(1, 2, 3))
              for i in range(0, volumes.shape[0], _BLOCK)]
    return np.concatenate(blocks) if blocks else np.zeros(0)


def format_info(info: dict) -> str:
    """A readable multi-line table of :func:`dataset_info`'s result (classes x splits)."""
    splits = info["splits"]
    width = max([len("fill (min-max)")] + [len(c) for c in info["classes"]]) + 2
    cols = [max(len(s), 18) for s in splits]

    def row(name, values):
        return name.ljust(width) + "".join(str(v).rjust(c + 2) for v, c in zip(values, cols))

    lines = [
        f"{info['path']}: vol3d dataset, {len(info['classes'])} classes, resolution {info['resolution']}, "
        f"{info['representation']} ({info['dtype']}), normalization {info['normalization']}",
        f"created {info['created'] or '?'} by vol3d {info['vol3d_version'] or '?'}: {info['command'] or '?'}",
        "",
        row("class", splits),
    ]
    lines += [row(c, [s["per_class"][c] for s in splits.values()]) for c in info["classes"]]
    lines += [
        row("total", [s["count"] for s in splits.values()]),
        row("fill mean", [f"{100 * s['fill_mean']:.2f}%" for s in splits.values()]),
        row("fill (min-max)", [f"{100 * s['fill_min']:.1f}-{100 * s['fill_max']:.1f}%" for s in splits.values()]),
        row("empty samples", [s["empty"] for s in splits.values()]),
        "",
        f"skipped inputs: {info['errors']}",
    ]
    lines += [f"  {source}: {reason}" for source, reason in info["error_examples"]]
    if info["errors"] > len(info["error_examples"]):
        lines.append(f"  ... and {info['errors'] - len(info['error_examples'])} more")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------- show


def render_sample(path, index: int, out_png, split: str = "train", mode: str = "voxels") -> Path:
    """Render one sample to a PNG (written atomically).

    Args:
        path: a vol3d file.
        index: sample index in ``split`` (negative counts from the end).
        out_png: the image to write; its folder must exist.
        split: split name.
        mode: ``"voxels"`` (a 3D view of the occupied voxels; grids above 48^3 are max-pooled
            down first) or ``"projections"`` (maximum projections along x, y and z).

    Returns:
        ``out_png`` as a Path. The title names the class, source, split and index.
    """
    out_png = Path(out_png)
    if mode not in MODES:
        raise Vol3dError(f"show mode must be one of {MODES}, got {mode!r}")
    if not out_png.parent.is_dir():
        raise Vol3dError(f"{out_png}: output folder {out_png.parent} does not exist")
    with open_dataset(path) as f:
        count = f.volumes(split).shape[0]
        if not -count <= index < count:
            raise Vol3dError(f"{path}: index {index} out of range for split '{split}' with {count} samples")
        index %= count
        volume = f.volumes(split)[index]
        label = f.classes[int(f.h5[split]["labels"][index])]
        source = f.h5[split]["sources"].asstr()[index]
        representation = f.representation
    title = f"{label} | {source} | {split}[{index}]"
    figure = (_voxel_figure if mode == "voxels" else _projection_figure)(volume, representation, title)
    _save_atomic(figure, out_png)
    return out_png


def _voxel_figure(volume: np.ndarray, representation: str, title: str):
    from matplotlib.figure import Figure

    mask = _pool_max(occupancy(volume, representation), _MAX_VOXEL_GRID)
    figure = Figure(figsize=(6, 6))
    ax = figure.add_subplot(projection="3d")
    ax.voxels(mask, facecolors="#4c8bd6", edgecolors="#1d3f66", linewidth=0.2)
    ax.set(xlabel="x", ylabel="y", zlabel="z", xlim=(0, mask.shape[0]), ylim=(0, mask.shape[1]),
           zlim=(0, mask.shape[2]))
    ax.set_box_aspect((1, 1, 1))
    figure.suptitle(title if mask.shape == volume.shape else f"{title} (shown at {mask.shape[0]}^3)", fontsize=9)
    return figure


def _projection_figure(volume: np.ndarray, representation: str, title: str):
    from matplotlib.figure import Figure

    values = (occupancy(volume, representation) if representation == "sdf" else volume).astype(np.float32)
    figure = Figure(figsize=(10, 3.8))
    # (projected axis, horizontal axis, vertical axis): the image is transposed so the later axis points up
    for k, (axis, horizontal, vertical) in enumerate([(0, "y", "z"), (1, "x", "z"), (2, "x", "y")]):
        ax = figure.add_subplot(1, 3, k + 1)
        ax.imshow(values.max(axis=axis).T, origin="lower", cmap="gray_r", interpolation="nearest")
        ax.set(title=f"max along {'xyz'[axis]}", xlabel=horizontal, ylabel=vertical)
    figure.suptitle(title, fontsize=9)
    return figure


def _pool_max(mask: np.ndarray, limit: int) -> np.ndarray:
    """Max-pool a cubic boolean ``(R, R, R)`` mask by the smallest integer factor giving ``<= limit``."""
    factor = -(-mask.shape[0] // limit)
    if factor == 1:
        return mask
    size = -(-mask.shape[0] // factor) * factor
    padded = np.pad(mask, [(0, size - mask.shape[0])] * 3)
    n = size // factor
    return padded.reshape(n, factor, n, factor, n, factor).any(axis=(1, 3, 5))


def _save_atomic(figure, out_png: Path) -> None:
    """Save the figure to a hidden temporary sibling, then rename it onto ``out_png``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    with atomic_write(out_png, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=110)
