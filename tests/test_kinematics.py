"""distill.kinematics: the unicycle rollout (the oracle of a future compiled op), its inverse, the
speed at t0 from the history, and the action statistics."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from distill.kinematics import (
    ActionNormalization,
    actions_from_trajectory,
    estimate_v0,
    unicycle_rollout_reference,
    wrap_angle,
)
from distill.kinematics.inverse import STOP_EPS
from distill.world.planner import drive, unicycle_step
from distill.world.scenarios import build_scene
from distill.world.scene import FUTURE_INDICES, T0_INDEX

DT = 0.1
F64 = torch.float64
EPS32 = torch.finfo(torch.float32).eps


def smooth_actions(batch: int, steps: int, dtype=F64, seed: int = 0):
    """Random smooth actions (sums of 0.1-0.4 Hz sines) and v0 in [6, 14] m/s; (a, k, v0)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(steps, dtype=F64) * DT

    def signal(amp):
        out = torch.zeros(batch, steps, dtype=F64)
        for f in (0.1, 0.2, 0.4):
            phase = 2 * math.pi * torch.rand(batch, 1, generator=g, dtype=F64)
            out += amp * torch.randn(batch, 1, generator=g, dtype=F64) * torch.sin(2 * math.pi * f * t + phase)
        return out

    a, k, v0 = signal(0.5), signal(0.03), 6 + 8 * torch.rand(batch, generator=g, dtype=F64)
    return a.to(dtype), k.to(dtype), v0.to(dtype)


def speeds(a, v0):
    """v_0..v_T of the model, (..., T+1)."""
    return torch.cat([v0[..., None], v0[..., None] + torch.cumsum(a * DT, -1)], -1)


def as_xyz(x, y):
    return torch.stack([x, y, torch.zeros_like(x)], -1)


# --------------------------------------------------------------------------------------------
# wrap_angle
# --------------------------------------------------------------------------------------------


def test_wrap_angle_range_and_edges():
    pi = math.pi
    got = wrap_angle(torch.tensor([0.5, pi, -pi, 3 * pi, -3.5, 7.0, -pi + 1e-9], dtype=F64))
    want = torch.tensor([0.5, pi, pi, pi, -3.5 + 2 * pi, 7.0 - 2 * pi, -pi + 1e-9], dtype=F64)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Forward model
# --------------------------------------------------------------------------------------------


def naive_rollout(a, k, v0):
    """The recurrences written out one step at a time (float64 Python floats), (x, y, yaw) lists."""
    x = y = yaw = 0.0
    v = v0
    out = []
    for at, kt in zip(a, k):
        v1 = v + at * DT
        yaw1 = yaw + kt * v * DT + kt * at * DT * DT / 2
        x = x + DT / 2 * (v * math.cos(yaw) + v1 * math.cos(yaw1))
        y = y + DT / 2 * (v * math.sin(yaw) + v1 * math.sin(yaw1))
        yaw, v = yaw1, v1
        out.append((x, y, yaw))
    return out


@pytest.mark.parametrize("oracle", ["loop", "world"])
def test_rollout_matches_step_by_step_recurrences_float64(oracle):
    g = torch.Generator().manual_seed(1)
    a = 2 * torch.randn(3, 40, generator=g, dtype=F64)  # rough actions, v may turn negative
    k = 0.1 * torch.randn(3, 40, generator=g, dtype=F64)
    v0 = torch.tensor([0.0, 5.0, 12.0], dtype=F64)
    got = torch.stack(unicycle_rollout_reference(a, k, v0, DT), -1)  # (3, 40, 3)
    for b in range(3):
        if oracle == "loop":
            want = naive_rollout(a[b].tolist(), k[b].tolist(), float(v0[b]))
        else:  # the built-in world's integrator
            state, want = (0.0, 0.0, 0.0, float(v0[b])), []
            for at, kt in zip(a[b].tolist(), k[b].tolist()):
                state = unicycle_step(*state, at, kt, dt=DT)
                want.append(state[:3])
        # cumsum and the loop round differently: ~1e-16 relative per step on values <= ~100.
        torch.testing.assert_close(got[b], torch.tensor(want, dtype=F64), rtol=1e-12, atol=1e-12)


