"""Inference speed: escnn model (eval) vs its plain-PyTorch export (eager, optionally torch.compile)
vs the dense limit.

Samples per second at batch ``--batch`` on ``--resolution``^3 inputs, medians over ``--repeats``
timed runs after a warm-up, on CPU (and CUDA when available). Prints a table and writes
``benchmarks/results/inference.json``. The dense limit (``common.dense_limit``, eval mode) is the
same network written by hand in plain PyTorch: dense ``nn.Conv3d`` + ``nn.BatchNorm3d``.
Targets: exported >= 1.5x escnn eval; exported <= 1.05x the dense limit (seconds per batch), i.e.
``limit_ratio = dense_limit / exported`` (samples/s) >= 1 / 1.05 = 0.95.

    python benchmarks/bench_inference.py [--groups so3 octa] [--compile] [--preset escnn_se3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from common import dense_limit, machine, time_interleaved
from common import devices as device_list
from vol3d.models.export import export
from vol3d.models import build_model, count_parameters, model_kwargs


def samples_per_second(fn, x, repeats: int, device: str) -> float:
    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    with torch.no_grad():
        fn(x)  # warm-up (escnn filter expansion, oneDNN / compile caches)
        sync()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn(x)
            sync()
            times.append(time.perf_counter() - t)
    return x.shape[0] / statistics.median(times)


def interleaved(models: dict, x, repeats: int, device: str) -> dict:
    """Samples/s of each model, timed round-robin (fair under a changing machine load)."""
    with torch.no_grad():
        secs = time_interleaved({k: (lambda m=m: m(x)) for k, m in models.items()}, repeats, device)
    return {k: x.shape[0] / v for k, v in secs.items()}


def bench_group(group, args, device):
    kwargs = model_kwargs({"preset": args.preset} if args.preset else {"group": group}, num_classes=10)
    t = time.perf_counter()
    model = build_model(**kwargs)
    build_s = time.perf_counter() - t
    model = model.to(device).eval()
    plain = export(model).to(device)
    limit = dense_limit(model).to(device).eval()
    x = torch.rand(args.batch, 1, args.resolution, args.resolution, args.resolution, device=device)
    with torch.no_grad():
        err = float((model(x) - plain(x)).abs().max() / model(x).abs().max())
    row = dict(group=kwargs["group"], preset=args.preset, device=device, params=count_parameters(model),
               build_s=round(build_s, 2), max_rel_diff=err,
               **interleaved({"escnn_eval": model, "exported": plain, "dense_limit": limit}, x, args.repeats, device))
    if args.compile:
        try:
            row["exported_compiled"] = samples_per_second(torch.compile(plain), x, args.repeats, device)
        except Exception as exc:  # no compiler toolchain, unsupported backend: report, don't fail
            row["exported_compiled"] = float("nan")
            row["compile_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
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
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "inference.json"))
    args = p.parse_args()
    devices = device_list(args.device)
    load_before = machine(devices[0])
    groups = [None] if args.preset else args.groups
    rows = [bench_group(g, args, d) for d in devices for g in groups]
    cols = ["group", "device", "params", "build_s", "escnn_eval", "exported", "dense_limit"] + \
           (["exported_compiled"] if args.compile else []) + ["ratio", "limit_ratio"] + \
           (["ratio_compiled"] if args.compile else [])
    print(f"samples/s, batch {args.batch} at {args.resolution}^3, median of {args.repeats} "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads; {load_before.get('gpu', load_before['cpu'])}; "
          f"load {load_before['loadavg']} -> {list(round(v, 2) for v in os.getloadavg())}, {load_before['date']})")
    print(" | ".join(f"{c:>17}" for c in cols))
    for r in rows:
        print(" | ".join(f"{r[c]:>17.2f}" if isinstance(r[c], float) else f"{r[c]!s:>17}" for c in cols))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(batch=args.batch, resolution=args.resolution, repeats=args.repeats, torch=torch.__version__,
                threads=torch.get_num_threads(), machine=platform.machine(), processor=platform.processor(),
                **{k: load_before[k] for k in ("date", "cpu", "loadavg", "gpu") if k in load_before},
                loadavg_after=[round(v, 2) for v in os.getloadavg()])
    tmp = out.with_name(f".{out.name}.partial")
    tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    tmp.replace(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
