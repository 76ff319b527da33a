"""The students' discrete unicycle model: its rollout (the reference of ``distill.ops``' fused
op) and its position equations as linear rows in the speeds, which both inverses solve.

State (x, y, yaw, v) in the ego frame at t0 (x forward, y left, yaw in radians, v in m/s);
actions per step t = 0..T-1: acceleration a_t (m/s^2) and curvature k_t (1/m). One step of
dt seconds (the built-in world's ``distill.world.planner.unicycle_step`` is the same model):

    v_{t+1}   = v_t + a_t dt
    yaw_{t+1} = yaw_t + k_t v_t dt + k_t a_t dt^2 / 2        (= yaw_t + k_t dt (v_t + v_{t+1}) / 2)
    x_{t+1}   = x_t + dt/2 (v_t cos yaw_t + v_{t+1} cos yaw_{t+1})
    y_{t+1}   = y_t + dt/2 (v_t sin yaw_t + v_{t+1} sin yaw_{t+1})

from x_0 = y_0 = yaw_0 = 0 and v_0 = v0. Everything here is plain PyTorch, batched over any
leading dims and differentiable, in float32 or float64.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["trapezoid_rows", "unicycle_rollout_reference", "wrap_angle"]


def wrap_angle(angle: Tensor) -> Tensor:
    """Angles (any shape) wrapped to (-pi, pi]."""
    return angle - 2 * math.pi * torch.ceil((angle - math.pi) / (2 * math.pi))


def unicycle_rollout_reference(
    accel: Tensor, curvature: Tensor, v0: Tensor, dt: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Rolls the discrete unicycle model (module docstring) out from the origin.

    Args:
        accel: ``(..., T)`` a_0..a_{T-1}, m/s^2.
        curvature: ``(..., T)`` k_0..k_{T-1}, 1/m.
        v0: ``(...)`` speed at t0, m/s.
        dt: step, s.

    Returns:
        ``(x, y, yaw)``, each ``(..., T)``: the poses at t_1..t_T (the origin pose t_0 excluded).

    Each recurrence is a running sum of per-step increments, so it is written with ``cumsum``:
        v_t    = v0 + dt sum_{s<t} a_s                                   t = 0..T
        yaw_t  = sum_{s<t} k_s (v_s dt + a_s dt^2 / 2)                   t = 0..T
        x_t    = sum_{s<t} dt/2 (v_s cos yaw_s + v_{s+1} cos yaw_{s+1})  (y: sin)
    """
    zero = torch.zeros_like(accel[..., :1])
    v = v0.unsqueeze(-1) + torch.cat([zero, torch.cumsum(accel * dt, -1)], -1)  # (..., T+1)
    dyaw = curvature * (v[..., :-1] * dt + accel * dt * dt / 2)  # (..., T)
    yaw = torch.cat([zero, torch.cumsum(dyaw, -1)], -1)  # (..., T+1)
    vx, vy = v * torch.cos(yaw), v * torch.sin(yaw)  # (..., T+1)
    x = torch.cumsum(dt / 2 * (vx[..., :-1] + vx[..., 1:]), -1)
    y = torch.cumsum(dt / 2 * (vy[..., :-1] + vy[..., 1:]), -1)
    return x, y, yaw[..., 1:]


def trapezoid_rows(xy: Tensor, yaw: Tensor, dt: float) -> tuple[Tensor, Tensor]:
    """The model's position equations as linear equations in the speeds v_0..v_N.

    Args:
        xy: ``(..., N+1, 2)`` positions p_0..p_N, m.
        yaw: ``(..., N+1)`` headings at the same poses, rad.
        dt: step, s.

    Returns:
        ``(rows, rhs)``, ``(..., 2N, N+1)`` and ``(..., 2N)``: rows 0..N-1 are
            v_t cos yaw_t + v_{t+1} cos yaw_{t+1} = 2 (x_{t+1} - x_t) / dt,   t = 0..N-1,
        rows N..2N-1 the same with sin and y: the trapezoid steps of the model, divided by
        dt/2 so that every row is in m/s.
    """
    eye = torch.eye(yaw.shape[-1], dtype=yaw.dtype, device=yaw.device)
    band = eye[:-1] + eye[1:]  # (N, N+1): row t picks v_t and v_{t+1}
    rows = torch.cat([band * torch.cos(yaw).unsqueeze(-2), band * torch.sin(yaw).unsqueeze(-2)], -2)
    rate = (2 / dt) * (xy[..., 1:, :] - xy[..., :-1, :])  # (..., N, 2), m/s
    return rows, torch.cat([rate[..., 0], rate[..., 1]], -1)
