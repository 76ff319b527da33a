"""Learning-rate schedule: linear warmup, then cosine decay to zero or constant. A pure function
of the training progress in epochs (a float: epoch - 1 + the fraction of the epoch's samples
seen), so a resumed run continues exactly, at any world size or batch count per epoch."""
from __future__ import annotations

import math


def lr_at(progress: float, base_lr: float, warmup_epochs: float, max_epochs: int,
          schedule: str) -> float:
    if progress < warmup_epochs:
        return base_lr * progress / warmup_epochs
    if schedule == "constant":
        return base_lr
    t = (progress - warmup_epochs) / max(max_epochs - warmup_epochs, 1e-12)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))
