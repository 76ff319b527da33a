"""Several processes (``torchrun --nproc_per_node N -m distill.train ...``): DDP over NCCL on
GPUs, gloo on CPUs. One process is the plain case (world size 1, nothing initialized).

How the global sample order is split (documented for users in docs/scaling.md): each epoch has
one global order (a permutation drawn from the run's seed and the epoch). It is cut into global
batches of ``world_size x --batch-size`` samples; rank r takes rows ``r*b .. (r+1)*b - 1`` of
each. With more than one rank, a final incomplete global batch is dropped (every rank must run
the same number of steps; the order changes every epoch, so no sample is always left out).
The gradients DDP averages over ranks are then exactly those of one process with batch
``world_size x --batch-size``, as long as the loss is a mean over samples and nothing
per-rank differs (BatchNorm statistics: use --freeze-bn for bit-comparable runs).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> Dist:
    """Join the process group torchrun describes in the environment (RANK, WORLD_SIZE,
    LOCAL_RANK, MASTER_ADDR/PORT); a plain run gets world size 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "cuda":
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return Dist(rank, world, local)


def close_distributed(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The global sample order of an epoch: a permutation of range(n) drawn from (seed, epoch),
    the same in every process and every loader."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def rank_indices(order: list[int], rank: int, world: int, batch: int) -> list[int]:
    """This rank's share of ``order``, batch after batch (see the module docstring)."""
    if world == 1:
        return list(order)
    step = world * batch
    full = len(order) // step * step
    return [order[g + rank * batch + i] for g in range(0, full, step) for i in range(batch)]


def all_reduce_sum(t: torch.Tensor, d: Dist) -> torch.Tensor:
    """The sum of ``t`` over ranks (in place; a no-op for one process)."""
    if d.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def gather_rows(local: torch.Tensor, d: Dist, with_grad: bool = False) -> torch.Tensor:
    """Rows of every rank, this rank's first, then the others in rank order: (W*B, ...).
    ``with_grad`` keeps the gradient path to this rank's rows (autograd all-gather)."""
    if not d.enabled:
        return local
    if with_grad:
        from torch.distributed.nn.functional import all_gather
        parts = list(all_gather(local))
    else:
        parts = [torch.empty_like(local) for _ in range(d.world_size)]
        dist.all_gather(parts, local.contiguous())
        parts[d.rank] = local
    return torch.cat([parts[d.rank]] + [p for r, p in enumerate(parts) if r != d.rank])
