"""One name for each pair of estimators a student can use: ``"distill"`` (ours:
``inverse.estimate_v0`` and ``inverse.actions_from_trajectory``) or ``"teacher"`` (Alpamayo-R1's,
reproduced in ``teacher``). The student's speed at t0 (an input of its rollout) and its action
targets must come from the same pair: a student trained on one and fed the other's v0 starts
its rollout from another speed (docs/teacher_kinematics.md)."""
from __future__ import annotations

import torch
from torch import Tensor

from ..constants import KINEMATICS
from .inverse import actions_from_trajectory, estimate_v0
from .teacher import teacher_estimate_v0, teacher_traj_to_action, yaw_from_rotation

__all__ = ["check_kinematics", "speed_at_t0", "trajectory_actions"]


def check_kinematics(kind: str) -> str:
    if kind not in KINEMATICS:
        raise ValueError(f"kinematics {kind!r} is not one of {KINEMATICS}")
    return kind


def speed_at_t0(kind: str, history_xyz: Tensor, history_rot: Tensor, dt: float) -> Tensor:
    """``(...)`` the speed at t0, m/s, in ``history_xyz``'s dtype, from the history poses
    ``(..., H, 3)`` and rotations ``(..., H, 3, 3)`` (the last at t0). ``"distill"`` reads only
    the positions and clamps at 0; ``"teacher"`` solves in float64 and may be slightly
    negative, as the teacher's."""
    if check_kinematics(kind) == "teacher":
        return teacher_estimate_v0(history_xyz, history_rot, dt).to(history_xyz.dtype)
    return estimate_v0(history_xyz, dt)


def trajectory_actions(kind: str, history_xyz: Tensor, history_rot: Tensor, future_xyz: Tensor,
                       future_rot: Tensor, dt: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(v0 (...), accel (..., T), curvature (..., T))`` in float64: the speed at t0 and the
    actions that drive the unicycle model from it through the future poses ``(..., T, 3)``
    with rotations ``(..., T, 3, 3)``; the history as in ``speed_at_t0``."""
    if check_kinematics(kind) == "teacher":
        return teacher_traj_to_action(history_xyz, history_rot, future_xyz, future_rot, dt)
    v0 = estimate_v0(history_xyz.double(), dt)
    yaw = yaw_from_rotation(future_rot).double()  # in the labels' dtype, as the caches were
    accel, curvature = actions_from_trajectory(future_xyz.double(), yaw, v0, dt)
    return v0, accel, curvature
