"""The students' discrete unicycle model, its inverse and the action statistics.

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
from dataclasses import dataclass

import torch
from torch import Tensor

from .data.formats import DT

__all__ = [
    "ActionStats",
    "actions_from_trajectory",
    "estimate_v0",
    "unicycle_rollout_reference",
    "wrap_angle",
]


def wrap_angle(angle: Tensor) -> Tensor:
    """Angles (any shape) wrapped to (-pi, pi]."""
    return angle - 2 * math.pi * torch.ceil((angle - math.pi) / (2 * math.pi))


# --------------------------------------------------------------------------------------------
# Forward model
# --------------------------------------------------------------------------------------------


def unicycle_rollout_reference(
    accel: Tensor, curvature: Tensor, v0: Tensor, dt: float = DT
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


# --------------------------------------------------------------------------------------------
# Speed at t0 from the history
# --------------------------------------------------------------------------------------------

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
    history_xyz: Tensor, dt: float = DT, *, recency: float = V0_RECENCY, ridge: float = V0_RIDGE
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


# --------------------------------------------------------------------------------------------
# Inverse model
# --------------------------------------------------------------------------------------------

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


def actions_from_trajectory(
    xyz: Tensor,
    yaw: Tensor,
    v0: Tensor,
    dt: float = DT,
    *,
    smoothness: float = SMOOTHNESS,
    stop_eps: float = STOP_EPS,
) -> tuple[Tensor, Tensor]:
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
    rhs = (2 / dt) * (xy[..., 1:, :] - xy[..., :-1, :])  # (..., T, 2)
    # Columns are v_0..v_T: x row t is cos yaw_t at column t plus cos yaw_{t+1} at column t+1.
    band = eye[:-1] + eye[1:]  # (T, T+1)
    smooth = math.sqrt(smoothness) * torch.diff(eye, n=SMOOTHNESS_ORDER, dim=0)  # (T-3, T+1)
    design = torch.cat([
        band * torch.cos(yaw_full).unsqueeze(-2),
        band * torch.sin(yaw_full).unsqueeze(-2),
        smooth.expand(*yaw.shape[:-1], *smooth.shape),
    ], -2)  # (..., 2T + T-3, T+1)
    zeros = yaw.new_zeros(*yaw.shape[:-1], smooth.shape[0])
    target = torch.cat([rhs[..., 0], rhs[..., 1], zeros], -1)  # (..., 2T + T-3)
    target = target - design[..., 0] * v0.unsqueeze(-1)  # move the known v_0 to the right
    v_rest = torch.linalg.lstsq(design[..., 1:], target.unsqueeze(-1)).solution.squeeze(-1)
    v = torch.cat([v0.unsqueeze(-1), v_rest], -1)  # (..., T+1)
    accel = (v[..., 1:] - v[..., :-1]) / dt
    dist = dt * (v[..., :-1] + v[..., 1:]) / 2
    dyaw = wrap_angle(yaw_full[..., 1:] - yaw_full[..., :-1])
    return accel, dyaw * dist / (dist * dist + stop_eps)


# --------------------------------------------------------------------------------------------
# Action statistics and tokens
# --------------------------------------------------------------------------------------------

STD_FLOOR = 1e-6  # smallest std of either action (m/s^2 and 1/m)
BIN_SPAN = 4.0  # action bins span mean +- BIN_SPAN std


@dataclass(frozen=True, eq=False)
class ActionStats:
    """Per-dimension statistics of the actions (acceleration m/s^2, curvature 1/m).

    ``mean`` and ``std`` are ``(2,)`` float tensors, in that order; the methods take actions
    ``(..., 2)`` of any dtype and device and return them in that dtype and device.
    """

    mean: Tensor
    std: Tensor

    def __post_init__(self):
        for name in ("mean", "std"):
            value = getattr(self, name)
            if not isinstance(value, Tensor) or value.shape != (2,) or not value.is_floating_point():
                raise ValueError(f"ActionStats.{name} must be a float tensor of shape (2,), got {value!r}")

    @classmethod
    def from_actions(cls, accel: Tensor, curvature: Tensor) -> ActionStats:
        """Mean and (population) std over all elements of ``accel`` and ``curvature`` (same
        shape, e.g. ``(N, T)``); the std is floored at ``STD_FLOOR``."""
        actions = torch.stack([accel, curvature], -1).reshape(-1, 2)
        std, mean = torch.std_mean(actions, dim=0, correction=0)
        return cls(mean.detach().clone(), std.detach().clamp(min=STD_FLOOR))

    def to(self, *args, **kwargs) -> ActionStats:
        """A copy with ``mean`` and ``std`` moved by ``Tensor.to(*args, **kwargs)`` (device, dtype)."""
        return ActionStats(self.mean.to(*args, **kwargs), self.std.to(*args, **kwargs))

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
    def from_dict(cls, d: dict[str, Tensor]) -> ActionStats:
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
