"""The ``vol3d`` command line: a thin layer over the Python API.

Each sub-command has a ``_add_<name>`` function that declares its arguments and a ``_run_<name>``
function that calls the Python API and prints the result. Exit codes: 0 ok, 1 failure (bad input,
nothing produced), 2 usage error. Errors the user can fix are printed as one line, no traceback.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from . import __version__
from .errors import UsageError, Vol3dError


def _command_line() -> str:
    """The command as the user typed it (stored in output files for provenance)."""
    return "vol3d " + " ".join(shlex.quote(arg) for arg in sys.argv[1:])


# --------------------------------------------------------------------------- voxelize
def _add_voxelize(sub) -> None:
    p = sub.add_parser(
        "voxelize",
        help="voxelize meshes into a vol3d HDF5 dataset",
        description="Voxelize meshes (a ModelNet-style folder, a <class>/<file> folder, a CSV "
        "manifest 'path,label[,split]', or builtin:synthetic / builtin:tetris) into OUT.h5.",
    )
    p.add_argument("src", help="mesh folder, CSV manifest, or builtin:NAME")
    p.add_argument("out", help="output HDF5 file (written atomically; re-running resumes)")
    p.add_argument("--resolution", "-r", type=int, default=32, help="grid size R (default 32)")
    p.add_argument(
        "--representation", choices=("solid", "surface", "fraction", "sdf"), default="solid",
        help="solid occupancy, surface voxels, fraction of each voxel inside (partial volume, the "
             "same at every pose), or truncated signed distance (default solid)",
    )
    p.add_argument(
        "--fit", choices=("sphere", "cube"), default="sphere",
        help="scale into the grid's inscribed sphere (rotation-safe, default) or the cube (binvox style)",
    )
    p.add_argument("--rotations", type=int, default=0, help="K rotated copies per mesh (default 0: aligned only)")
    p.add_argument("--rotation-group", choices=("z", "so3", "octa"), default="so3", help="group the K rotations come from")
    p.add_argument("--test-fraction", type=float, default=0.2, help="test share for sources without a split (default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="seed for the split and the rotations (default 0)")
    p.add_argument("--workers", "-j", type=int, default=1, help="processes (output is identical for any number)")
    p.add_argument("--strict", action="store_true", help="fail on the first bad file instead of skipping it")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_voxelize)


def _run_voxelize(args) -> int:
    from .data.pipeline import voxelize_dataset

    summary = voxelize_dataset(
        args.src, args.out,
        resolution=args.resolution, representation=args.representation, fit=args.fit,
        rotations=args.rotations, rotation_group=args.rotation_group,
        test_fraction=args.test_fraction, seed=args.seed, workers=args.workers,
        strict=args.strict, command=_command_line(), progress=not args.quiet,
    )
    print(summary.format())
    if summary.num_samples == 0:
        print("vol3d: error: no mesh could be voxelized", file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------- import
def _add_import(sub) -> None:
    p = sub.add_parser(
        "import",
        help="import existing volumes (npz, HDF5, .binvox/.npy folders) into the vol3d format",
        description="Import volumes into OUT.h5. SRC: an npz (MedMNIST '{split}_images/{split}_labels', "
        "'X_train/y_train/...', or 'volumes/labels[/classes]'), an HDF5 file (FILE.h5:/path/to/volumes "
        "or --key), or a folder of .binvox/.npy files laid out as [split/]class/file.",
    )
    p.add_argument("src", help="npz, HDF5 (FILE.h5[:/dataset]) or folder")
    p.add_argument("out", help="output HDF5 file (written atomically)")
    p.add_argument("--key", help="dataset path inside an HDF5 source (e.g. /train/volumes)")
    p.add_argument("--resolution", "-r", type=int, help="resample to this grid size")
    p.add_argument(
        "--resample", choices=("area", "trilinear"), default="area",
        help="resampling filter: area (box average, for downsampling) or trilinear (default area)",
    )
    p.add_argument("--pad-for-rotation", nargs="?", type=int, const=True, default=False, metavar="N",
                   help="pad so any rotation keeps every occupied voxel; with N: pad to N^3 (rotations "
                        "then cut what lies beyond radius N/2)")
    p.add_argument("--test-fraction", type=float, default=0.0, help="seeded stratified test split for single-split sources")
    p.add_argument("--seed", type=int, default=0, help="seed for the split (default 0)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_import)


def _run_import(args) -> int:
    from .data.importers import import_volumes
    from .data.inspect import dataset_info, format_info

    import_volumes(
        args.src, args.out, key=args.key, resolution=args.resolution, resample=args.resample,
        pad_for_rotation=args.pad_for_rotation, test_fraction=args.test_fraction, seed=args.seed,
        command=_command_line(), show_progress=not args.quiet,
    )
    print(format_info(dataset_info(args.out)))
    return 0


# --------------------------------------------------------------------------- info / show
def _add_info(sub) -> None:
    p = sub.add_parser("info", help="summarize a vol3d dataset", description="Print classes, counts "
                       "per split and class, resolution, representation and occupancy statistics.")
    p.add_argument("data", help="a vol3d HDF5 dataset")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=_run_info)


def _run_info(args) -> int:
    import json

    from .data.inspect import dataset_info, format_info

    info = dataset_info(args.data)
    print(json.dumps(info, indent=2, default=str) if args.json else format_info(info))
    return 0


def _add_show(sub) -> None:
    p = sub.add_parser("show", help="render one sample to a PNG", description="Render one sample of "
                       "a vol3d dataset as 3D voxels or as three axis projections.")
    p.add_argument("data", help="a vol3d HDF5 dataset")
    p.add_argument("--index", "-i", type=int, default=0, help="sample index within the split (default 0)")
    p.add_argument("--split", default="train", help="split (default train)")
    p.add_argument("--mode", choices=("voxels", "projections"), default="voxels", help="rendering (default voxels)")
    p.add_argument("--out", "-o", default="sample.png", help="PNG to write (default sample.png)")
    p.set_defaults(run=_run_show)


def _run_show(args) -> int:
    from .data.inspect import render_sample

    render_sample(args.data, args.index, args.out, split=args.split, mode=args.mode)
    print(f"wrote {args.out}")
    return 0


# --------------------------------------------------------------------------- train
def _add_train(sub) -> None:
    p = sub.add_parser(
        "train", help="train a classifier from a YAML config",
        description="Train a 3D classifier as a YAML config says (see configs/). Writes config.yaml, "
        "metrics.jsonl, last.pt (every epoch) and best.pt to the run folder. Ctrl-C writes a "
        "checkpoint first; --resume continues exactly. Multi-GPU/CPU: torchrun --nproc_per_node N "
        "-m vol3d train ...",
    )
    p.add_argument("--config", "-c", required=True, help="YAML config file (e.g. configs/demo.yaml)")
    p.add_argument("--set", "-s", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=5 (repeatable)")
    p.add_argument("--out", "-o", help="run folder (default runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    p.add_argument("--device", help="auto (default: cuda, then mps, then cpu), cpu, cuda, cuda:N, mps")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar (epoch summaries still print)")
    p.set_defaults(run=_run_train)


def _run_train(args) -> int:
    from .training import TrainingInterrupted, train

    try:
        summary = train(args.config, out=args.out, overrides=args.set, resume=args.resume,
                        device=args.device, progress=not args.quiet)
    except TrainingInterrupted as exc:
        print(f"vol3d train: {exc}; continue with the same command and --resume", file=sys.stderr)
        return 130
    if os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun only rank 0 reports, as the trainer itself does
    best = summary["best_val_acc"]
    score = f"best validation accuracy {best:.1%}" if best is not None else (
        f"train accuracy {summary['last_train_acc']:.1%} (no validation split)")
    print(f"done: {summary['epochs']} epochs in {summary['seconds']:.0f} s on {summary['device']}; "
          f"{score}; run folder {summary['run_dir']}")
    return 0


# --------------------------------------------------------------------------- evaluate / compare
def _add_evaluate(sub) -> None:
    from .evaluation.cli import add_evaluate_arguments, run_evaluate

    p = sub.add_parser(
        "evaluate", help="accuracy and invariance under random 3D rotations: report, plots",
        description="Evaluate a classifier on aligned and randomly rotated data (seeded: the same "
        "rotations for every model evaluated with the same seed and data). Prints a table; with "
        "--out also writes report.json, report.md and PNG plots.",
    )
    add_evaluate_arguments(p)
    p.set_defaults(run=run_evaluate)


def _add_compare(sub) -> None:
    from .evaluation.cli import add_compare_arguments, run_compare

    p = sub.add_parser("compare", help="evaluation reports side by side",
                       description="One table of several 'vol3d evaluate' reports: model, group, "
                       "params, aligned and rotated accuracy, consistency, invariance error.")
    add_compare_arguments(p)
    p.set_defaults(run=run_compare)


# --------------------------------------------------------------------------- export
def _add_export(sub) -> None:
    p = sub.add_parser(
        "export", help="export a checkpoint to a plain-PyTorch TorchScript file",
        description="Export a vol3d checkpoint to TorchScript with no escnn inside (the Fourier "
        "nonlinearities, pooling and batch norms become plain torch ops). The file loads with only "
        "torch: torch.jit.load(OUT).",
    )
    p.add_argument("checkpoint", help="a vol3d checkpoint (.pt)")
    p.add_argument("out", help="TorchScript file to write (atomically)")
    p.add_argument("--check-resolution", type=int, default=32,
                   help="grid size of the random batch used to check the export (default 32)")
    p.set_defaults(run=_run_export)


def _run_export(args) -> int:
    from .models.export import export_torchscript

    path = export_torchscript(args.checkpoint, args.out, example_resolution=args.check_resolution)
    print(f"wrote {path} (TorchScript; load with torch.jit.load)")
    return 0


# --------------------------------------------------------------------------- main
COMMANDS = (_add_voxelize, _add_import, _add_info, _add_show, _add_train, _add_evaluate, _add_compare, _add_export)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vol3d",
        description="Rotation-robust 3D deep learning on volumes: voxelize/import data, train "
        "steerable CNNs, evaluate under rotations.",
    )
    parser.add_argument("--version", action="version", version=f"vol3d {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with 2 on usage errors
    try:
        return args.run(args)
    except UsageError as exc:
        print(f"vol3d {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Vol3dError as exc:
        print(f"vol3d {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"vol3d {args.command}: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
