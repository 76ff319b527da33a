"""``--cuda-graphs``: one optimizer step (forward, backward, clipping, AdamW, EMA) captured once
and replayed for every batch. Inputs are copied into static buffers, so batches must keep one
shape (the trainer drops incomplete last batches); the step's changing numbers (learning rate,
reasoning weight) live in device tensors updated in place; nothing in the step reads back to
the host, which is what makes it capturable."""
from __future__ import annotations

import torch


class GraphedStep:
    """``step_fn(static_inputs) -> dict of device tensors`` does one whole optimizer step.
    The capture warms up on a side stream (3 steps, as PyTorch's docs ask, so lazy state such
    as AdamW's moments exists), then restores the weights, optimizer state and buffers the
    warmup changed, so the first replay is the run's first real step."""

    WARMUP = 3

    def __init__(self, step_fn, example: dict, model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, extra_state: list[torch.Tensor] = ()):
        self.static = {k: v.clone() for k, v in example.items() if torch.is_tensor(v)}
        self.extra = {k: v for k, v in example.items() if not torch.is_tensor(v)}
        live = list(model.parameters()) + list(model.buffers()) + list(extra_state)
        saved = [(t, t.detach().clone()) for t in live + self._optimizer_state(optimizer)]
        fresh_optimizer = not optimizer.state
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.WARMUP):
                step_fn({**self.static, **self.extra})
        torch.cuda.current_stream().wait_stream(side)
        with torch.no_grad():
            for t, copy in saved:
                t.copy_(copy)
            if fresh_optimizer:  # AdamW before its first step: zero moments, step 0
                for t in self._optimizer_state(optimizer):
                    t.zero_()
        self.graph = torch.cuda.CUDAGraph()
        optimizer.zero_grad(set_to_none=False)  # grads keep their addresses inside the graph
        with torch.cuda.graph(self.graph):
            self.outputs = step_fn({**self.static, **self.extra})

    @staticmethod
    def _optimizer_state(optimizer) -> list[torch.Tensor]:
        return [t for group in optimizer.param_groups for p in group["params"]
                for t in optimizer.state.get(p, {}).values() if torch.is_tensor(t)]

    def __call__(self, batch: dict) -> dict:
        for k, v in self.static.items():
            v.copy_(batch[k], non_blocking=True)
        self.graph.replay()
        return self.outputs
