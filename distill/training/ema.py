"""Exponential moving average of a model's weights (buffers are copied, not averaged)."""
from __future__ import annotations

import copy

import torch
from torch import nn


# An EMA averaging over a large share of a run's optimizer steps ends it behind the raw weights.
# Measured: README command 1 (564 steps) with --ema-decay 0.99 (~100 steps, 18%): the EMA
# weights' val ADE 2.535 m, the raw weights' 2.397 m; recomputing the EMA's BatchNorm statistics
# gives 2.523 m, so the gap is the lag, not the copied buffers (docs/learning.md). The 10%
# threshold is a chosen margin below that measured case, not a measured boundary.
EMA_SPAN_WARN = 0.1


def ema_lag_note(decay: float, total_steps: int) -> str | None:
    """A warning when the EMA's averaging span, 1 / (1 - decay) steps, exceeds EMA_SPAN_WARN of
    the run's ``total_steps`` optimizer steps; None otherwise."""
    span = 1.0 / (1.0 - decay)
    if span <= EMA_SPAN_WARN * total_steps:
        return None
    return (f"note: --ema-decay {decay:g} averages over ~{round(span)} optimizer steps, "
            f"{span / max(total_steps, 1):.0%} of this run's {total_steps}: its weights (the ones "
            "validated and saved as best) will lag the raw ones; a short run does better without "
            "--ema or with a smaller --ema-decay (docs/learning.md)")


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """ema <- decay * ema + (1 - decay) * weights, in one fused pass over all tensors."""
        torch._foreach_lerp_(list(self.model.parameters()), list(model.parameters()),
                             1.0 - self.decay)
        for mine, theirs in zip(self.model.buffers(), model.buffers()):
            mine.copy_(theirs)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)
