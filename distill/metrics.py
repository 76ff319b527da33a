"""Trajectory metrics, per sample (so the caller can average over a validation set and per
scenario), and the constant-velocity baseline. Plain PyTorch, any float dtype; differentiable,
though evaluation normally runs them under ``torch.no_grad()``."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .data.formats import DT
from .kinematics import wrap_angle

__all__ = ["ADE_HORIZONS_S", "constant_velocity", "displacement_errors", "trajectory_metrics"]

ADE_HORIZONS_S = (1, 2, 3)  # ade_{n}s: mean error over the steps at t <= n s


def displacement_errors(pred_xy: Tensor, gt_xy: Tensor) -> Tensor:
    """Euclidean error per step: ``(B, T, 2)`` x2 -> ``(B, T)`` metres (any leading dims)."""
    if pred_xy.shape != gt_xy.shape or pred_xy.shape[-1] != 2:
        raise ValueError(f"displacement_errors: expected two (..., T, 2) tensors of one shape, got "
                         f"{tuple(pred_xy.shape)} and {tuple(gt_xy.shape)}")
    return torch.linalg.vector_norm(pred_xy - gt_xy, dim=-1)


def trajectory_metrics(
    pred_xy: Tensor, gt_xy: Tensor, pred_yaw: Tensor, gt_yaw: Tensor, dt: float = DT
) -> dict[str, Tensor]:
    """Per-sample trajectory metrics; step i (0-based) is at t = (i + 1) dt.

    Args:
        pred_xy, gt_xy: ``(B, T, 2)`` metres.
        pred_yaw, gt_yaw: ``(B, T)`` radians.
        dt: step, s.

    Returns:
        dict of ``(B,)`` tensors:
        ``ade``: mean displacement error over the T steps, m;
        ``fde``: displacement error at the last step, m;
        ``ade_1s``, ``ade_2s``, ``ade_3s``: mean displacement error over the steps with t <= 1, 2,
        3 s (all T steps when the horizon is shorter, the first step when dt is longer), m;
        ``yaw_err_deg``: mean over the steps of |pred_yaw - gt_yaw| wrapped to (-pi, pi], degrees.
    """
    err = displacement_errors(pred_xy, gt_xy)  # (B, T)
    if pred_yaw.shape != err.shape or gt_yaw.shape != err.shape:
        raise ValueError(f"trajectory_metrics: yaws must be (B, T) = {tuple(err.shape)}, got "
                         f"{tuple(pred_yaw.shape)} and {tuple(gt_yaw.shape)}")
    out = {"ade": err.mean(-1), "fde": err[..., -1]}
    for seconds in ADE_HORIZONS_S:
        steps = max(1, min(err.shape[-1], math.floor(seconds / dt + 1e-6)))
        out[f"ade_{seconds}s"] = err[..., :steps].mean(-1)
    out["yaw_err_deg"] = torch.rad2deg(wrap_angle(pred_yaw - gt_yaw).abs()).mean(-1)
    return out


def constant_velocity(v0: Tensor, horizon: int, dt: float = DT) -> Tensor:
    """The constant-velocity baseline: straight ahead at v0.

    Args:
        v0: ``(B,)`` m/s (any leading dims).
        horizon: number of steps T.
        dt: step, s.

    Returns:
        ``(B, T, 2)``: x = v0 t, y = 0 at t = dt, 2 dt, ..., T dt.
    """
    t = torch.arange(1, horizon + 1, dtype=v0.dtype, device=v0.device) * dt  # (T,)
    x = v0.unsqueeze(-1) * t
    return torch.stack([x, torch.zeros_like(x)], -1)
