"""Running under ``torchrun``: process group set-up from the environment, and the collectives the
trainer needs.

``torchrun --nproc_per_node N -m vol3d train ...`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and ``MASTER_ADDR/PORT`` set; :func:`setup` reads them and joins the
process group (NCCL on CUDA, gloo on CPU). Without them (``WORLD_SIZE`` unset or 1) everything
here is a no-op and the trainer runs as one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .config import ConfigError


@dataclass(frozen=True)
class Context:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its machine;
    ``owns_group``: this process initialized the process group (and so destroys it)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes checkpoints."""
        return self.rank == 0


def env_context() -> Context:
    """The torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), or a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context()
    return Context(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: cuda, then mps, then cpu. Under torchrun on CUDA each process takes GPU ``local_rank``."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"config key 'device' is {name!r} but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"config key 'device' is {name!r} but only {torch.cuda.device_count()} GPU(s) exist")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("config key 'device' is 'mps' but MPS is not available here")
    return device


def setup(ctx: Context, device: torch.device) -> Context:
    """Join the process group of ``ctx`` (NCCL on CUDA, gloo otherwise) unless already joined."""
    if not ctx.enabled or dist.is_initialized():
        return ctx
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    return Context(ctx.rank, ctx.world_size, ctx.local_rank, owns_group=True)


def cleanup(ctx: Context) -> None:
    """Leave the process group if :func:`setup` created it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: Context) -> None:
    if ctx.enabled:
        dist.barrier()


def all_sum(ctx: Context, values, device) -> list:
    """Element-wise sum of a list of numbers over all processes (float64)."""
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    if ctx.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def any_flag(ctx: Context, flags, device) -> list:
    """Element-wise logical OR of a list of booleans over all processes (so every process stops together)."""
    t = torch.tensor([1.0 if f else 0.0 for f in flags], dtype=torch.float32, device=device)
    if ctx.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]
