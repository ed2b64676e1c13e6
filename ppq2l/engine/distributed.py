"""Multi-process training with torch.distributed: process-group setup from the variables that
`torchrun` sets, rank-0-only side effects, and gathering evaluation results from every rank.

Launch: `torchrun --nproc_per_node=N tools/train.py -c CFG` (NCCL on GPUs, gloo on CPU). Each
process reads its own `DataLoader.*.sampler.batch_size`, so the global batch is N times that.
"""
from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


def world_size_from_env() -> int:
    """How many processes `torchrun` started (1 when run directly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: torch.device) -> torch.device:
    """Join the process group when launched by torchrun; returns this process's device
    (`cuda:LOCAL_RANK` on GPUs). A plain single-process run is returned unchanged."""
    if world_size_from_env() <= 1 or is_distributed():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(minutes=30))
    return device


def is_distributed() -> bool:
    """Whether a process group is running."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Rank 0 logs, writes files and checkpoints; the others wait for it at `barrier()`."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def mean_over_ranks(value: float, device: torch.device) -> float:
    """The mean of a scalar over all ranks, so every rank takes the same decision on it
    (e.g. stopping at a non-finite loss)."""
    if not is_distributed():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / get_world_size()


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank. Each rank updates
    them from its own batches after DDP's per-forward broadcast, so before evaluating, every rank
    must hold the statistics that rank 0 saves in the checkpoint."""
    if is_distributed():
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)


def gather_in_order(indices: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Collect every rank's rows (of different lengths) and put them in dataset order by
    `indices`. The evaluation shards are not padded, so each sample is counted exactly once."""
    if not is_distributed():
        order = np.argsort(indices, kind="stable")
        return tuple(array[order] for array in arrays)
    pieces: list[Any] = [None] * get_world_size()
    dist.all_gather_object(pieces, (indices, *arrays))
    all_indices = np.concatenate([piece[0] for piece in pieces])
    order = np.argsort(all_indices, kind="stable")
    if len(np.unique(all_indices)) != len(all_indices):
        raise RuntimeError("evaluation shards overlap: a sample was scored on two ranks")
    return tuple(np.concatenate([piece[k + 1] for piece in pieces])[order] for k in range(len(arrays)))


def cleanup() -> None:
    """Leave the process group at the end of a run."""
    if is_distributed():
        dist.destroy_process_group()
