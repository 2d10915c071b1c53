"""Process-group start-up under ``torchrun``, shared by training and evaluation.

torchrun sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; with more than one process the group is
started once: nccl on CUDA (one GPU per process, ``cuda:LOCAL_RANK``), gloo on the CPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Tuple

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    started: bool      # True when this call started the process group (the caller destroys it)
    device: str        # the device this process should use ("cuda:LOCAL_RANK" under torchrun on GPUs)
    rank: int
    world_size: int
    local_rank: int


def rank_world() -> Tuple[int, int]:
    """(rank, world_size); (0, 1) without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Start the process group when torchrun asks for more than one process.

    Args:
        device: "auto", "cpu", "cuda" or "cuda:N"; under torchrun on CUDA it becomes ``cuda:LOCAL_RANK``.
    """
    local = int(os.environ.get("LOCAL_RANK", "0"))
    started = False
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if use_cuda and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available here; use --device cpu")
        if use_cuda:
            torch.cuda.set_device(local)
            device = f"cuda:{local}"
        if not dist.is_initialized():
            dist.init_process_group("nccl" if use_cuda else "gloo")
            started = True
    rank, world = rank_world()
    return DistInfo(started, device, rank, world, local if world > 1 else 0)