def test_rollout_constant_speed_and_curvature_is_a_scaled_circle():
    # Exact: yaw_t = k v t. The trapezoid step is v dt cos(h) along the chord's direction,
    # h = k v dt / 2, where the arc's chord is v dt sin(h) / h: every step, hence every position,
    # is the exact circle's scaled by c = h cot h = 1 - h^2/3 + ... (2nd order in dt).
    v, k, T = 10.0, torch.tensor([0.05, -0.2, 1e-3], dtype=F64), 64
    x, y, yaw = unicycle_rollout_reference(torch.zeros(3, T, dtype=F64), k[:, None].expand(3, T),
                                           torch.full((3,), v, dtype=F64), DT)
    t = torch.arange(1, T + 1, dtype=F64) * DT
    ks = k[:, None] * v * t
    circle_x, circle_y = torch.sin(ks) / k[:, None], (1 - torch.cos(ks)) / k[:, None]
    h = k[:, None] * v * DT / 2
    c = h / torch.tan(h)
    torch.testing.assert_close(yaw, ks, rtol=0, atol=1e-12)
    torch.testing.assert_close(x, c * circle_x, rtol=0, atol=1e-11)
    torch.testing.assert_close(y, c * circle_y, rtol=0, atol=1e-11)
    # and within the O(dt^2) bound (1 - c) |p| <= h^2 / 3 |p| of the circle itself
    bound = h**2 / 3 * torch.hypot(circle_x, circle_y) * 1.01
    assert ((x - circle_x).abs() <= bound).all() and ((y - circle_y).abs() <= bound).all()
    assert (x - circle_x).abs().max() > 1e-3  # the 2nd-order error is real (k = 0.2: ~0.13 m)


def test_rollout_straight_constant_acceleration_is_exact():
    # v is linear in t, so the trapezoid rule integrates it exactly: x = v0 t + a t^2 / 2.
    T, v0, a = 64, torch.tensor([3.0, 15.0], dtype=F64), torch.tensor([1.5, -0.2], dtype=F64)
    x, y, yaw = unicycle_rollout_reference(a[:, None].expand(2, T), torch.zeros(2, T, dtype=F64), v0, DT)
    t = torch.arange(1, T + 1, dtype=F64) * DT
    torch.testing.assert_close(x, v0[:, None] * t + a[:, None] * t**2 / 2, rtol=0, atol=1e-11)
    assert (y == 0).all() and (yaw == 0).all()


def test_rollout_zero_curvature_stays_on_the_x_axis():
    a, _, v0 = smooth_actions(4, 64)
    x, y, yaw = unicycle_rollout_reference(a, torch.zeros_like(a), v0, DT)
    assert (y == 0).all() and (yaw == 0).all()
    torch.testing.assert_close(x, torch.cumsum(DT / 2 * (speeds(a, v0)[:, :-1] + speeds(a, v0)[:, 1:]), -1))


def test_rollout_batched_shapes_float32_and_gradients():
    a, k, v0 = smooth_actions(6, 64)
    ref = torch.stack(unicycle_rollout_reference(a, k, v0, DT), -1)
    got = unicycle_rollout_reference(a.float().view(2, 3, 64), k.float().view(2, 3, 64), v0.float().view(2, 3), DT)
    assert all(t.shape == (2, 3, 64) and t.dtype == torch.float32 for t in got)
    # float32 rounding accumulates over the T terms of each cumsum: <= T eps |value|.
    tol = 64 * EPS32 * ref.abs().max()
    torch.testing.assert_close(torch.stack(got, -1).view(6, 64, 3).double(), ref, rtol=0, atol=float(tol))
    args = (a[:2, :5].clone().requires_grad_(), k[:2, :5].clone().requires_grad_(), v0[:2].clone().requires_grad_())
    assert torch.autograd.gradcheck(lambda *z: unicycle_rollout_reference(*z, DT), args)


