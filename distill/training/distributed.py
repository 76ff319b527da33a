"""Several processes (``torchrun --nproc_per_node N -m distill.train ...``): DDP over NCCL on
GPUs, gloo on CPUs. One process is the plain case (world size 1, nothing initialized).

How the global sample order is split (``distill.data.sampling.epoch_order``, for users in
docs/scaling.md): each epoch has one global order (a permutation drawn from the run's seed and
the epoch). It is cut into global batches of ``world_size x --batch-size`` samples; rank r takes
rows ``r*b .. (r+1)*b - 1`` of each. With more than one rank, a final incomplete global batch
is dropped in training (every rank must run the same number of steps; the order changes every
epoch, so no sample is always left out). The gradients DDP averages over ranks are then exactly
those of one process with batch ``world_size x --batch-size``, as long as the loss is a mean
over samples and nothing per-rank differs (BatchNorm statistics: use --freeze-bn for
bit-comparable runs).
"""
from __future__ import annotations

import os
import threading
import time
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


def init_distributed(device_type: str, launcher_death_signal: int = 0) -> Dist:
    """Join the process group torchrun describes in the environment (RANK, WORLD_SIZE,
    LOCAL_RANK, MASTER_ADDR/PORT); a plain run gets world size 1. Under torchrun, this rank
    gets ``launcher_death_signal`` (a stop signal) if the launcher dies before it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if launcher_death_signal and "TORCHELASTIC_RUN_ID" in os.environ:
        stop_with_launcher(launcher_death_signal)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "cuda":
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return Dist(rank, world, local)


def stop_with_launcher(sig: int) -> None:
    """Under torchrun: ``sig`` (a stop signal) to this rank, once, if the launcher (its parent,
    the elastic agent) dies first. The agent forwards the signals it handles
    (``--signals-to-handle``, default SIGTERM, SIGINT, SIGHUP, SIGQUIT) to the ranks and waits
    for them; one it does not handle (SIGUSR1 by default) kills it, and the ranks, in sessions
    of their own, would train on unseen. (A thread watching the parent, not PR_SET_PDEATHSIG:
    that delivered 3 SIGTERMs to each rank when the agent died, which count as a third.)"""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), sig)

    threading.Thread(target=watch, daemon=True, name="distill-launcher-watch").start()


def close_distributed(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, d: Dist) -> torch.Tensor:
    """The sum of ``t`` over ranks (in place; a no-op for one process)."""
    if d.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def any_rank(flag: bool, d: Dist, device: torch.device) -> bool:
    """True when ``flag`` is true on any rank (a collective: every rank must call it)."""
    if not d.enabled:
        return flag
    t = torch.tensor(float(flag), device=device)
    return bool(all_reduce_sum(t, d) > 0)


def gather_cpu(t: torch.Tensor, d: Dist) -> torch.Tensor:
    """Rows of every rank in rank order, on the CPU; the ranks' row counts may differ
    (validation shards). For small per-sample results, once per validation."""
    if not d.enabled:
        return t
    parts = [None] * d.world_size
    dist.all_gather_object(parts, t.detach().cpu())
    return torch.cat(parts)


def other_ranks_rows(local: torch.Tensor, d: Dist) -> torch.Tensor:
    """The rows (B, ...) of every other rank, in rank order: ((W-1)*B, ...), no gradient.
    Every rank must call it with the same B (training batches are full under DDP)."""
    if not d.enabled:
        return local[:0]
    parts = [torch.empty_like(local) for _ in range(d.world_size)]
    dist.all_gather(parts, local.contiguous())
    return torch.cat([p for r, p in enumerate(parts) if r != d.rank])
