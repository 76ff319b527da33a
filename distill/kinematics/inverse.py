"""Our estimators: the speed at t0 from the history (``estimate_v0``) and the actions that drive
the unicycle model (``distill.kinematics.unicycle``) through a trajectory
(``actions_from_trajectory``). Plain PyTorch, batched over any leading dims and differentiable,
in float32 or float64. (The teacher's own, different, estimators are ``kinematics.teacher``.)
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .unicycle import trapezoid_rows, wrap_angle

__all__ = ["actions_from_trajectory", "estimate_v0"]

# Fit weights w_i = exp(-V0_RECENCY |t_i|), 1/s: the last second counts at least e^-2 = 0.14,
# the oldest pose 0.05. On 400 simulated built-in-world histories, against a plain unweighted
# fit, it cuts the mean |v0 error| from 0.024 to 0.017 m/s without noise and from 0.030 to
# 0.025 m/s with 1 cm position noise (rates 3 and 5 do better without noise, worse with it):
# the planner's acceleration jumps, which one quadratic over the whole 1.5 s follows poorly.
V0_RECENCY = 2.0
# Ridge on the acceleration, s^4: the MAP estimate with independent arc-length noise
# sigma_s = 1 cm at weight 1 (t0) and a prior a ~ N(0, sigma_a^2 = (1 m/s^2)^2) has
# lambda = (sigma_s / sigma_a)^2. The 2x2 system is well conditioned without it (its data term
# on a is sum w t^4/4 = 0.38 s^4), so it only guards: on an ego with exactly constant
# acceleration a it shifts v0 by -1e-3 s * a.
V0_RIDGE = 1e-4


def estimate_v0(
    history_xyz: Tensor, dt: float, *, recency: float = V0_RECENCY, ridge: float = V0_RIDGE
) -> Tensor:
    """The ego's speed at t0 from its history poses, by weighted ridge least squares.

    Args:
        history_xyz: ``(..., H, 3)`` poses at t0-(H-1) dt..t0 (H = 16; the last at the origin);
            only x and y are used.
        dt: time between poses, s.
        recency: weight rate, 1/s (see ``V0_RECENCY``).
        ridge: penalty on the acceleration, s^4 (see ``V0_RIDGE``).

    Returns:
        ``(...)`` v0 >= 0, m/s.

    With s_i the arc length along the history polyline (s_{H-1} = 0 at t0, negative before) at
    t_i = (i - H + 1) dt, it solves in closed form
        min_{v0, a} sum_i w_i (s_i - v0 t_i - a t_i^2 / 2)^2 + ridge a^2,  w_i = exp(-recency |t_i|)
    (no intercept: s(0) = 0 holds by construction) and clamps v0 at 0. Exact (ridge = 0) for
    constant speed or acceleration on a line; on a curve the chords shorten the arc by a relative
    (k v dt)^2 / 24. Position noise lengthens every chord, so a stopped ego with noisy poses gets
    a small positive v0.
    """
    xy = history_xyz[..., :2]
    chord = torch.linalg.vector_norm(xy[..., 1:, :] - xy[..., :-1, :], dim=-1)  # (..., H-1)
    s = torch.cat([torch.zeros_like(chord[..., :1]), torch.cumsum(chord, -1)], -1)
    s = s - s[..., -1:]  # (..., H)
    n = history_xyz.shape[-2]
    t = (torch.arange(n, dtype=s.dtype, device=s.device) - (n - 1)) * dt  # (H,)
    w = torch.exp(-recency * t.abs())
    q = t * t / 2  # the regressor of a
    # Normal equations [[a11, a12], [a12, a22]] (v0, a) = (b1, b2).
    a11, a12, a22 = (w * t * t).sum(), (w * t * q).sum(), (w * q * q).sum() + ridge
    b1, b2 = (w * t * s).sum(-1), (w * q * s).sum(-1)  # (...)
    v0 = (a22 * b1 - a12 * b2) / (a11 * a22 - a12 * a12)
    return v0.clamp(min=0)


# Weight of sum_t (4th difference of v_0..v_T)^2 against the position equations (both (m/s)^2).
# With v0 given, the position equations fix v_t + v_{t+1} on straight stretches but propagate
# any error (of v0, or of positions) as the alternating mode +e, -e, +e, ... up to t = T, i.e.
# accelerations of +-2e/dt. The 4th difference is 16 x that mode, (omega dt)^4 x a sinusoid of
# angular frequency omega, and 0 on cubics. Measured (float64, T = 64): on random smooth
# actions it biases a by < 1e-6 m/s^2 more than 1 s from the ends of the horizon and by
# <= 2e-3 m/s^2 at them; a v0 wrong by e goes into a_0, a_1 (1.5 e/dt, 0.6 e/dt) and leaves
# < 0.1 e/dt from a_2 on; on built-in-world futures (whose actions jump) the mean |a error|
# with the history-estimated v0 is 0.022 m/s^2 (0.017 from a_3 on), 0.33 m/s^2 unsmoothed.
SMOOTHNESS = 1e-2
SMOOTHNESS_ORDER = 4
# Guard of the curvature near a stop, m^2: k = dyaw d / (d^2 + STOP_EPS), d = the step's length.
# Relative bias STOP_EPS / d^2: 1e-4 at 1 m/s (d = 0.1 m); |k| <= |dyaw| / (2 sqrt(STOP_EPS)).
STOP_EPS = 1e-6


def actions_from_trajectory(xyz: Tensor, yaw: Tensor, v0: Tensor, dt: float, *,
                            smoothness: float = SMOOTHNESS,
                            stop_eps: float = STOP_EPS) -> tuple[Tensor, Tensor]:
    """Recovers the actions that drive the unicycle model from (0, 0, 0, v0) through the poses.

    Args:
        xyz: ``(..., T, 3)`` poses at t_1..t_T (only x and y are used), T >= 1.
        yaw: ``(..., T)`` headings at t_1..t_T, rad (any branch: differences are wrapped).
        v0: ``(...)`` speed at t0, m/s.
        dt: step, s.
        smoothness: weight of the smoothness rows (see ``SMOOTHNESS``; 0 = plain inverse).
        stop_eps: curvature guard, m^2 (see ``STOP_EPS``).

    Returns:
        ``(accel, curvature)``, each ``(..., T)``: a_0..a_{T-1}, k_0..k_{T-1}.

    Speeds v_1..v_T: least squares (``torch.linalg.lstsq``) on the 2T position equations of the
    model, each divided by dt/2 to be in m/s,
        v_t cos yaw_t + v_{t+1} cos yaw_{t+1} = 2 (x_{t+1} - x_t) / dt   (y: sin),  t = 0..T-1,
    with x_0 = y_0 = yaw_0 = 0 and v_0 = v0 known, stacked with the T-3 rows
    sqrt(smoothness) * (4th difference of v_0..v_T). Then
        a_t = (v_{t+1} - v_t) / dt,
        k_t = dyaw_t d_t / (d_t^2 + stop_eps),  d_t = dt (v_t + v_{t+1}) / 2,
    with dyaw_t = yaw_{t+1} - yaw_t wrapped to (-pi, pi]: dyaw_t / d_t while moving, -> 0
    smoothly at a stop.
    """
    T = yaw.shape[-1]
    eye = torch.eye(T + 1, dtype=yaw.dtype, device=yaw.device)
    yaw_full = torch.cat([torch.zeros_like(yaw[..., :1]), yaw], -1)  # (..., T+1)
    xy = torch.cat([torch.zeros_like(xyz[..., :1, :2]), xyz[..., :2]], -2)  # (..., T+1, 2)
    rows, rhs = trapezoid_rows(xy, yaw_full, dt)  # (..., 2T, T+1), (..., 2T); columns v_0..v_T
    smooth = math.sqrt(smoothness) * torch.diff(eye, n=SMOOTHNESS_ORDER, dim=0)  # (T-3, T+1)
    design = torch.cat([rows, smooth.expand(*yaw.shape[:-1], *smooth.shape)], -2)
    zeros = yaw.new_zeros(*yaw.shape[:-1], smooth.shape[0])
    target = torch.cat([rhs, zeros], -1)  # (..., 2T + T-3), the rows of design
    target = target - design[..., 0] * v0.unsqueeze(-1)  # move the known v_0 to the right
    v_rest = torch.linalg.lstsq(design[..., 1:], target.unsqueeze(-1)).solution.squeeze(-1)
    v = torch.cat([v0.unsqueeze(-1), v_rest], -1)  # (..., T+1)
    accel = (v[..., 1:] - v[..., :-1]) / dt
    dist = dt * (v[..., :-1] + v[..., 1:]) / 2
    dyaw = wrap_angle(yaw_full[..., 1:] - yaw_full[..., :-1])
    return accel, dyaw * dist / (dist * dist + stop_eps)