# --------------------------------------------------------------------------------------------
# Inverse model
# --------------------------------------------------------------------------------------------


def test_inverse_of_forward_is_exact_without_regularization():
    a, k, v0 = smooth_actions(32, 64)
    assert speeds(a, v0).min() > 1.0
    x, y, yaw = unicycle_rollout_reference(a, k, v0, DT)
    a2, k2 = actions_from_trajectory(as_xyz(x, y), yaw, v0, DT, smoothness=0.0, stop_eps=0.0)
    # float64 round-off (~1e-14 m on positions) grows by 2/dt per step and along T: << 1e-9.
    torch.testing.assert_close(a2, a, rtol=0, atol=1e-9)
    torch.testing.assert_close(k2, k, rtol=0, atol=1e-9)


def test_inverse_of_forward_with_default_regularization():
    a, k, v0 = smooth_actions(32, 64)
    x, y, yaw = unicycle_rollout_reference(a, k, v0, DT)
    a2, k2 = actions_from_trajectory(as_xyz(x, y), yaw, v0, DT)
    # The smoothness rows bias a by <= 2e-3 m/s^2 at the ends of the horizon, < 1e-6 inside
    # (SMOOTHNESS comment); the guard biases k by a relative STOP_EPS / d^2 <= 1e-4 (d >= 0.1 m).
    assert (a2 - a).abs().max() < 5e-3
    assert (a2 - a)[:, 10:-10].abs().max() < 1e-5
    torch.testing.assert_close(k2, k, rtol=0, atol=1e-5)
    # and the actions drive the model back through the poses
    x2, y2, yaw2 = unicycle_rollout_reference(a2, k2, v0, DT)
    assert torch.hypot(x2 - x, y2 - y).max() < 1e-3 and (yaw2 - yaw).abs().max() < 1e-4


def test_inverse_float32_close_to_float64_and_batched():
    a, k, v0 = smooth_actions(6, 64)
    x, y, yaw = unicycle_rollout_reference(a, k, v0, DT)
    xyz = as_xyz(x, y)
    a64, k64 = actions_from_trajectory(xyz, yaw, v0, DT)
    a32, k32 = actions_from_trajectory(xyz.float().view(2, 3, 64, 3), yaw.float().view(2, 3, 64), v0.float().view(2, 3), DT)
    assert a32.shape == k32.shape == (2, 3, 64) and a32.dtype == torch.float32
    # Rounding the positions to float32 moves them by eps |x|; a is their 2nd difference / dt^2.
    tol_a = 10 * EPS32 * xyz.abs().max() / DT**2
    d_min = DT * speeds(a, v0).min()
    tol_k = 10 * EPS32 * (yaw.abs().max() + 1) / d_min
    torch.testing.assert_close(a32.view(6, 64).double(), a64, rtol=0, atol=float(tol_a))
    torch.testing.assert_close(k32.view(6, 64).double(), k64, rtol=0, atol=float(tol_k))


def test_inverse_absorbs_a_wrong_v0_in_the_first_steps():
    a, k, v0 = smooth_actions(8, 64)
    x, y, yaw = unicycle_rollout_reference(a, k, v0, DT)
    err = 0.05
    a2, _ = actions_from_trajectory(as_xyz(x, y), yaw, v0 + err, DT)
    # Without smoothing the error would alternate +-2 err/dt = 1 m/s^2 up to the horizon.
    assert (a2 - a)[:, 2:].abs().max() < 0.1 * err / DT
    assert (a2 - a)[:, 10:].abs().max() < 0.01 * err / DT


