"""Inference speed: escnn model (eval) vs its plain-PyTorch export (eager, optionally torch.compile)
vs the dense limit.

Samples per second at batch ``--batch`` on ``--resolution``^3 inputs, medians over ``--repeats``
timed runs after a warm-up, every variant (escnn eval, exported, dense limit and, with
``--compile``, the compiled export) timed round-robin in one run, on CPU (and CUDA when
available). Prints a table and writes ``benchmarks/results/inference.json``
(``inference_PRESET.json`` with ``--preset``). The dense limit (``common.dense_limit``, eval mode)
is the same network written by hand in plain PyTorch: dense ``nn.Conv3d`` + ``nn.BatchNorm3d``.
``--preset escnn_se3`` times escnn's reference SE(3) model, built literally from escnn modules
(:mod:`vol3d.models.reference`). The load average before and after is printed and saved; ``--note``
adds a remark (e.g. that the machine was shared).
Targets: exported >= 1.5x escnn eval; exported <= 1.05x the dense limit (seconds per batch), i.e.
``limit_ratio = dense_limit / exported`` (samples/s) >= 1 / 1.05 = 0.95.

    python benchmarks/bench_inference.py [--groups so3 octa] [--compile] [--preset escnn_se3] [--note TEXT]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from common import RESULTS, dense_limit, machine, time_interleaved, write_json
from common import devices as device_list
from vol3d.models.export import export
from vol3d.models import build_model, count_parameters, model_kwargs


def interleaved(models: dict, x, repeats: int, device: str) -> dict:
    """Samples/s of each model, timed round-robin (fair under a changing machine load)."""
    with torch.no_grad():
        secs = time_interleaved({k: (lambda m=m: m(x)) for k, m in models.items()}, repeats, device)
    return {k: x.shape[0] / v for k, v in secs.items()}


def compiled(plain, x):
    """``(torch.compile(plain) after one call on x, None)``, or ``(None, error)`` when compiling
    fails (no compiler toolchain, unsupported backend: reported, not fatal)."""
    try:
        fn = torch.compile(plain)
        with torch.no_grad():
            fn(x)
        return fn, None
    except Exception as exc:
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"


def bench_group(group, args, device):
    kwargs = model_kwargs({"preset": args.preset} if args.preset else {"group": group}, num_classes=10)
    t = time.perf_counter()
    model = build_model(**kwargs)
    build_s = time.perf_counter() - t
    model = model.to(device).eval()
    plain = export(model).to(device)
    limit = dense_limit(model).to(device).eval()
    x = torch.rand(args.batch, model.in_channels, args.resolution, args.resolution, args.resolution, device=device)
    with torch.no_grad():
        err = float((model(x) - plain(x)).abs().max() / model(x).abs().max())
    models = {"escnn_eval": model, "exported": plain, "dense_limit": limit}
    row = dict(model=args.preset or group, group=kwargs["group"], preset=args.preset, device=device,
               params=count_parameters(model), build_s=round(build_s, 2), max_rel_diff=err)
    if args.compile:
        models["exported_compiled"], error = compiled(plain, x)
        if error:
            del models["exported_compiled"]
            row.update(exported_compiled=float("nan"), compile_error=error)
    # every variant in one round-robin, so that load changes hit all alike
    row.update(interleaved(models, x, args.repeats, device))
    row["ratio"] = row["exported"] / row["escnn_eval"]
    row["limit_ratio"] = row["exported"] / row["dense_limit"]
    if args.compile:
        row["ratio_compiled"] = row["exported_compiled"] / row["escnn_eval"]
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--groups", nargs="+", default=["so3", "o3", "octa"])
    p.add_argument("--preset", default=None, help="benchmark a named preset instead of --groups")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--compile", action="store_true", help="also time torch.compile of the export")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--note", default="", help="free text printed and saved with the results (e.g. 'shared machine')")
    p.add_argument("--out", default=None, help="JSON output (default: benchmarks/results/inference.json, "
                                               "inference_PRESET.json with --preset)")
    args = p.parse_args()
    devices = device_list(args.device)
    load_before = machine(devices[0])
    groups = [None] if args.preset else args.groups
    rows = [bench_group(g, args, d) for d in devices for g in groups]
    cols = ["model", "device", "params", "build_s", "escnn_eval", "exported", "dense_limit"] + \
           (["exported_compiled"] if args.compile else []) + ["ratio", "limit_ratio"] + \
           (["ratio_compiled"] if args.compile else [])
    print(f"samples/s, batch {args.batch} at {args.resolution}^3, median of {args.repeats} "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads; {load_before.get('gpu', load_before['cpu'])}; "
          f"load {load_before['loadavg']} -> {list(round(v, 2) for v in os.getloadavg())}, {load_before['date']})")
    if args.note:
        print(f"note: {args.note}")
    print(" | ".join(f"{c:>17}" for c in cols))
    for r in rows:
        print(" | ".join(f"{r[c]:>17.2f}" if isinstance(r[c], float) else f"{r[c]!s:>17}" for c in cols))
    meta = dict(batch=args.batch, resolution=args.resolution, repeats=args.repeats, note=args.note,
                torch=torch.__version__,
                threads=torch.get_num_threads(), machine=platform.machine(), processor=platform.processor(),
                **{k: load_before[k] for k in ("date", "cpu", "loadavg", "gpu") if k in load_before},
                loadavg_after=[round(v, 2) for v in os.getloadavg()])
    out = args.out or RESULTS / (f"inference_{args.preset}.json" if args.preset else "inference.json")
    write_json(out, {"meta": meta, "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
