"""Inference speed: escnn model (eval) vs its plain-PyTorch export (eager, optionally torch.compile).

Samples per second at batch ``--batch`` on ``--resolution``^3 inputs, medians over ``--repeats``
timed runs after a warm-up, on CPU (and CUDA when available). Prints a table and writes
``benchmarks/results/inference.json``. Target: exported >= 1.5x escnn eval.

    python benchmarks/bench_inference.py [--groups so3 octa] [--compile] [--preset escnn_se3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

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


def bench_group(group, args, device):
    kwargs = model_kwargs({"preset": args.preset} if args.preset else {"group": group}, num_classes=10)
    t = time.perf_counter()
    model = build_model(**kwargs)
    build_s = time.perf_counter() - t
    model = model.to(device).eval()
    plain = export(model).to(device)
    x = torch.rand(args.batch, 1, args.resolution, args.resolution, args.resolution, device=device)
    with torch.no_grad():
        err = float((model(x) - plain(x)).abs().max() / model(x).abs().max())
    row = dict(group=kwargs["group"], preset=args.preset, device=device, params=count_parameters(model),
               build_s=round(build_s, 2), max_rel_diff=err,
               escnn_eval=samples_per_second(model, x, args.repeats, device),
               exported=samples_per_second(plain, x, args.repeats, device))
    if args.compile:
        row["exported_compiled"] = samples_per_second(torch.compile(plain), x, args.repeats, device)
    row["ratio"] = row["exported"] / row["escnn_eval"]
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
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "inference.json"))
    args = p.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    groups = [None] if args.preset else args.groups
    rows = [bench_group(g, args, d) for d in devices for g in groups]
    cols = ["group", "device", "params", "build_s", "escnn_eval", "exported"] + \
           (["exported_compiled"] if args.compile else []) + ["ratio"] + (["ratio_compiled"] if args.compile else [])
    print(f"samples/s, batch {args.batch} at {args.resolution}^3, median of {args.repeats} "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads)")
    print(" | ".join(f"{c:>17}" for c in cols))
    for r in rows:
        print(" | ".join(f"{r[c]:>17.2f}" if isinstance(r[c], float) else f"{r[c]!s:>17}" for c in cols))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(batch=args.batch, resolution=args.resolution, repeats=args.repeats, torch=torch.__version__,
                threads=torch.get_num_threads(), machine=platform.machine(), processor=platform.processor())
    tmp = out.with_name(f".{out.name}.partial")
    tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    tmp.replace(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