def test_inverse_through_a_full_stop():
    # 8 m/s, brake at 4 m/s^2 to a stop at t = 2 s, stand; curvature 0.05 throughout.
    T = 64
    a = torch.where(torch.arange(T) < 20, -4.0, 0.0).to(F64)[None]
    k = torch.full((1, T), 0.05, dtype=F64)
    v0 = torch.tensor([8.0], dtype=F64)
    assert speeds(a, v0)[0, 20:].abs().max() < 1e-12
    x, y, yaw = unicycle_rollout_reference(a, k, v0, DT)
    a2, k2 = actions_from_trajectory(as_xyz(x, y), yaw, v0, DT)
    assert torch.isfinite(a2).all() and torch.isfinite(k2).all()
    assert (k2[0, 20:] == 0).all()  # standing: no heading change, k exactly 0
    torch.testing.assert_close(k2[0, :15], k[0, :15], rtol=0, atol=1e-4)
    # The 4 m/s^2 jump of a at the stop is smoothed over a few steps, exact away from it.
    assert (a2 - a)[0, :14].abs().max() < 0.05 and (a2 - a)[0, 26:].abs().max() < 0.05
    x2, y2, _ = unicycle_rollout_reference(a2, k2, v0, DT)
    assert torch.hypot(x2 - x, y2 - y).max() < 0.01


def test_inverse_standing_still_and_starting_from_rest():
    zeros = torch.zeros(2, 64, dtype=F64)
    a2, k2 = actions_from_trajectory(as_xyz(zeros, zeros), zeros, torch.zeros(2, dtype=F64), DT)
    assert (a2.abs() < 1e-12).all() and (k2 == 0).all()
    # From rest at 2 m/s^2, k = 0.1: step 0 moves d = 0.01 m, the guard's relative bias is
    # STOP_EPS / d^2 = 1e-2 there and ~STOP_EPS / (0.03 m)^2 on the next step.
    a = torch.full((1, 64), 2.0, dtype=F64)
    k = torch.full((1, 64), 0.1, dtype=F64)
    v0 = torch.zeros(1, dtype=F64)
    x, y, yaw = unicycle_rollout_reference(a, k, v0, DT)
    a2, k2 = actions_from_trajectory(as_xyz(x, y), yaw, v0, DT)
    assert (a2 - a).abs().max() < 1e-6
    d = DT * (speeds(a, v0)[:, :-1] + speeds(a, v0)[:, 1:]) / 2
    torch.testing.assert_close(k2, k * d**2 / (d**2 + STOP_EPS), rtol=1e-6, atol=0)


def test_inverse_wraps_heading_differences_and_has_finite_gradients():
    a, k, v0 = smooth_actions(2, 6)
    x, y, yaw = unicycle_rollout_reference(a, k, v0, DT)
    shifted = yaw + 2 * math.pi * torch.tensor([[0, 1, -1, 3, 0, 2]], dtype=F64)
    for y_in in (yaw, shifted):
        a2, k2 = actions_from_trajectory(as_xyz(x, y), y_in, v0, DT, smoothness=0.0, stop_eps=0.0)
        torch.testing.assert_close(k2, k, rtol=0, atol=1e-9)
    args = (as_xyz(x, y).requires_grad_(), yaw.clone().requires_grad_(), v0.clone().requires_grad_())
    assert torch.autograd.gradcheck(lambda *z: actions_from_trajectory(*z, DT), args)


def world_future(behaviour: str, seed: int):
    """A built-in-world drive in float64: future xyz (64, 3) and yaw (64,) in the t0 frame, v0
    and the planner's actions a, k (64,) from t0."""
    track = drive(build_scene(np.random.default_rng(seed), behaviour))
    x0, y0, yaw0 = track.x[T0_INDEX], track.y[T0_INDEX], track.yaw[T0_INDEX]
    dx, dy = track.x[FUTURE_INDICES] - x0, track.y[FUTURE_INDICES] - y0
    c, s = np.cos(yaw0), np.sin(yaw0)
    xyz = np.stack([c * dx + s * dy, -s * dx + c * dy, np.zeros_like(dx)], -1)
    steps = slice(T0_INDEX, T0_INDEX + 64)
    return (torch.tensor(xyz), torch.tensor(track.yaw[FUTURE_INDICES] - yaw0), torch.tensor(track.v[T0_INDEX]),
            torch.tensor(track.a[steps]), torch.tensor(track.k[steps]), torch.tensor(track.v[T0_INDEX:T0_INDEX + 65]))


