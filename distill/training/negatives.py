"""Extra negatives for the reasoning loss (``--reasoning-negatives queue``): a FIFO of the teacher
embeddings and sentence ids of the last ``--queue-size`` training samples, kept on the device and
appended after the batch's own teacher rows (rows B..N-1 of ``distill.ops.info_nce``). Teacher
embeddings are fixed labels, so past rows never go stale (unlike a queue of model outputs)."""
from __future__ import annotations

import torch
from torch import Tensor


class NegativeQueue:
    """Ring buffer of ``size`` teacher rows: ``embeddings`` (size, D) float32 and ``ids`` (size,)
    int64, of which the first ``count`` are filled; ``head`` is the next row written."""

    def __init__(self, size: int, dim: int, device: torch.device | str):
        if size < 1:
            raise ValueError(f"NegativeQueue: size must be >= 1, got {size}")
        self.embeddings = torch.zeros(size, dim, device=device)
        self.ids = torch.zeros(size, dtype=torch.int64, device=device)
        self.count = 0
        self.head = 0

    @property
    def size(self) -> int:
        return self.embeddings.shape[0]

    def rows(self) -> tuple[Tensor, Tensor]:
        """The filled rows: embeddings (count, D) and ids (count,). Their order does not
        matter to the loss."""
        return self.embeddings[:self.count], self.ids[:self.count]

    @torch.no_grad()
    def push(self, teacher: Tensor, teacher_ids: Tensor) -> None:
        """Adds a batch's rows (B, D) and ids (B,), overwriting the oldest once full."""
        teacher, teacher_ids = teacher[-self.size:], teacher_ids[-self.size:]  # B > size: newest
        n = teacher.shape[0]
        rows = (self.head + torch.arange(n, device=self.ids.device)) % self.size
        self.embeddings[rows] = teacher.to(self.embeddings)
        self.ids[rows] = teacher_ids.to(self.ids)
        self.head = (self.head + n) % self.size
        self.count = min(self.count + n, self.size)

    def state_dict(self) -> dict:
        """Tensors (on the CPU) and ints only: checkpoints load with weights_only=True."""
        return {"embeddings": self.embeddings.cpu(), "ids": self.ids.cpu(), "count": self.count,
                "head": self.head}

    def load_state_dict(self, state: dict) -> None:
        if state["embeddings"].shape != self.embeddings.shape:
            raise ValueError(f"NegativeQueue: checkpoint queue {tuple(state['embeddings'].shape)} "
                             f"does not match this run's {tuple(self.embeddings.shape)}")
        self.embeddings.copy_(state["embeddings"])
        self.ids.copy_(state["ids"])
        self.count, self.head = int(state["count"]), int(state["head"])
