"""The teacher's (Alpamayo-R1's) speed-at-t0 estimator and trajectory -> actions inverse.

A re-implementation, written for this package, of what the teacher's action space
(``UnicycleAccelCurvatureActionSpace`` in NVlabs/alpamayo ``src/alpamayo_r1/action_space/``,
commit ``TEACHER_COMMIT``) computes in ``estimate_t0_states`` and ``traj_to_action``, so that
students can be given exactly the v0 and the (acceleration, curvature) labels the teacher
itself would derive from a trajectory. ``distill.kinematics.inverse`` holds our own, different,
estimators; the forward model (``unicycle_rollout_reference``) is the same for both.

Conventions: poses are in the ego frame at t0 (x forward, y left, metres); rotations are 3x3
matrices whose yaw is ``atan2(R[1, 0], R[0, 0])``; speeds in m/s, accelerations in m/s^2,
curvatures in 1/m, ``dt`` in seconds (the teacher uses 0.1 s, 16 history and 64 future poses,
but nothing here is tied to those sizes). Every function is batched over any leading dims
and, by default, casts its inputs to float64 and computes in float64 (``dtype=None`` computes
in the inputs' own dtype, as the teacher does; it runs on float32 trajectories in practice).

The four steps, each a small smoothed least-squares problem solved the teacher's way (normal
equations, Cholesky), are in ``distill.kinematics.teacher_steps`` (re-exported here, with their
constants): speeds from poses, smoothed headings, accelerations, curvatures.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .teacher_steps import (  # noqa: F401  (the steps and constants: re-exported, see __all__)
    A_LAMBDA,
    A_RIDGE,
    KAPPA_LAMBDA,
    KAPPA_RIDGE,
    THETA_LAMBDA,
    THETA_RIDGE,
    V_LAMBDA,
    V_RIDGE,
    check_dt,
    check_poses,
    check_v0,
    teacher_accel_from_speeds,
    teacher_curvature,
    teacher_future_speeds,
    teacher_history_speeds,
    teacher_smooth_heading,
    unwrap_yaw,
    yaw_from_rotation,
)

__all__ = [
    "A_LAMBDA",
    "A_RIDGE",
    "KAPPA_LAMBDA",
    "KAPPA_RIDGE",
    "TEACHER_COMMIT",
    "THETA_LAMBDA",
    "THETA_RIDGE",
    "V_LAMBDA",
    "V_RIDGE",
    "TeacherInverse",
    "teacher_accel_from_speeds",
    "teacher_actions_from_trajectory",
    "teacher_curvature",
    "teacher_estimate_v0",
    "teacher_future_speeds",
    "teacher_history_speeds",
    "teacher_smooth_heading",
    "teacher_traj_to_action",
    "unwrap_yaw",
    "yaw_from_rotation",
]

# The teacher's code these functions reproduce.
TEACHER_COMMIT = "1cba38cabffb4b4416dbdd312c868e21ccd57394"


def teacher_estimate_v0(history_xyz: Tensor, history_rot: Tensor, dt: float, **options) -> Tensor:
    """The teacher's speed at t0: the last of ``teacher_history_speeds``, with the same
    arguments (its keyword options ``v_lambda``, ``v_ridge`` and ``dtype`` included).

    Returns:
        ``(...)`` v0, m/s, in the compute dtype. Not clamped at 0.
    """
    return teacher_history_speeds(history_xyz, history_rot, dt, **options)[..., -1]


@dataclass(frozen=True)
class TeacherInverse:
    """The teacher's inverse and its intermediates (shapes for a future of T poses).

    accel ``(..., T)`` m/s^2, curvature ``(..., T)`` 1/m, speed ``(..., T+1)`` m/s (v_0 = v0),
    heading ``(..., T+1)`` rad (smoothed, heading_0 = 0)."""

    accel: Tensor
    curvature: Tensor
    speed: Tensor
    heading: Tensor


def teacher_actions_from_trajectory(
    future_xyz: Tensor,
    future_rot: Tensor,
    v0: Tensor,
    dt: float,
    *,
    t0_xyz: Tensor | None = None,
    dtype: torch.dtype | None = torch.float64,
    return_states: bool = False,
) -> tuple[Tensor, Tensor] | TeacherInverse:
    """The teacher's trajectory -> (acceleration, curvature) inverse, with v0 given.

    Args:
        future_xyz: ``(..., T, 3)`` positions at t0+dt..t0+T dt in the t0 frame, m (x, y used;
            the teacher requires T = 64).
        future_rot: ``(..., T, 3, 3)`` rotations at the same times (only their yaw is used).
        v0: ``(...)`` speed at t0, m/s (the teacher's is ``teacher_estimate_v0``).
        dt: time step, s (the teacher's 0.1).
        t0_xyz: ``(..., 3)`` position at t0 (default the origin; the teacher uses its last
            history pose). The heading at t0 is always taken as 0.
        dtype: compute dtype (inputs cast); ``None`` keeps ``future_xyz``'s dtype.
        return_states: return a ``TeacherInverse`` with the speeds and headings too.

    Returns:
        ``(accel, curvature)``, each ``(..., T)``: a_0..a_{T-1} in m/s^2 and k_0..k_{T-1} in
        1/m, un-normalised; or a ``TeacherInverse``. Rolling them out with
        ``distill.kinematics.unicycle_rollout_reference`` from v0 approximately reproduces the
        poses (every step is smoothed and ridge-regularised, so not exactly).
    """
    dt = check_dt(dt)
    check_poses("future_xyz", future_xyz, "future_rot", future_rot, 1)
    check_v0(v0, future_xyz.shape[:-2])
    if dtype is None:
        dtype = future_xyz.dtype
    heading = teacher_smooth_heading(future_rot, dt, dtype=dtype)
    speed = teacher_future_speeds(future_xyz, heading, v0, dt, t0_xyz=t0_xyz, dtype=dtype)
    accel = teacher_accel_from_speeds(speed, dt)
    curvature = teacher_curvature(heading, speed, accel, dt)
    if return_states:
        return TeacherInverse(accel, curvature, speed, heading)
    return accel, curvature


def teacher_traj_to_action(
    history_xyz: Tensor,
    history_rot: Tensor,
    future_xyz: Tensor,
    future_rot: Tensor,
    dt: float,
    *,
    dtype: torch.dtype | None = torch.float64,
) -> tuple[Tensor, Tensor, Tensor]:
    """What the teacher's ``traj_to_action`` computes (before its normalisation), end to end.

    Args:
        history_xyz ``(..., H, 3)``, history_rot ``(..., H, 3, 3)``: the history (last pose at t0).
        future_xyz ``(..., T, 3)``, future_rot ``(..., T, 3, 3)``: the future.
        dt: s. dtype: as elsewhere.

    Returns:
        ``(v0, accel, curvature)``: ``(...)`` m/s, ``(..., T)`` m/s^2, ``(..., T)`` 1/m. v0 is
        ``teacher_estimate_v0``; the future is integrated from the last history position.
    """
    check_poses("history_xyz", history_xyz, "history_rot", history_rot, 2)
    check_poses("future_xyz", future_xyz, "future_rot", future_rot, 1)
    if history_xyz.shape[:-2] != future_xyz.shape[:-2]:
        raise ValueError(f"history_xyz {tuple(history_xyz.shape)} and future_xyz "
                         f"{tuple(future_xyz.shape)} must have the same leading dims")
    if dtype is None:
        dtype = history_xyz.dtype
    v0 = teacher_estimate_v0(history_xyz, history_rot, dt, dtype=dtype)
    accel, curvature = teacher_actions_from_trajectory(
        future_xyz, future_rot, v0, dt, t0_xyz=history_xyz[..., -1, :], dtype=dtype)
    return v0, accel, curvature
