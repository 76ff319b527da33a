"""How actions are normalised (``ActionNormalization``) and cut into bins."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["ActionNormalization"]

STD_FLOOR = 1e-6  # smallest std of either action (m/s^2 and 1/m)
BIN_SPAN = 4.0  # action bins span mean +- BIN_SPAN std


@dataclass(frozen=True, eq=False)
class ActionNormalization:
    """How the student's action heads are normalised: per-dimension mean and std of the
    training labels' actions (acceleration m/s^2, curvature 1/m). Saved in checkpoints under
    ``"action_stats"`` (the key keeps its name).

    ``mean`` and ``std`` are ``(2,)`` float tensors, in that order; the methods take actions
    ``(..., 2)`` of any dtype and device and return them in that dtype and device.
    """

    mean: Tensor
    std: Tensor

    def __post_init__(self):
        for name in ("mean", "std"):
            value = getattr(self, name)
            if not isinstance(value, Tensor) or value.shape != (2,) or not value.is_floating_point():
                raise ValueError(f"ActionNormalization.{name} must be a float tensor of shape (2,), got {value!r}")

    @classmethod
    def from_actions(cls, accel: Tensor, curvature: Tensor) -> ActionNormalization:
        """Mean and (population) std over all elements of ``accel`` and ``curvature`` (same
        shape, e.g. ``(N, T)``); the std is floored at ``STD_FLOOR``."""
        actions = torch.stack([accel, curvature], -1).reshape(-1, 2)
        std, mean = torch.std_mean(actions, dim=0, correction=0)
        return cls(mean.detach().clone(), std.detach().clamp(min=STD_FLOOR))

    def to(self, *args, **kwargs) -> ActionNormalization:
        """A copy with ``mean`` and ``std`` moved by ``Tensor.to(*args, **kwargs)`` (device, dtype)."""
        return ActionNormalization(self.mean.to(*args, **kwargs), self.std.to(*args, **kwargs))

    def normalize(self, actions: Tensor) -> Tensor:
        """``(actions - mean) / std``, ``(..., 2)``."""
        return (actions - self.mean.to(actions)) / self.std.to(actions)

    def denormalize(self, actions: Tensor) -> Tensor:
        """``actions * std + mean``, ``(..., 2)``: the inverse of ``normalize``."""
        return actions * self.std.to(actions) + self.mean.to(actions)

    def to_dict(self) -> dict[str, Tensor]:
        """``{"mean": (2,), "std": (2,)}`` plain tensors (loads with ``weights_only=True``)."""
        return {"mean": self.mean.detach().clone(), "std": self.std.detach().clone()}

    @classmethod
    def from_dict(cls, d: dict[str, Tensor]) -> ActionNormalization:
        """The inverse of ``to_dict``."""
        return cls(torch.as_tensor(d["mean"]), torch.as_tensor(d["std"]))

    def bin_centers(self, num_bins: int) -> Tensor:
        """``(num_bins, 2)``: the centres of ``num_bins`` equal bins per dimension that tile
        [mean - 4 std, mean + 4 std]: mean + std * (-4 + 8 (i + 1/2) / num_bins)."""
        u = (torch.arange(num_bins, dtype=self.mean.dtype, device=self.mean.device) + 0.5) / num_bins
        return self.mean + self.std * BIN_SPAN * (2 * u.unsqueeze(-1) - 1)

    def to_bins(self, actions: Tensor, num_bins: int) -> Tensor:
        """long ``(..., 2)``: the bin of ``bin_centers`` each action falls in (the nearest
        centre), actions beyond mean +- 4 std in the edge bins."""
        u = (self.normalize(actions) / BIN_SPAN + 1) / 2  # [0, 1] over the span
        return torch.floor(u * num_bins).clamp(0, num_bins - 1).long()
