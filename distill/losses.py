"""The students' training losses. Each returns a scalar tensor; its docstring states exactly what
it computes. Plain PyTorch, batched over any leading dims, float32 or float64."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .ops.info_nce import info_nce_reference as info_nce

__all__ = [
    "action_loss",
    "discrete_action_loss",
    "info_nce",
    "position_loss",
    "reasoning_weight",
    "yaw_loss",
]


def _check_same_shape(name: str, pred: Tensor, target: Tensor, last: int | None = None) -> None:
    if pred.shape != target.shape:
        raise ValueError(
            f"{name}: prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if last is not None and (pred.dim() == 0 or pred.shape[-1] != last):
        raise ValueError(f"{name}: expected a last dim of {last}, got shape {tuple(pred.shape)}")


def position_loss(pred_xy: Tensor, target_xy: Tensor) -> Tensor:
    """Smooth-L1 (Huber, beta = delta = 1 m) on x and y, averaged over all elements.

    Args:
        pred_xy, target_xy: ``(..., T, 2)`` metres.

    Returns:
        mean over every element (samples, steps, x and y) of, with d = pred - target,
        0.5 d^2 if |d| < 1 else |d| - 0.5. Quadratic for small errors, linear (gradients of
        magnitude at most 1) for the far-off predictions of a young model.
    """
    _check_same_shape("position_loss", pred_xy, target_xy, last=2)
    return F.smooth_l1_loss(pred_xy, target_xy, beta=1.0)


def yaw_loss(pred_yaw: Tensor, target_yaw: Tensor) -> Tensor:
    """Chordal heading loss.

    Args:
        pred_yaw, target_yaw: ``(...)`` radians, any branch.

    Returns:
        mean over all elements of (sin p - sin t)^2 + (cos p - cos t)^2 = 2 - 2 cos(p - t):
        periodic in 2 pi, ~ (p - t)^2 for small errors, at most 4.
    """
    _check_same_shape("yaw_loss", pred_yaw, target_yaw)
    return ((pred_yaw.sin() - target_yaw.sin()) ** 2 + (pred_yaw.cos() - target_yaw.cos()) ** 2).mean()


def action_loss(pred_norm: Tensor, target_norm: Tensor) -> Tensor:
    """MSE on normalized actions (``ActionNormalization.normalize``).

    Args:
        pred_norm, target_norm: ``(..., 2)`` (acceleration, curvature), normalized.

    Returns:
        mean over all elements of (pred - target)^2.
    """
    _check_same_shape("action_loss", pred_norm, target_norm, last=2)
    return F.mse_loss(pred_norm, target_norm)


def discrete_action_loss(logits: Tensor, target_bins: Tensor, label_smoothing: float = 0.1) -> Tensor:
    """Cross-entropy over action bins (``ActionNormalization.to_bins``) with label smoothing.

    Args:
        logits: ``(..., T, 2, K)`` scores of the K bins of each action.
        target_bins: long ``(..., T, 2)`` in [0, K).
        label_smoothing: eps in [0, 1].

    Returns:
        mean over all (..., T, 2) of, with log p = log_softmax(logits) over the K bins and y the
        target bin, (1 - eps) (-log p_y) + eps / K sum_k (-log p_k) (``F.cross_entropy``).
    """
    if logits.dim() < 3 or logits.shape[:-1] != target_bins.shape or logits.shape[-2] != 2:
        raise ValueError(
            f"discrete_action_loss: logits (..., T, 2, K) {tuple(logits.shape)} do not match "
            f"target_bins (..., T, 2) {tuple(target_bins.shape)}"
        )
    if target_bins.dtype != torch.long:
        raise ValueError(f"discrete_action_loss: target_bins must be torch.long, got {target_bins.dtype}")
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target_bins.reshape(-1),
                           label_smoothing=label_smoothing)


def reasoning_weight(epoch: float, weight: float, warmup_epochs: float) -> float:
    """Weight of the reasoning (InfoNCE) loss at a (fractional) ``epoch``: ramps linearly from 0
    at epoch 0 to ``weight`` at ``warmup_epochs`` and stays there, i.e.
    weight * clamp(epoch / warmup_epochs, 0, 1); ``weight`` at once when warmup_epochs == 0."""
    if warmup_epochs < 0:
        raise ValueError(f"reasoning_weight: warmup_epochs must be >= 0, got {warmup_epochs}")
    if warmup_epochs == 0:
        return float(weight)
    return float(weight) * min(max(epoch / warmup_epochs, 0.0), 1.0)
