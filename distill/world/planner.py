"""The built-in world's teacher: a rule-based planner that drives the ego closed-loop over the
scene's time grid. Each 0.1 s it picks an acceleration (cruise control, braking targets for
curves, signs, stop lines and pedestrians, IDM car following) and a curvature (pure pursuit on
its path), clips both to the bounds below and integrates them with the same discrete unicycle
model the students use, so every trajectory it writes is kinematically feasible."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..constants import DT
from .scene import EGO_FRONT, TIMES, VEHICLE_SIZE, Scene

A_MAX = 2.5  # m/s^2, strongest acceleration
A_MIN = -6.0  # m/s^2, hardest braking
K_MAX = 0.2  # 1/m, tightest curvature (5 m radius)
A_LAT = 2.5  # m/s^2, lateral acceleration the planner accepts in curves
IDM_GAP, IDM_HEADWAY, IDM_ACCEL, IDM_DECEL = 2.5, 1.4, 2.0, 2.5


@dataclass
class EgoTrack:
    """The ego's states on TIMES (x, y, yaw, v, s) and the actions between them (a, k)."""

    x: np.ndarray
    y: np.ndarray
    yaw: np.ndarray
    v: np.ndarray
    s: np.ndarray
    a: np.ndarray
    k: np.ndarray


def unicycle_step(x, y, yaw, v, a, k, dt=DT):
    """One step of the discrete unicycle model (the students' kinematics):
    v' = v + a dt, yaw' = yaw + k v dt + k a dt^2 / 2, x and y by the trapezoid rule."""
    v1 = v + a * dt
    yaw1 = yaw + k * v * dt + 0.5 * k * a * dt * dt
    x1 = x + 0.5 * dt * (v * np.cos(yaw) + v1 * np.cos(yaw1))
    y1 = y + 0.5 * dt * (v * np.sin(yaw) + v1 * np.sin(yaw1))
    return x1, y1, yaw1, v1


def _brake_to(v: float, v_target: float, distance: float) -> float:
    """Constant deceleration that reaches v_target after ``distance`` metres."""
    return (v_target ** 2 - v ** 2) / (2.0 * max(distance, 0.5))


def acceleration(scene: Scene, i: int, s: float, v: float) -> float:
    limit = scene.speed_limit
    if scene.sign is not None and s + EGO_FRONT >= scene.sign[0]:
        limit = scene.sign[1]
    # Curves: the speed that keeps lateral acceleration under A_LAT, here and at points ahead.
    reach = max(40.0, 7.0 * v)
    ahead = np.arange(0.0, reach, 2.0)
    v_curve = np.sqrt(A_LAT / np.maximum(np.abs(scene.path.curvature_at(s + ahead)), 1e-6))
    v_des = min(limit, float(v_curve[:2].min()))
    a = float(np.clip(0.5 * (v_des - v), -1.5, 1.5))  # cruise control
    for d, vc in zip(ahead[2:], v_curve[2:]):
        if vc < v:
            a = min(a, _brake_to(v, vc, d))
    if scene.sign is not None and scene.sign[1] < v:
        d = scene.sign[0] - (s + EGO_FRONT)
        if 0 < d < reach:
            a = min(a, _brake_to(v, scene.sign[1], d))
    for stop in scene.stops:
        d = stop.s - (s + EGO_FRONT)
        if stop.active[i] and -1.0 < d < reach:
            a = min(a, -v / DT if d <= 0.3 else -v * v / (2 * d))
    if scene.lead is not None:
        v_lead = scene.lead.v[i]
        gap = scene.lead.s[i] - VEHICLE_SIZE[0] / 2 - (s + EGO_FRONT)
        s_star = IDM_GAP + v * IDM_HEADWAY + v * (v - v_lead) / (2 * np.sqrt(IDM_ACCEL * IDM_DECEL))
        idm = IDM_ACCEL * (1 - (v / limit) ** 4 - (max(s_star, 0.0) / max(gap, 0.1)) ** 2)
        a = min(a, idm)
    return float(np.clip(max(a, -v / DT), A_MIN, A_MAX))


def curvature(scene: Scene, x: float, y: float, yaw: float, v: float, s: float) -> float:
    """Pure pursuit towards the path point one lookahead distance ahead."""
    lookahead = float(np.clip(4.0 + 0.6 * v, 5.0, 15.0))
    tx, ty, _ = scene.path.pose_at(s + lookahead)
    alpha = np.arctan2(ty - y, tx - x) - yaw
    return float(np.clip(2.0 * np.sin(alpha) / lookahead, -K_MAX, K_MAX))


def drive_from(scene: Scene, i0: int, state, s_hint: float, steps: int) -> EgoTrack:
    """Run the planner for ``steps`` steps from time index ``i0`` and the ego ``state`` (x, y,
    yaw, v); ``s_hint`` is an arc length of the path near the ego (where to look for it). The
    track's times are the scene's from ``i0`` on."""
    x, y, yaw, v, s = (np.zeros(steps + 1) for _ in range(5))
    a, k = np.zeros(steps), np.zeros(steps)
    x[0], y[0], yaw[0], v[0] = state
    for j in range(steps):
        s[j] = scene.path.project(x[j], y[j], s[j - 1] if j else s_hint)
        a[j] = acceleration(scene, i0 + j, s[j], v[j])
        k[j] = curvature(scene, x[j], y[j], yaw[j], v[j], s[j])
        x[j + 1], y[j + 1], yaw[j + 1], v[j + 1] = unicycle_step(
            x[j], y[j], yaw[j], v[j], a[j], k[j])
    s[-1] = scene.path.project(x[-1], y[-1], s[-2])
    return EgoTrack(x, y, yaw, v, s, a, k)


def drive(scene: Scene) -> EgoTrack:
    """Run the planner over TIMES from the start of the ego path at ``scene.v_init``."""
    return drive_from(scene, 0, (*scene.path.pose_at(0.0), scene.v_init), 0.0, len(TIMES) - 1)