# red_light 11 and pedestrian 3 stop (and stand 15 and 9 steps); turn_left and curve steer.
@pytest.mark.parametrize("behaviour,seed", [("red_light", 11), ("pedestrian", 3), ("turn_left", 2), ("curve", 3)])
def test_inverse_recovers_the_world_planners_actions(behaviour, seed):
    xyz, yaw, v0, a, k, v = world_future(behaviour, seed)
    assert (v == 0).any() == (behaviour in ("red_light", "pedestrian"))
    a2, k2 = actions_from_trajectory(xyz, yaw, v0, DT, smoothness=0.0)
    torch.testing.assert_close(a2, a, rtol=0, atol=1e-7)
    moving = DT * (v[:-1] + v[1:]) / 2 > 0.1  # standing, the planner's k moves nothing
    torch.testing.assert_close(k2[moving], k[moving], rtol=2e-4, atol=1e-9)  # STOP_EPS / d^2 <= 1e-4


# --------------------------------------------------------------------------------------------
# estimate_v0
# --------------------------------------------------------------------------------------------

HIST_T = torch.arange(-15, 1, dtype=F64) * DT  # t0 - 1.5 s .. t0


def line_history(v, a):
    """(..., 16, 3) straight history along x with speed v + a t at t (v, a broadcastable)."""
    x = v[..., None] * HIST_T + a[..., None] * HIST_T**2 / 2
    return as_xyz(x, torch.zeros_like(x))


def test_estimate_v0_constant_speed_is_exact():
    v = torch.tensor([0.5, 8.0, 30.0], dtype=F64)
    torch.testing.assert_close(estimate_v0(line_history(v, torch.zeros(3, dtype=F64)), DT), v, rtol=1e-12, atol=0)


def test_estimate_v0_constant_acceleration():
    v, a = torch.tensor([10.0, 10.0, 12.0], dtype=F64), torch.tensor([2.0, -3.0, 0.5], dtype=F64)
    hist = line_history(v, a)
    torch.testing.assert_close(estimate_v0(hist, DT, ridge=0.0), v, rtol=1e-12, atol=0)
    # The default ridge shrinks a, shifting v0 by ~1e-3 s * a (V0_RIDGE comment).
    assert ((estimate_v0(hist, DT) - v).abs() <= 1.5e-3 * a.abs()).all()


def test_estimate_v0_stopped_ego_is_zero_with_finite_gradient():
    hist = torch.zeros(2, 16, 3, dtype=F64, requires_grad=True)
    v0 = estimate_v0(hist, DT)
    assert (v0 == 0).all()
    v0.sum().backward()
    assert torch.isfinite(hist.grad).all()


def test_estimate_v0_clamps_at_zero_after_stopping():
    # Braked at 4 m/s^2 to a stop at t0 - 0.5 s, then stood: the fit must not go negative.
    t_stop = -0.5
    tau = torch.clamp(HIST_T, max=t_stop) - t_stop  # <= 0: time before the stop
    x = -0.5 * 4.0 * tau**2
    x = x - x[-1]
    assert estimate_v0(as_xyz(x, torch.zeros_like(x)), DT) == 0  # the unclamped fit is -0.60 m/s


def test_estimate_v0_on_a_circle():
    # Poses on the exact circle: every chord is 2 sin(h) / k with h = k v dt / 2, so the fit
    # returns the chord speed v sin(h) / h (relative error h^2 / 6 = (k v dt)^2 / 24).
    v, k = torch.tensor([5.0, 15.0], dtype=F64), torch.tensor([0.2, -0.02], dtype=F64)
    ks = (k * v)[:, None] * HIST_T
    hist = as_xyz(torch.sin(ks) / k[:, None], (1 - torch.cos(ks)) / k[:, None])
    h = k * v * DT / 2
    torch.testing.assert_close(estimate_v0(hist, DT), v * torch.sin(h) / h, rtol=1e-12, atol=0)


