"""An evaluation report on disk (``report.json``, ``report.md``, plots, ``draws.npz``) and as text.

Every file is written atomically (a temporary file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..files import write_bytes_atomic


def write_report(report: dict, out, draws: dict | None = None) -> dict:
    """Write ``report.json``, ``report.md``, the PNG plots and (given ``draws``) ``draws.npz`` into
    folder ``out``; returns ``{kind: path}`` of the files written (also stored in report.json)."""
    from .plots import save_plots

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": str(out / "report.json"), "markdown": str(out / "report.md")}
    files.update(save_plots(report, out))
    if draws is not None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **draws)
        write_bytes_atomic(out / "draws.npz", buffer.getvalue())
        files["draws"] = str(out / "draws.npz")
    report = {**report, "files": files}
    write_bytes_atomic(out / "report.md", markdown(report).encode())
    write_bytes_atomic(out / "report.json", (json.dumps(report, indent=2) + "\n").encode())
    return files


def pct(value) -> str:
    """``0.9876`` -> ``"98.8%"``; None -> ``"-"``."""
    return "-" if value is None else f"{100 * value:.1f}%"


def _summary_rows(r: dict) -> list:
    rows = [("accuracy, aligned", pct(r["accuracy_aligned"]))]
    if r.get("accuracy_aligned_padded") is not None:
        rows.append((f"accuracy, aligned, padded to {r['padding']['to']}^3", pct(r["accuracy_aligned_padded"])))
    rows += [("accuracy, rotated (mean ± std over draws)",
              f"{pct(r['accuracy_rotated'])} ± {100 * r['accuracy_rotated_std']:.1f}"),
             ("prediction consistency", pct(r["prediction_consistency"])),
             ("invariance error (mean relative logit change)", f"{r['invariance_error']:.3g}")]
    if r.get("tta"):
        t = r["tta"]
        rows.append((f"TTA over {t['num_rotations']} rotations: aligned / rotated",
                     f"{pct(t['accuracy_aligned'])} / {pct(t['accuracy_rotated'])}"))
    return rows


def _setup_lines(r: dict) -> list:
    m, method, pad = r["model_info"], r["rotation_method"], r["padding"]
    lines = [
        f"model: {r['model']} ({m['kind']}, group {m['group']}, {m['params']:,} parameters)",
        f"data: {r['data']}, split {r['split']}: {r['num_samples']} samples, {len(r['classes'])} classes "
        f"(matched {r['data_info']['class_matching']}), {r['data_info']['resolution']}^3 {r['data_info']['representation']}",
        f"rotations: {r['rotations']}, {r['num_rotations']} per sample, seed {r['seed']}: "
        f"{method['exact']} exact, {method['interpolated']} interpolated, {method['revoxelized']} re-voxelized",
        "padding: " + (pad.get("why") if pad["applied"] else f"none ({pad.get('why_not', '')})"),
    ]
    return lines + [f"note: {note}" for note in r.get("notes", [])]


def format_table(r: dict) -> str:
    """The plain-text summary printed by ``vol3d evaluate``."""
    rows = _summary_rows(r)
    width = max(len(k) for k, _ in rows)
    lines = _setup_lines(r) + [""] + [f"{k:<{width}}  {v:>16}" for k, v in rows]
    return "\n".join(lines)


def _md_table(header, rows) -> list:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"] + \
           ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def markdown(r: dict) -> str:
    """``report.md``: set-up, summary, per-class accuracy, accuracy by angle, the plots."""
    lines = ["# Rotation-robustness report", ""] + [f"- {line}" for line in _setup_lines(r)] + [""]
    lines += _md_table(("metric", "value"), _summary_rows(r)) + ["", "## Per class", ""]
    lines += _md_table(("class", "samples", "aligned", "rotated", "consistency"),
                       [(name, c["count"], pct(c["accuracy_aligned"]), pct(c["accuracy_rotated"]),
                         pct(c["prediction_consistency"])) for name, c in r["per_class"].items()])
    lines += ["", "## Accuracy by rotation angle", ""]
    lines += _md_table(("angle (degrees)", "rotated samples", "accuracy"),
                       [(f"{b['from_deg']:.0f}-{b['to_deg']:.0f}", b["count"], pct(b["accuracy"]))
                        for b in r["accuracy_by_angle"] if b["count"]])
    plots = {k: v for k, v in r.get("files", {}).items() if v.endswith(".png")}
    if plots:
        lines += ["", "## Plots", ""] + [f"![{k}]({Path(v).name})" for k, v in plots.items()]
    return "\n".join(lines) + "\n"
