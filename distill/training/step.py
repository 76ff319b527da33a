"""The training step: micro-batches (forward, loss, backward) and the optimizer update that ends
each group of ``--accumulation-steps`` of them. Everything here stays on the device: the loss
sums, the non-finite flag that gates AdamW, the BatchNorm restore. Nothing reads back to the
host, so the trainer syncs only at log intervals and the whole step can be captured in a CUDA
graph (``--cuda-graphs``, cuda_graph.py), where the learning rate and the reasoning weight are
device tensors updated in place before each replay."""
from __future__ import annotations

import contextlib
from dataclasses import replace

import torch
from torch.profiler import record_function

from ..models.plan import student_plan
from .accel import Accel
from .distributed import Dist, all_reduce_sum, other_ranks_rows
from .ema import EMA
from .guard import NonFiniteGuard
from .negatives import NegativeQueue
from .objective import SUM_KEYS, LossWeights, loss_terms
from .runtime import set_lr


class TrainStep:
    """``micro(batch, scale, sync)`` per micro-batch, ``update(lr)`` after the last of
    a group. ``sums`` (len(SUM_KEYS),) accumulates the loss terms x samples of the finite
    steps; ``guard`` counts the skipped ones."""

    def __init__(self, forward_model, model, ddp, optimizer, ema: EMA | None, cfg, stats,
                 accel: Accel, weights: LossWeights, grad_clip: float, d: Dist,
                 negatives: NegativeQueue | None, device: torch.device):
        self.forward_model, self.model, self.ddp = forward_model, model, ddp
        self.optimizer, self.ema, self.cfg, self.stats = optimizer, ema, cfg, stats
        self.accel, self.grad_clip, self.d = accel, grad_clip, d
        self.negatives, self.device = negatives, device
        # lambda of the reasoning loss, warmed up per step: a device tensor (graph-safe)
        self.reasoning_weight = torch.zeros((), device=device)
        self.weights = replace(weights, reasoning=self.reasoning_weight)
        self.guard = NonFiniteGuard(device, model)
        self.sums = torch.zeros(len(SUM_KEYS), device=device)
        self.found = torch.zeros((), device=device)  # any non-finite loss in this group
        # The last step's gradient norm (before clipping), read by the trainer with its other
        # host reads, never here.
        self.grad_norm = torch.zeros((), device=device)

    def _extra_teacher(self, batch: dict):
        """Reasoning negatives beyond the batch's own rows: the other ranks' rows (DDP: the
        global batch, as one process would see it), then the queue's."""
        if "coc_embedding" not in batch or (not self.d.enabled and self.negatives is None):
            return None, None
        others = (other_ranks_rows(batch["coc_embedding"], self.d),
                  other_ranks_rows(batch["coc_id"], self.d))
        queued = self.negatives.rows() if self.negatives is not None else (others[0][:0],
                                                                           others[1][:0])
        return others, (torch.cat([others[0], queued[0]]), torch.cat([others[1], queued[1]]))

    def micro(self, batch: dict, scale: float, sync: bool) -> None:
        """Forward and backward of one micro-batch; ``scale`` = 1 / micro-batches in the group;
        ``sync``: the group's last (DDP all-reduces the gradients then, not before)."""
        others, extra = self._extra_teacher(batch)
        with record_function("distill.forward"), self.accel.autocast(self.device.type):
            plan = student_plan(self.forward_model, batch, self.cfg, self.stats)
            terms = loss_terms(plan, batch, self.cfg, self.stats, self.weights, extra)
        found = NonFiniteGuard.not_finite(terms["loss"])
        self.found = torch.maximum(self.found, found)
        no_sync = self.ddp.no_sync() if self.ddp is not None and not sync else None
        with record_function("distill.backward"), no_sync or contextlib.nullcontext():
            (terms["loss"] * scale).backward()
        values = torch.stack([terms[k].detach().float() for k in SUM_KEYS])
        self.sums += torch.where(found.bool(), 0.0, values) * len(batch["clip_id"])
        if self.negatives is not None:  # this step's global rows join the queue
            self.negatives.push(torch.cat([batch["coc_embedding"], others[0]]),
                                torch.cat([batch["coc_id"], others[1]]))

    def update(self, lr: float | None) -> None:
        """Gradient norm, clip (--grad-clip), AdamW (skipped on the device when the group had a
        non-finite loss or gradient norm), EMA. ``lr`` None: already set (a graph replay)."""
        with record_function("distill.optimizer"):
            if lr is not None:
                set_lr(self.optimizer, lr)
            # Every step, clipped or not: a finite loss can have a non-finite gradient, and
            # AdamW would write it into the weights (two bf16 runs on an H200 diverged so).
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            norm = torch.nn.utils.get_total_norm(grads)
            if self.grad_clip > 0:
                torch.nn.utils.clip_grads_with_norm_(grads, self.grad_clip, norm)
            self.grad_norm.copy_(norm)
            found = torch.maximum(self.found, NonFiniteGuard.not_finite(norm))
            found = all_reduce_sum(found, self.d).clamp_(max=1)  # the same on every rank
            self.guard.record(found)
            self.guard.restore_if(found)
            NonFiniteGuard.gate(self.optimizer, found)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=not self.accel.cuda_graphs)
            if self.ema:
                self.ema.update(self.model)
            self.found.zero_()
            self.guard.snapshot()  # the next group's forward may need to be undone

    def read(self) -> tuple[list[float], int, int, float]:
        """(loss-term sums, non-finite steps in the run, in a row, last gradient norm): one
        host read, at log intervals."""
        values = torch.cat([self.sums.float(), torch.stack(
            [self.guard.total, self.guard.in_a_row, self.grad_norm]).float()]).tolist()
        return values[:-3], int(values[-3]), int(values[-2]), values[-1]

    def whole(self, batch: dict) -> dict:
        """One whole optimizer step on ``batch``: the function a CUDA graph captures
        (--accumulation-steps 1)."""
        self.micro(batch, 1.0, sync=True)
        self.update(None)
        return {"sums": self.sums}

    def state_tensors(self) -> list[torch.Tensor]:
        """What a step changes besides the weights and AdamW state (a graph capture's warmup
        must undo it)."""
        ema = list(self.ema.model.parameters()) + list(self.ema.model.buffers()) if self.ema else []
        return [self.sums, self.found, self.guard.total, self.guard.in_a_row, *self.guard.saved,
                self.reasoning_weight, *ema]
