"""The report's figures (matplotlib, Agg backend): accuracy vs rotation angle, confusion matrices."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..files import write_bytes_atomic


def _figure(*args, **kwargs):
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt, plt.figure(*args, **kwargs)


def _save(plt, fig, path: Path) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())
    return str(path)


def plot_accuracy_by_angle(report: dict, path) -> str:
    """Bars: accuracy of the rotated samples per rotation-angle bin; dashed line: aligned accuracy."""
    plt, fig = _figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    bins = [b for b in report["accuracy_by_angle"] if b["count"]]
    centres = [(b["from_deg"] + b["to_deg"]) / 2 for b in bins]
    width = bins[0]["to_deg"] - bins[0]["from_deg"] if bins else 15.0
    ax.bar(centres, [100 * b["accuracy"] for b in bins], width=0.9 * width, color="tab:blue", label="rotated")
    for x, b in zip(centres, bins):
        ax.annotate(f"n={b['count']}", (x, 1), ha="center", va="bottom", fontsize=7, color="white")
    ax.axhline(100 * report["accuracy_aligned"], color="tab:red", ls="--", label="aligned")
    ax.set(xlim=(0, 180), ylim=(0, 105), xlabel="rotation angle (degrees)", ylabel="accuracy (%)",
           title=f"{Path(report['model']).name}: accuracy vs rotation angle ({report['rotations']}, "
                 f"{report['num_samples']} samples x {report['num_rotations']})")
    ax.set_xticks(np.arange(0, 181, 30))
    ax.legend(loc="lower left")
    return _save(plt, fig, Path(path))


def plot_confusion(report: dict, which: str, path) -> str:
    """Row-normalized confusion matrix (``which``: ``aligned`` | ``rotated``), counts in the cells."""
    counts = np.asarray(report[f"confusion_{which}"], dtype=float)
    classes = report["classes"]
    n = len(classes)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = min(12.0, 2.5 + 0.45 * n)
    plt, fig = _figure(figsize=(size + 1.2, size))
    ax = fig.add_subplot()
    image = ax.imshow(100 * share, cmap="Blues", vmin=0, vmax=100)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class (%)")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=7,
                            color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    accuracy = report["accuracy_aligned" if which == "aligned" else "accuracy_rotated"]
    ax.set(xlabel="predicted class", ylabel="true class",
           title=f"confusion, {which} ({report['rotations'] if which == 'rotated' else 'no rotation'}): "
                 f"accuracy {100 * accuracy:.1f}%")
    return _save(plt, fig, Path(path))


def save_plots(report: dict, out) -> dict:
    """All plots of ``report`` into folder ``out``; returns ``{name: path}``."""
    out = Path(out)
    return {
        "accuracy_vs_angle": plot_accuracy_by_angle(report, out / "accuracy_vs_angle.png"),
        "confusion_aligned": plot_confusion(report, "aligned", out / "confusion_aligned.png"),
        "confusion_rotated": plot_confusion(report, "rotated", out / "confusion_rotated.png"),
    }
