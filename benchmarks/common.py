"""Shared pieces of the model benchmarks: the dense limit, timing, machine description, output.

The *dense limit* of a vol3d model is the same network with every escnn layer replaced by the plain
torch op it computes: each ``ConvBN(R3Conv, IIDBatchNorm3d)`` becomes ``nn.Conv3d`` (the expanded
filter as a dense, trainable weight) followed by ``nn.BatchNorm3d``; the nonlinearities, the
downsampling, the pooling and the head are vol3d's plain modules already. It is what a user would
get by writing the network by hand in PyTorch without any equivariance constraint, so its speed
is the bar for the steerable model (training) and for the exported model (inference).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from vol3d.files import write_text_atomic
from vol3d.models.export import export
from vol3d.models.layers import FourierELU
from vol3d.models.network import ConvBN
from vol3d.models.reference import ChannelsLast, ChannelsLastFourierELU

RESULTS = Path(__file__).resolve().parent / "results"


def dense_limit(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """The dense limit of a vol3d model (``Network`` or ``ReferenceNetwork``; train mode, all
    parameters trainable).

    Starts from :func:`vol3d.models.export.export` without batch-norm folding (plain modules, each
    convolution that had a batch norm beside it in a ``ConvBN``) and puts a fresh ``nn.BatchNorm3d``
    in place of every such batch norm, with the convolution's bias dropped, as a hand-written
    network would have it. ``channels_last=False`` turns an exported reference model's body back to
    the default (channels-first) layout, with the Fourier ELUs as batched GEMMs on it; on CPU that
    layout can be the faster one for training, so the training benchmark times both.
    """
    plain = export(model, fold_batch_norms=False)
    if not channels_last:
        plain = plain.to(memory_format=torch.contiguous_format)
        for m in plain.modules():
            if isinstance(m, ChannelsLastFourierELU):
                m.__class__ = FourierELU  # same buffers; the GEMMs on the channels-first view
            if isinstance(m, nn.Sequential) and len(m) and isinstance(m[0], ChannelsLast):
                m[0] = nn.Identity()
    for m in plain.modules():
        if isinstance(m, ConvBN) and not isinstance(m.bn, nn.Identity):
            conv = nn.Conv3d(m.conv.in_channels, m.conv.out_channels, m.conv.kernel_size, stride=m.conv.stride,
                             padding=m.conv.padding, bias=False)
            conv.weight.data.copy_(m.conv.weight.data)
            m.conv, m.bn = conv, nn.BatchNorm3d(conv.out_channels)
    for p in plain.parameters():
        p.requires_grad_(True)
    return plain.train()


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_interleaved(fns: dict, repeats: int, device, warmup: int = 1) -> dict:
    """Median seconds per call of each function in ``fns`` (name -> zero-argument callable).

    The functions are called round-robin (``a b c a b c ...``) so that a change of machine load
    during the run hits all of them alike; ``warmup`` untimed rounds go first.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
        sync(device)
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            sync(device)
            t = time.perf_counter()
            fn()
            sync(device)
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def _proc_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_memory_mib(fn, device) -> float:
    """Peak memory of one call of ``fn`` above what was in use before it, in MiB: CUDA
    ``max_memory_allocated``; on CPU the resident-set high-water mark (``VmHWM``, reset through
    ``/proc/self/clear_refs``) minus the resident set before the call."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
    except OSError:
        return float("nan")
    before = _proc_kib("VmRSS")
    fn()
    return (_proc_kib("VmHWM") - before) / 1024


def machine(device) -> dict:
    """Where and when the numbers were taken, with the load average (the machine is shared)."""
    info = dict(date=datetime.datetime.now().isoformat(timespec="seconds"), torch=torch.__version__,
                python=platform.python_version(), threads=torch.get_num_threads(), cpus=os.cpu_count(),
                cpu=_cpu_name(), loadavg=[round(v, 2) for v in os.getloadavg()])
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def devices(arg: str):
    """``--device`` value -> list of devices: ``auto`` is cpu plus cuda when available."""
    if arg == "auto":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if arg == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device available")
    return [arg]


def markdown_table(rows, cols, fmt=None) -> str:
    """``rows`` (dicts) as a markdown table of ``cols`` (floats with 2 decimals unless ``fmt[col]``)."""
    fmt = fmt or {}

    def cell(r, c):
        v = r.get(c, "")
        if isinstance(v, float):
            return format(v, fmt.get(c, ".2f"))
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(r, c) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def write_json(path, payload) -> None:
    """Write ``payload`` as JSON to ``path`` atomically (vol3d's one atomic writer)."""
    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")
