"""``vol3d evaluate`` and ``vol3d compare``: arguments and thin runners over the Python API.

The main CLI registers them with ``add_evaluate_arguments(parser)`` / ``run_evaluate(args)`` and
``add_compare_arguments(parser)`` / ``run_compare(args)``; runners return the exit code and raise
:class:`~vol3d.errors.UsageError` (exit 2) or :class:`~vol3d.errors.Vol3dError` (exit 1).
"""

from __future__ import annotations

import json

from ..rotations import GROUPS


def add_evaluate_arguments(p) -> None:
    p.add_argument("model", help="a vol3d checkpoint (.pt), an exported TorchScript file, or pretrained:NAME")
    p.add_argument("data", help="a vol3d HDF5 file, an npz that 'vol3d import' reads, or builtin:NAME")
    p.add_argument("--split", default="test", help="split to evaluate (default test); 'val' of data without one: the validation "
                   "objects a checkpoint's training run held out of its train split")
    p.add_argument("--rotations", choices=GROUPS, default="so3", help="group of the random rotations (default so3)")
    p.add_argument("--num-rotations", "-k", type=int, default=8, help="rotations per sample (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the rotations: same seed and data, same rotations (default 0)")
    p.add_argument("--tta", type=int, default=0, metavar="T",
                   help="also report test-time augmentation: logits averaged over T rotations per input")
    p.add_argument("--batch-size", "-b", type=int, default=32, help="volumes per forward pass (default 32)")
    p.add_argument("--out", "-o", help="folder for report.json, report.md, PNG plots and draws.npz")
    p.add_argument("--exact", action="store_true",
                   help="re-voxelize the rotated source meshes (builtin or mesh-based data) instead of resampling voxels")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def run_evaluate(args) -> int:
    from .report import format_table
    from .robustness import evaluate

    report = evaluate(args.model, args.data, split=args.split, rotations=args.rotations,
                      num_rotations=args.num_rotations, seed=args.seed, tta=args.tta, batch_size=args.batch_size,
                      out=args.out, exact=args.exact, device=args.device, progress=not args.quiet)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(format_table(report))
    if args.out:
        print(f"\nwrote {report['files']['json']}, {report['files']['markdown']} and plots in {args.out}")
    return 0


def add_compare_arguments(p) -> None:
    p.add_argument("reports", nargs="+", help="report.json files (or folders holding one) from 'vol3d evaluate --out'")
    p.add_argument("--out", "-o", help="also write the table to this markdown file")


def run_compare(args) -> int:
    from .compare import compare

    print(compare(args.reports, out=args.out), end="")
    return 0
