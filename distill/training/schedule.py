"""Learning-rate schedule: linear warmup, then cosine decay to zero or constant. A pure function
of the optimizer step, so a resumed run needs only the step count to continue exactly."""
from __future__ import annotations

import math


def lr_at(step: int, base_lr: float, steps_per_epoch: int, warmup_epochs: float,
          max_epochs: int, schedule: str) -> float:
    warmup = warmup_epochs * steps_per_epoch
    if step < warmup:
        return base_lr * (step + 1) / warmup
    if schedule == "constant":
        return base_lr
    progress = (step - warmup) / max(1.0, max_epochs * steps_per_epoch - warmup)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