def test_estimate_v0_batched_float32():
    v = torch.tensor([[3.0, 9.0], [14.0, 20.0]], dtype=F64)
    a = torch.tensor([[0.5, -1.0], [1.0, -2.0]], dtype=F64)
    hist = line_history(v, a)
    got = estimate_v0(hist.float(), DT)
    assert got.shape == (2, 2) and got.dtype == torch.float32
    # v0 is linear in the arc lengths s_i with sum |coefficient| = 4.3 1/s; each s_i carries <= 16
    # roundings of |s| <= 1.5 s * v.
    tol = 4.3 * 16 * EPS32 * 1.5 * v.max()
    torch.testing.assert_close(got.double(), estimate_v0(hist, DT), rtol=0, atol=float(tol))


# --------------------------------------------------------------------------------------------
# ActionNormalization
# --------------------------------------------------------------------------------------------


def test_action_stats_from_actions_and_round_trips():
    accel = torch.tensor([[1.0, 3.0], [1.0, 3.0]])
    curv = torch.full((2, 2), 0.02)
    stats = ActionNormalization.from_actions(accel, curv)
    torch.testing.assert_close(stats.mean, torch.tensor([2.0, 0.02]))
    torch.testing.assert_close(stats.std, torch.tensor([1.0, 1e-6]))  # curvature: the floor
    actions = torch.randn(5, 64, 2, dtype=F64)
    norm = stats.normalize(actions)
    assert norm.dtype == F64
    torch.testing.assert_close(norm[..., 0], actions[..., 0] - 2.0)
    torch.testing.assert_close(stats.denormalize(norm), actions)
    buf = io.BytesIO()
    torch.save({"action_stats": stats.to_dict()}, buf)
    buf.seek(0)
    back = ActionNormalization.from_dict(torch.load(buf, weights_only=True)["action_stats"])
    assert torch.equal(back.mean, stats.mean) and torch.equal(back.std, stats.std)
    moved = stats.to(F64)
    assert moved.mean.dtype == moved.std.dtype == F64 and stats.mean.dtype == torch.float32


def test_action_stats_bins():
    stats = ActionNormalization(torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.01]))
    centers = stats.bin_centers(8)  # width 1 std over [-4, 4] std
    assert centers.shape == (8, 2)
    torch.testing.assert_close(centers[:, 0], 1.0 + 0.5 * (torch.arange(8) - 3.5))
    torch.testing.assert_close(centers[:, 1], 0.01 * (torch.arange(8) - 3.5))
    bins = stats.to_bins(centers, 8)
    assert bins.dtype == torch.long and (bins == torch.arange(8)[:, None]).all()
    far = torch.tensor([[-100.0, 100.0], [1.0 - 2.0, 0.0399]])  # beyond the edges; edge values
    torch.testing.assert_close(stats.to_bins(far, 8), torch.tensor([[0, 7], [0, 7]]))
    with pytest.raises(ValueError, match="shape \\(2,\\)"):
        ActionNormalization(torch.zeros(3), torch.ones(3))


def test_dt_has_no_default():
    """The step is the data's (0.1 s here, 0.5 s on nuScenes): never a silent default."""
    a, k, v0 = smooth_actions(2, 8)
    x, y, yaw = unicycle_rollout_reference(a, k, v0, DT)
    with pytest.raises(TypeError, match="dt"):
        unicycle_rollout_reference(a, k, v0)
    with pytest.raises(TypeError, match="dt"):
        actions_from_trajectory(as_xyz(x, y), yaw, v0)
    with pytest.raises(TypeError, match="dt"):
        estimate_v0(as_xyz(x, y))
