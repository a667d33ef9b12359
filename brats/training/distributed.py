"""Several processes (``torchrun --nproc_per_node N``): DistributedDataParallel set-up."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Rank layout of this process; ``world_size == 1`` means no distribution."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True when running under several processes."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints and logs."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (no-op without distribution)."""
        if self.enabled:
            dist.barrier()


def init_from_env(use_cuda: bool) -> DistContext:
    """Join the process group described by torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``.

    Uses NCCL on CUDA and gloo on the CPU; a single process returns the default context.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(),
                       int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def cleanup(ctx: DistContext) -> None:
    """Leave the process group."""
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(ctx: DistContext, value):
    """Rank 0's ``value`` on every rank."""
    if not ctx.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside DDP and/or torch.compile wrappers."""
    inner = getattr(model, "module", model)
    return getattr(inner, "_orig_mod", inner)
