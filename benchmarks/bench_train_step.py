"""Training-step speed and peak memory: each group's default model vs its dense limit.

One training step = forward + cross-entropy + backward + optimizer step (vol3d's default AdamW),
batch ``--batch`` at ``--resolution``^3, random inputs and labels. For every model the *dense limit*
(``common.dense_limit``: the same network with dense ``nn.Conv3d`` + ``nn.BatchNorm3d`` in place of
the escnn layers, trained the same way) is timed round-robin with it in the same process, so the
ratio ``model / limit`` (seconds per step) is fair under a shared machine's load. Medians over
``--repeats`` timed steps after a warm-up step. Peak memory of one step: the RSS high-water mark
above the resident set before the step (CPU), ``max_memory_allocated`` (CUDA).

Target (issue 6): ratio <= 1.3 for the default ``so3`` model.

    python benchmarks/bench_train_step.py [--groups so3 octa] [--se3] [--repeats 5] [--device auto]

``--se3`` adds escnn's reference SE(3) model (preset ``escnn_se3``, built literally from escnn
modules, :mod:`vol3d.models.reference`); its dense limit is timed both channels-last (as exported)
and channels-first, and the faster one is the limit.
Writes ``benchmarks/results/train_step.json``.
"""

from __future__ import annotations

import argparse
import time

import torch

from common import RESULTS, dense_limit, devices, machine, markdown_table, peak_memory_mib, time_interleaved, write_json
from vol3d.models import MODEL_GROUPS, build_model, count_parameters, model_kwargs
from vol3d.models.reference import ReferenceNetwork
from vol3d.training.config import defaults
from vol3d.training.loop import loss_fn, make_optimizer


def train_step(model, x, y):
    """A zero-argument callable doing one optimizer step of ``model`` on ``(x, y)``."""
    opt = make_optimizer(model.parameters(), defaults()["optimizer"])

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y, 0.0).backward()
        opt.step()

    return step


def bench_model(name, kwargs, args, device):
    t = time.perf_counter()
    model = build_model(**kwargs)
    build_s = time.perf_counter() - t
    # a reference model exports channels-last (fastest in inference); for training its limit is
    # whichever layout steps faster, so both are timed (vol3d's own models export channels-first)
    layouts = ["channels_last", "channels_first"] if isinstance(model, ReferenceNetwork) else ["channels_first"]
    limits = {f"limit {layout}": dense_limit(model, channels_last=layout == "channels_last").to(device)
              for layout in layouts}
    model = model.to(device).train()
    r = args.resolution
    x = torch.rand(args.batch, model.in_channels, r, r, r, device=device)
    y = torch.randint(0, kwargs["num_classes"], (args.batch,), device=device)
    steps = {"model": train_step(model, x, y), **{k: train_step(m, x, y) for k, m in limits.items()}}
    secs = time_interleaved(steps, args.repeats, device, warmup=1)
    limit = min(limits, key=secs.get)
    mem = {k: peak_memory_mib(steps[k], device) for k in ("model", limit)}
    return dict(model=name, device=device, params=count_parameters(model), build_s=round(build_s, 2),
                model_sps=args.batch / secs["model"], limit_sps=args.batch / secs[limit],
                limit_layout=limit.split()[1], ratio=secs["model"] / secs[limit],
                model_mem_mib=mem["model"], limit_mem_mib=mem[limit],
                limits_sps={k.split()[1]: args.batch / secs[k] for k in limits})


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--groups", nargs="+", default=list(MODEL_GROUPS), choices=MODEL_GROUPS)
    p.add_argument("--se3", action="store_true", help="also the escnn_se3 reference model (slow first build)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", default=str(RESULTS / "train_step.json"))
    args = p.parse_args()
    models = [(g, model_kwargs({"group": g}, num_classes=10)) for g in args.groups]
    if args.se3:
        models.append(("escnn_se3", model_kwargs({"preset": "escnn_se3"}, num_classes=10)))
    runs = []
    for device in devices(args.device):
        meta = machine(device)
        rows = [bench_model(name, kw, args, device) for name, kw in models]
        meta["loadavg_after"] = machine(device)["loadavg"]
        runs.append(dict(meta=meta, rows=rows))
        print(f"\n### Training step, {device} ({meta.get('gpu', meta['cpu'])}, {meta['threads']} threads), "
              f"batch {args.batch} at {args.resolution}^3, median of {args.repeats}; "
              f"load {meta['loadavg']} -> {meta['loadavg_after']}, {meta['date']}\n")
        print(markdown_table(rows, ["model", "params", "model_sps", "limit_sps", "limit_layout", "ratio",
                                    "model_mem_mib", "limit_mem_mib"], fmt={"model_mem_mib": ".0f",
                                                                            "limit_mem_mib": ".0f"}))
    write_json(args.out, dict(batch=args.batch, resolution=args.resolution, repeats=args.repeats, runs=runs))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
