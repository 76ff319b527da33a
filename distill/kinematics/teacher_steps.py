"""The teacher's smoothed least squares: the four steps of its speed estimate and inverse
(``distill.kinematics.teacher`` puts them together) and their building blocks.

Each step is a small regularised least-squares problem, solved by its normal equations with a
Cholesky factorisation (the teacher's way, so the two agree to rounding). With
``W_k(lam) = lam / dt^(2k) * D_k^T D_k``, ``D_k`` the k-th difference matrix:

1. Speeds from poses (``teacher_history_speeds`` / ``teacher_future_speeds``), by the
   trapezoid equations ``v_t u_t + v_{t+1} u_{t+1} = 2 (p_{t+1} - p_t) / dt``,
   ``u_t = (cos yaw_t, sin yaw_t)``, two rows (x, y) per step (``unicycle.trapezoid_rows``):
   ``min_v |A v - b|^2 + v^T W_3(V_LAMBDA) v + V_RIDGE |v|^2``.
   On the history all H speeds are free and v0 is the last one; on the future v_0 is fixed to
   the given v0 (and the ridge covers v_1..v_T only).
2. Headings (``teacher_smooth_heading``): the future yaws, unwrapped, smoothed with yaw_0 = 0
   fixed: ``min |y - yaw|^2 + y^T W_3(THETA_LAMBDA) y + THETA_RIDGE |y|^2`` over y_1..y_T.
3. Acceleration (``teacher_accel_from_speeds``): ``min |a - diff(v) / dt|^2 + a^T W_2 a +
   A_RIDGE |a|^2`` (W_2 with A_LAMBDA; no end condition).
4. Curvature (``teacher_curvature``): with ``s_t = v_t dt + a_t dt^2 / 2`` and ``dyaw_t`` the
   smoothed heading steps, ``min sum (k_t s_t - dyaw_t)^2 + k^T W_2 k + KAPPA_RIDGE |k|^2``
   (W_2 with KAPPA_LAMBDA).

Conventions are those of ``distill.kinematics.teacher``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .unicycle import trapezoid_rows

__all__ = [
    "A_LAMBDA",
    "A_RIDGE",
    "KAPPA_LAMBDA",
    "KAPPA_RIDGE",
    "THETA_LAMBDA",
    "THETA_RIDGE",
    "V_LAMBDA",
    "V_RIDGE",
    "teacher_accel_from_speeds",
    "teacher_curvature",
    "teacher_future_speeds",
    "teacher_history_speeds",
    "teacher_smooth_heading",
    "unwrap_yaw",
    "yaw_from_rotation",
]

# The defaults of the teacher's action space's constructor (``teacher.TEACHER_COMMIT``); the
# released checkpoint builds it from the ``action_space_cfg`` of its own config file (not in that
# repository), which could override them.
# Smoothing weights ("lambda", multiplied by 1/dt^(2 * order) inside) and ridges. Units: each
# term is a sum of squares in the unit of its data rows (rad^2, (m/s)^2, (m/s^2)^2, rad^2).
THETA_LAMBDA = 1e-6  # heading, 3rd differences
THETA_RIDGE = 1e-8
V_LAMBDA = 1e-6  # speed, 3rd differences (history and future)
V_RIDGE = 1e-4
A_LAMBDA = 1e-4  # acceleration, 2nd differences
A_RIDGE = 1e-4
KAPPA_LAMBDA = 1e-4  # curvature, 2nd differences
KAPPA_RIDGE = 1e-4

# The teacher retries a failed Cholesky factorisation of the acceleration and curvature systems
# with the ridge multiplied by 10 (for the whole batch); these systems are positive definite,
# so this only matters for degenerate float32 inputs. We stop after this many retries.
_MAX_RIDGE_RETRIES = 8


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def check_dt(dt) -> float:
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt <= 0:
        raise ValueError(f"dt must be a positive finite number of seconds, got {dt!r}")
    return float(dt)


def check_tensor(name: str, value, min_dims: int) -> Tensor:
    if not isinstance(value, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() < min_dims:
        raise ValueError(f"{name} must have at least {min_dims} dims, got shape {tuple(value.shape)}")
    if not (value.is_floating_point()):
        raise ValueError(f"{name} must be a floating-point tensor, got {value.dtype}")
    return value


def check_poses(xyz_name: str, xyz: Tensor, rot_name: str | None, rot: Tensor | None,
                 min_steps: int) -> None:
    """xyz (..., N, 3) and rot (..., N, 3, 3) with the same leading dims and N >= min_steps."""
    check_tensor(xyz_name, xyz, 2)
    if xyz.shape[-1] != 3:
        raise ValueError(f"{xyz_name} must have shape (..., N, 3), got {tuple(xyz.shape)}")
    if xyz.shape[-2] < min_steps:
        raise ValueError(f"{xyz_name} must hold at least {min_steps} poses (shape (..., N, 3)), "
                         f"got {tuple(xyz.shape)}")
    if rot is not None:
        check_tensor(rot_name, rot, 3)
        if rot.shape[-2:] != (3, 3) or rot.shape[:-2] != xyz.shape[:-1]:
            raise ValueError(f"{rot_name} must have shape {(*xyz.shape[:-1], 3, 3)} to match "
                             f"{xyz_name} {tuple(xyz.shape)}, got {tuple(rot.shape)}")


def cast(x: Tensor, dtype: torch.dtype | None) -> Tensor:
    return x if dtype is None else x.to(dtype)


def check_v0(v0, lead: torch.Size) -> Tensor:
    check_tensor("v0", v0, 0)
    if v0.shape != lead:
        raise ValueError(f"v0 must have shape {tuple(lead)} (the leading dims of the poses), "
                         f"got {tuple(v0.shape)}")
    return v0


def check_t0(t0_xyz, lead: torch.Size) -> Tensor:
    check_tensor("t0_xyz", t0_xyz, 1)
    if t0_xyz.shape != (*lead, 3):
        raise ValueError(f"t0_xyz must have shape {(*lead, 3)}, got {tuple(t0_xyz.shape)}")
    return t0_xyz


# --------------------------------------------------------------------------------------------
# Angles
# --------------------------------------------------------------------------------------------


def yaw_from_rotation(rot: Tensor) -> Tensor:
    """``(..., 3, 3)`` rotation matrices -> ``(...)`` yaw in [-pi, pi], rad:
    ``atan2(R[1, 0], R[0, 0])`` (the heading of the body x axis in the xy plane; exact for
    z-y-x Euler rotations with |pitch| < pi/2)."""
    return torch.atan2(rot[..., 1, 0], rot[..., 0, 0])


def _wrap(angle: Tensor) -> Tensor:
    """To [-pi, pi] as ``atan2(sin, cos)`` (the teacher's wrapping, not ``kinematics.wrap_angle``)."""
    return torch.atan2(torch.sin(angle), torch.cos(angle))


def unwrap_yaw(yaw: Tensor) -> Tensor:
    """``(..., N)`` -> ``(..., N)``: the first angle kept, then the running sum of the
    consecutive differences each wrapped to [-pi, pi] (so it is continuous across +-pi)."""
    steps = _wrap(torch.diff(yaw, dim=-1))
    return torch.cat([yaw[..., :1], yaw[..., :1] + torch.cumsum(steps, -1)], -1)


# --------------------------------------------------------------------------------------------
# Least-squares building blocks
# --------------------------------------------------------------------------------------------


def _smoothing_gram(n: int, order: int, lam: float, dt: float, like: Tensor) -> Tensor:
    """``(n, n)``: ``lam / dt^(2 order) * D^T D`` with D the ``(max(n - order, 0), n)``
    matrix of order-th differences."""
    eye = torch.eye(n, dtype=like.dtype, device=like.device)
    d = torch.diff(eye, n=order, dim=0) if n > order else eye[:0]
    return (lam / dt ** (2 * order)) * (d.mT @ d)


def _cholesky_solve(lhs: Tensor, rhs: Tensor) -> Tensor:
    """Solves ``lhs x = rhs`` for SPD ``lhs`` (..., n, n), ``rhs`` (..., n). Its callers add a
    positive ridge, so ``lhs`` is SPD for finite inputs; the factorisation's status is not
    read back (no device sync: the student's v0 runs inside a captured CUDA graph), and
    non-finite inputs give non-finite outputs instead of an error."""
    chol = torch.linalg.cholesky_ex(lhs).L
    return torch.cholesky_solve(rhs.unsqueeze(-1), chol).squeeze(-1)


def _solve_with_ridge_retry(base: Tensor, rhs: Tensor, ridge: float) -> Tensor:
    """``(base + ridge I) x = rhs``; when the factorisation fails anywhere in the batch, the
    ridge of the whole batch is multiplied by 10 and it is tried again (as the teacher does)."""
    eye = torch.eye(base.shape[-1], dtype=base.dtype, device=base.device)
    for _ in range(_MAX_RIDGE_RETRIES + 1):
        chol, info = torch.linalg.cholesky_ex(base + ridge * eye)
        if not bool((info != 0).any()):
            return torch.cholesky_solve(rhs.unsqueeze(-1), chol).squeeze(-1)
        ridge *= 10
    raise ValueError("the least-squares system stays singular after raising its ridge "
                     f"{_MAX_RIDGE_RETRIES} times (non-finite inputs?)")


def _trapezoid_normal(xy: Tensor, yaw: Tensor, dt: float) -> tuple[Tensor, Tensor]:
    """Normal equations ``(A^T A, A^T b)`` of the trapezoid position equations
    (``unicycle.trapezoid_rows``).

    Args:
        xy: ``(..., N+1, 2)`` positions p_0..p_N.
        yaw: ``(..., N+1)`` headings at the same times.

    Returns:
        ``(..., N+1, N+1)`` and ``(..., N+1)``, for the unknowns v_0..v_N.
    """
    a, b = trapezoid_rows(xy, yaw, dt)  # (..., 2N, N+1), (..., 2N)
    return a.mT @ a, (a.mT @ b.unsqueeze(-1)).squeeze(-1)


# --------------------------------------------------------------------------------------------
# The steps
# --------------------------------------------------------------------------------------------


def teacher_history_speeds(history_xyz: Tensor, history_rot: Tensor, dt: float, *,
                           v_lambda: float = V_LAMBDA, v_ridge: float = V_RIDGE,
                           dtype: torch.dtype | None = torch.float64) -> Tensor:
    """The teacher's speeds at every history pose (step 1 of the module docstring, all free).

    Args:
        history_xyz: ``(..., H, 3)`` ego positions at t0-(H-1) dt..t0, m (only x, y are used;
            the teacher passes H = 16, the last at the origin, but no pose is assumed to be).
        history_rot: ``(..., H, 3, 3)`` ego rotations at the same times (only their yaw is used).
        dt: time between poses, s (the teacher's 0.1).
        v_lambda, v_ridge: the smoothing weight and ridge (the teacher's defaults).
        dtype: compute dtype (inputs are cast); ``None`` keeps the inputs' dtype.

    Returns:
        ``(..., H)`` signed speeds v_0..v_{H-1}, m/s (not clamped: may be slightly negative).
    """
    dt = check_dt(dt)
    check_poses("history_xyz", history_xyz, "history_rot", history_rot, 2)
    xy = cast(history_xyz[..., :2], dtype)
    rot = cast(history_rot, dtype)
    yaw = unwrap_yaw(yaw_from_rotation(rot))  # only cos / sin of it are used
    ata, atb = _trapezoid_normal(xy, yaw, dt)
    n1 = yaw.shape[-1]
    smooth = _smoothing_gram(n1, 3, v_lambda, dt, yaw)
    eye = torch.eye(n1, dtype=yaw.dtype, device=yaw.device)
    return _cholesky_solve(ata + smooth + v_ridge * eye, atb)


def teacher_smooth_heading(future_rot: Tensor, dt: float, *, theta_lambda: float = THETA_LAMBDA,
                           theta_ridge: float = THETA_RIDGE,
                           dtype: torch.dtype | None = torch.float64) -> Tensor:
    """The teacher's smoothed headings (step 2 of the module docstring).

    Args:
        future_rot: ``(..., T, 3, 3)`` ego rotations at t0+dt..t0+T dt in the t0 frame.
        dt: s. theta_lambda, theta_ridge: smoothing weight and ridge. dtype: as elsewhere.

    Returns:
        ``(..., T+1)`` headings yaw_0 = 0 (fixed, t0) .. yaw_T, rad, continuous (the future
        yaws are unwrapped starting from the first one as given in [-pi, pi]).
    """
    dt = check_dt(dt)
    check_tensor("future_rot", future_rot, 3)
    if future_rot.shape[-2:] != (3, 3) or future_rot.shape[-3] < 1:
        raise ValueError(f"future_rot must have shape (..., T, 3, 3) with T >= 1, "
                         f"got {tuple(future_rot.shape)}")
    target = unwrap_yaw(yaw_from_rotation(cast(future_rot, dtype)))  # (..., T)
    n = target.shape[-1]
    smooth = _smoothing_gram(n + 1, 3, theta_lambda, dt, target)
    eye = torch.eye(n, dtype=target.dtype, device=target.device)
    # yaw_0 = 0 is fixed, so its column of the smoothing term adds nothing to the right side.
    theta = _cholesky_solve(eye + smooth[1:, 1:] + theta_ridge * eye, target)
    return torch.cat([torch.zeros_like(theta[..., :1]), theta], -1)


def teacher_future_speeds(
    future_xyz: Tensor,
    theta: Tensor,
    v0: Tensor,
    dt: float,
    *,
    t0_xyz: Tensor | None = None,
    v_lambda: float = V_LAMBDA,
    v_ridge: float = V_RIDGE,
    dtype: torch.dtype | None = torch.float64,
) -> Tensor:
    """The teacher's future speeds with v_0 fixed (step 1 of the module docstring).

    Args:
        future_xyz: ``(..., T, 3)`` positions at t0+dt..t0+T dt, m (only x, y are used).
        theta: ``(..., T+1)`` headings at t0..t0+T dt, rad (``teacher_smooth_heading``).
        v0: ``(...)`` speed at t0, m/s.
        dt: s.
        t0_xyz: ``(..., 3)`` position at t0, m; default the origin. (The teacher takes the last
            history pose here, which is the origin in the t0 frame.)
        v_lambda, v_ridge, dtype: as in ``teacher_history_speeds``.

    Returns:
        ``(..., T+1)`` v_0 = v0, v_1..v_T, m/s.
    """
    dt = check_dt(dt)
    check_poses("future_xyz", future_xyz, None, None, 1)
    lead, t = future_xyz.shape[:-2], future_xyz.shape[-2]
    check_tensor("theta", theta, 1)
    if theta.shape != (*lead, t + 1):
        raise ValueError(f"theta must have shape {(*lead, t + 1)} (T+1 headings for future_xyz "
                         f"{tuple(future_xyz.shape)}), got {tuple(theta.shape)}")
    v0 = check_v0(v0, lead)
    xy = cast(future_xyz[..., :2], dtype)
    start = (torch.zeros_like(xy[..., :1, :]) if t0_xyz is None
             else cast(check_t0(t0_xyz, lead)[..., None, :2], xy.dtype))
    xy = torch.cat([start, xy], -2)  # (..., T+1, 2)
    theta = theta.to(xy.dtype)
    v0 = v0.to(xy.dtype)
    ata, atb = _trapezoid_normal(xy, theta, dt)
    full = ata + _smoothing_gram(t + 1, 3, v_lambda, dt, theta)
    eye = torch.eye(t, dtype=xy.dtype, device=xy.device)
    rhs = atb[..., 1:] - full[..., 1:, 0] * v0.unsqueeze(-1)
    rest = _cholesky_solve(full[..., 1:, 1:] + v_ridge * eye, rhs)
    return torch.cat([v0.unsqueeze(-1), rest], -1)


def teacher_accel_from_speeds(
    v: Tensor, dt: float, *, a_lambda: float = A_LAMBDA, a_ridge: float = A_RIDGE
) -> Tensor:
    """The teacher's accelerations (step 3): ``(..., T+1)`` speeds, m/s -> ``(..., T)`` a_0..a_{T-1},
    m/s^2, the smoothed finite differences. Computes in ``v``'s dtype."""
    dt = check_dt(dt)
    check_tensor("v", v, 1)
    if v.shape[-1] < 2:
        raise ValueError(f"v must have shape (..., T+1) with T >= 1, got {tuple(v.shape)}")
    dv = torch.diff(v, dim=-1) / dt
    n = dv.shape[-1]
    eye = torch.eye(n, dtype=v.dtype, device=v.device)
    return _solve_with_ridge_retry(eye + _smoothing_gram(n, 2, a_lambda, dt, v), dv, a_ridge)


def teacher_curvature(theta: Tensor, v: Tensor, accel: Tensor, dt: float, *,
                      kappa_lambda: float = KAPPA_LAMBDA,
                      kappa_ridge: float = KAPPA_RIDGE) -> Tensor:
    """The teacher's curvatures (step 4).

    Args:
        theta: ``(..., T+1)`` headings, rad (``teacher_smooth_heading``).
        v: ``(..., T+1)`` speeds, m/s (``teacher_future_speeds``).
        accel: ``(..., T)`` accelerations, m/s^2 (``teacher_accel_from_speeds``).
        dt: s.

    Returns:
        ``(..., T)`` k_0..k_{T-1}, 1/m: per step the ridge/smoothness-regularised
        ``dyaw_t / s_t`` with ``s_t = v_t dt + a_t dt^2 / 2`` (-> 0 where the ego stands).
    """
    dt = check_dt(dt)
    for name, x in (("theta", theta), ("v", v), ("accel", accel)):
        check_tensor(name, x, 1)
    if theta.shape != v.shape or accel.shape != (*v.shape[:-1], v.shape[-1] - 1) or v.shape[-1] < 2:
        raise ValueError(f"theta and v must have shape (..., T+1) and accel (..., T), T >= 1; got "
                         f"theta {tuple(theta.shape)}, v {tuple(v.shape)}, accel {tuple(accel.shape)}")
    dyaw = torch.diff(theta, dim=-1)
    s = dt * v[..., :-1] + (dt ** 2 / 2.0) * accel
    n = s.shape[-1]
    base = torch.diag_embed(s * s) + _smoothing_gram(n, 2, kappa_lambda, dt, s)
    return _solve_with_ridge_retry(base, s * dyaw, kappa_ridge)
