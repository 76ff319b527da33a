"""Reliability of a long run: a stop requested by a stop signal (SIGTERM, SIGINT, SIGUSR1 by
default, to any process of the run: ``distill.data.stop``, re-exported here) ends it cleanly at
the next step (the trainer saves ``_latest.pt``), and non-finite losses skip their optimizer step
on the device (no host sync) and are counted; too many in a row stop the run."""
from __future__ import annotations

import torch

from ..data.stop import StopNow, StopRequest  # noqa: F401 (the trainer's names for them)


class NonFiniteGuard:
    """Counts optimizer steps whose loss or gradient norm is not finite,
    on the device, and gates the optimizer step with them: the fused AdamW kernel skips its
    update and leaves its step count when ``optimizer.found_inf`` is 1 (the mechanism
    GradScaler uses), so nothing waits for the host. The forward pass of such a step has
    already moved the BatchNorm running statistics towards inf/NaN; ``snapshot`` /
    ``restore_if`` put them back (they are small: 0.1 MB in the tiny student)."""

    def __init__(self, device: torch.device, model: torch.nn.Module):
        self.total = torch.zeros((), device=device)
        self.in_a_row = torch.zeros((), device=device)
        self.buffers = list(model.buffers())  # BatchNorm statistics and batch counts
        self.saved = [b.detach().clone() for b in self.buffers]

    def snapshot(self) -> None:
        if self.buffers:
            torch._foreach_copy_(self.saved, self.buffers)

    def restore_if(self, found: torch.Tensor) -> None:
        for live, saved in zip(self.buffers, self.saved):
            live.copy_(torch.where(found.bool(), saved, live))

    @staticmethod
    def not_finite(value: torch.Tensor) -> torch.Tensor:
        """1.0 when ``value`` (a scalar) is not finite, else 0.0, on its device."""
        return (~torch.isfinite(value.detach())).float()

    def record(self, found: torch.Tensor) -> None:
        """Counts one optimizer step that was skipped (``found`` 1) or taken (0)."""
        self.total += found
        self.in_a_row.mul_(found).add_(found)  # reset by a finite step

    @staticmethod
    def gate(optimizer: torch.optim.Optimizer, found: torch.Tensor) -> None:
        optimizer.found_inf = found
        optimizer.grad_scale = None

    def read(self) -> tuple[int, int]:
        """(total, in a row): one host read, at log intervals."""
        both = torch.stack([self.total, self.in_a_row]).tolist()
        return int(both[0]), int(both[1])

    def state_dict(self) -> dict:
        return {"total": self.total.cpu(), "in_a_row": self.in_a_row.cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.total.copy_(state["total"])
        self.in_a_row.copy_(state["in_a_row"])


class DivergedError(RuntimeError):
    """Too many non-finite steps in a row; the message is one line."""
