"""``vol3d compare``: evaluation reports side by side, as one markdown table (escnn README style).

Reports compare when they share data, split, rotation group, number of rotations and seed (then
every model saw the same rotated samples); otherwise the table says what differs.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import FormatError, UsageError
from ..files import write_bytes_atomic
from .report import pct

#: keys a report must have to be compared
REQUIRED = ("model", "accuracy_aligned", "accuracy_rotated", "prediction_consistency", "invariance_error")
#: settings that must agree for the numbers to compare
SHARED = ("data", "split", "rotations", "num_rotations", "seed")


def read_report(path) -> dict:
    """A ``report.json`` (or a folder holding one), validated; :class:`FormatError` names the problem."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise FormatError(f"{path}: no such report file")
    try:
        report = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise FormatError(f"{path}: not a JSON file") from None
    if not isinstance(report, dict):
        raise FormatError(f"{path}: not a vol3d evaluation report")
    for key in REQUIRED:
        if key not in report:
            raise FormatError(f"{path}: not a vol3d evaluation report (missing key {key!r})")
    return report


def _row(r: dict) -> list:
    info = r.get("model_info") or {}
    params = info.get("params")
    std = r.get("accuracy_rotated_std")
    rotated = pct(r["accuracy_rotated"]) + (f" ± {100 * std:.1f}" if std is not None else "")
    return [r["model"], info.get("group", "-"), f"{params:,}" if isinstance(params, int) else "-",
            pct(r["accuracy_aligned"]), rotated, pct(r["prediction_consistency"]), f"{r['invariance_error']:.3g}"]


def compare(reports, out=None) -> str:
    """One markdown table of ``reports`` (report dicts, ``report.json`` paths or report folders).

    Columns: model, group, params, aligned acc, rotated acc (mean ± std over draws), consistency,
    invariance error. A line under the table names the shared settings, or what differs.
    ``out``: also write the table there (atomically). Returns the table text.
    """
    reports = [r if isinstance(r, dict) else read_report(r) for r in reports]
    if not reports:
        raise UsageError("compare needs at least one report")
    header = ["model", "group", "params", "aligned acc", "rotated acc", "consistency", "invariance error"]
    rows = [header] + [_row(r) for r in reports]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    differ = [key for key in SHARED if len({json.dumps(r.get(key)) for r in reports}) > 1]
    first = reports[0]
    if differ:
        lines += ["", "warning: the reports differ in " + ", ".join(
            f"{key} ({' / '.join(str(r.get(key)) for r in reports)})" for key in differ)
            + "; their numbers are not directly comparable"]
    else:
        lines += ["", f"data {first.get('data')} (split {first.get('split')}, {first.get('num_samples')} samples); "
                      f"rotations {first.get('rotations')}, {first.get('num_rotations')} per sample, seed {first.get('seed')}"]
    text = "\n".join(lines) + "\n"
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(out, text.encode())
    return text
