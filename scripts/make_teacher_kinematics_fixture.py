"""Writes tests/data/alpamayo_action_space_<commit>.npz: the teacher's own v0 and inverse on
fixed inputs, for tests/test_teacher_kinematics.py.

It runs the teacher's action-space code itself (NVlabs/alpamayo, ``src/alpamayo_r1``), imported
from a checkout given on the command line, e.g.

    git --git-dir=<mirror> archive 1cba38cabffb4b4416dbdd312c868e21ccd57394 \\
        src/alpamayo_r1/__init__.py src/alpamayo_r1/action_space src/alpamayo_r1/geometry \\
        src/alpamayo_r1/common | tar -x -C /tmp/alpamayo
    pip install einops            # the teacher's only missing light dependency here
    python scripts/make_teacher_kinematics_fixture.py --teacher-src /tmp/alpamayo/src

Only ``alpamayo_r1.action_space`` 's package ``__init__`` is bypassed (it imports the discrete
tokenizer, hence hydra); every module whose code runs is the teacher's, unmodified. Its needs:
torch, numpy, scipy, einops, colorlog.

Inputs: half built-in-world samples (``distill.world.generate.simulate``, seed 0, train split),
half random smooth unicycle drives (some with pose noise, roll / pitch, a stop, a U-turn whose
heading crosses +-pi). Inputs are stored as float32 (the teacher's data are float32); the
teacher is run on them once in float64 and once in float32.
"""
from __future__ import annotations

import argparse
import importlib
import math
import sys
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_COMMIT = "1cba38cabffb4b4416dbdd312c868e21ccd57394"
DT = 0.1
HISTORY, FUTURE = 16, 64


def load_teacher(src: Path):
    """(action-space module, utils module) of the teacher checkout under ``src``."""
    pkg_dir = src / "alpamayo_r1"
    if not (pkg_dir / "action_space" / "unicycle_accel_curvature.py").is_file():
        raise SystemExit(f"{src}: no alpamayo_r1/action_space/unicycle_accel_curvature.py here")
    sys.path.insert(0, str(src))
    # Register alpamayo_r1.action_space as a bare package so that importing its submodules does
    # not run its __init__ (which pulls in hydra through the discrete tokenizer).
    importlib.import_module("alpamayo_r1")
    bare = types.ModuleType("alpamayo_r1.action_space")
    bare.__path__ = [str(pkg_dir / "action_space")]
    sys.modules["alpamayo_r1.action_space"] = bare
    uac = importlib.import_module("alpamayo_r1.action_space.unicycle_accel_curvature")
    utils = importlib.import_module("alpamayo_r1.action_space.utils")
    rotation = importlib.import_module("alpamayo_r1.geometry.rotation")
    return uac, utils, rotation


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def world_samples(n: int, seed: int):
    from distill.world.generate import simulate

    hx, hr, fx, fr = [], [], [], []
    for i in range(n):
        _, _, row = simulate(seed, "train", i)
        hx.append(row["ego_history_xyz"]), hr.append(row["ego_history_rot"])
        fx.append(row["trajectory_xyz"]), fr.append(row["trajectory_rot"])
    return np.stack(hx), np.stack(hr), np.stack(fx), np.stack(fr)


def rotation_zyx(yaw, pitch, roll):
    """(..., 3, 3) = Rz(yaw) Ry(pitch) Rx(roll)."""
    cy, sy, cp, sp, cr, sr = (np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch),
                              np.cos(roll), np.sin(roll))
    r = np.empty(np.shape(yaw) + (3, 3))
    r[..., 0, 0], r[..., 0, 1], r[..., 0, 2] = cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr
    r[..., 1, 0], r[..., 1, 1], r[..., 1, 2] = sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr
    r[..., 2, 0], r[..., 2, 1], r[..., 2, 2] = -sp, cp * sr, cp * cr
    return r


def smooth_signal(rng, steps, amp):
    t = np.arange(steps) * DT
    out = np.zeros(steps)
    for f in (0.08, 0.2, 0.45):
        out += amp * rng.normal() * np.sin(2 * math.pi * f * t + 2 * math.pi * rng.random())
    return out


def drive(v_start, a, k):
    """Unicycle poses (x, y, yaw, v) over len(a)+1 steps from the origin; the speed is kept
    >= 0 (an ego that reaches 0 stays stopped until the acceleration turns positive)."""
    n = len(a) + 1
    x, y, yaw, v = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    v[0] = v_start
    for i in range(n - 1):
        ai = max(a[i], -v[i] / DT)
        v[i + 1] = v[i] + ai * DT
        yaw[i + 1] = yaw[i] + k[i] * (v[i] * DT + ai * DT * DT / 2)
        x[i + 1] = x[i] + DT / 2 * (v[i] * np.cos(yaw[i]) + v[i + 1] * np.cos(yaw[i + 1]))
        y[i + 1] = y[i] + DT / 2 * (v[i] * np.sin(yaw[i]) + v[i + 1] * np.sin(yaw[i + 1]))
    return x, y, yaw, v


def random_samples(n: int, seed: int):
    """n random smooth drives in the t0 frame: (hist_xyz, hist_rot, fut_xyz, fut_rot)."""
    rng = np.random.default_rng(seed)
    steps = HISTORY - 1 + FUTURE
    hx, hr, fx, fr = [], [], [], []
    for i in range(n):
        v_start = rng.uniform(0.0, 25.0)
        a = smooth_signal(rng, steps, 0.8)
        k = smooth_signal(rng, steps, 0.02)
        if i == 0:  # stands still throughout
            v_start, a, k = 0.0, np.zeros(steps), np.zeros(steps)
        elif i == 1:  # slow U-turn: the future heading crosses +-pi
            v_start, a, k = 3.0, np.zeros(steps), np.full(steps, 0.19)
        elif i == 2:  # brakes to a stop inside the future
            v_start, a = 8.0, np.concatenate([np.zeros(HISTORY + 5), np.full(steps - HISTORY - 5, -2.0)])
        x, y, yaw, _ = drive(v_start, a, k)
        t0 = HISTORY - 1
        c, s = math.cos(yaw[t0]), math.sin(yaw[t0])
        dx, dy = x - x[t0], y - y[t0]
        xyz = np.stack([c * dx + s * dy, -s * dx + c * dy, np.zeros_like(dx)], -1)
        rel_yaw = yaw - yaw[t0]
        pitch = roll = np.zeros_like(rel_yaw)
        if i % 4 == 3:  # 1 cm position and 2 mrad heading noise
            xyz[:, :2] += rng.normal(0, 0.01, (len(xyz), 2))
            rel_yaw = rel_yaw + rng.normal(0, 0.002, len(xyz))
            xyz[t0] = 0.0
            rel_yaw[t0] = 0.0
        if i % 4 == 1 and i > 1:  # a little pitch and roll (a slope, body roll) and height
            pitch = 0.03 * np.sin(np.arange(len(xyz)) * 0.05)
            roll = 0.02 * np.cos(np.arange(len(xyz)) * 0.07)
            xyz[:, 2] = 0.05 * np.arange(len(xyz)) * DT
            xyz[:, 2] -= xyz[t0, 2]
        rot = rotation_zyx(rel_yaw, pitch, roll)
        hx.append(xyz[: t0 + 1]), hr.append(rot[: t0 + 1])
        fx.append(xyz[t0 + 1:]), fr.append(rot[t0 + 1:])
    f32 = lambda xs: np.stack(xs).astype(np.float32)  # noqa: E731
    return f32(hx), f32(hr), f32(fx), f32(fr)


# --------------------------------------------------------------------------------------------
# Teacher
# --------------------------------------------------------------------------------------------


def run_teacher(uac, utils, rotation, hx, hr, fx, fr, dtype):
    """The teacher's outputs on float32 inputs cast to ``dtype``: a dict of numpy arrays."""
    space = uac.UnicycleAccelCurvatureActionSpace()  # dt 0.1, 64 waypoints, default weights
    assert space.dt == DT and space.n_waypoints == FUTURE
    h_xyz, h_rot, f_xyz, f_rot = (torch.from_numpy(a).to(dtype) for a in (hx, hr, fx, fr))

    v0 = space.estimate_t0_states(h_xyz, h_rot)["v"]
    # The same steps estimate_t0_states takes, to keep every history speed.
    dxy = h_xyz[..., 1:, :2] - h_xyz[..., :-1, :2]
    theta_h = utils.unwrap_angle(rotation.so3_to_yaw_torch(h_rot))
    v_hist = utils.dxy_theta_to_v_without_v0(dxy=dxy, theta=theta_h, dt=space.dt,
                                             v_lambda=space.v_lambda, v_ridge=space.v_ridge)
    assert torch.equal(v_hist[..., -1], v0)

    actions, states = space.traj_to_action(h_xyz, h_rot, f_xyz, f_rot, output_all_states=True)
    # The same steps traj_to_action takes, to keep the last speed and heading too.
    full_xy = torch.cat([h_xyz[..., -1:, :], f_xyz], -2)[..., :2]
    theta = utils.theta_smooth(traj_future_rot=f_rot, dt=space.dt,
                               theta_lambda=space.theta_lambda, theta_ridge=space.theta_ridge)
    v = utils.dxy_theta_to_v(dxy=full_xy[..., 1:, :] - full_xy[..., :-1, :], theta=theta, v0=v0,
                             dt=space.dt, v_lambda=space.v_lambda, v_ridge=space.v_ridge)
    assert torch.equal(states[..., 0], v[..., :-1]) and torch.equal(states[..., 2], theta[..., :-1])
    assert torch.equal(states[..., 1], actions[..., 0])
    # The teacher's forward model on its own actions (normalisation is the identity here).
    roll_xyz, roll_rot = space.action_to_traj(actions, h_xyz, h_rot)
    out = dict(v_history=v_hist, v0=v0, heading=theta, speed=v,
               accel=actions[..., 0], curvature=actions[..., 1],
               rollout_xy=roll_xyz[..., :2], rollout_yaw=rotation.so3_to_yaw_torch(roll_rot))
    return {k: t.numpy() for k, t in out.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher-src", type=Path, required=True,
                   help="folder holding the teacher's alpamayo_r1 package (its src/)")
    p.add_argument("--commit", default=DEFAULT_COMMIT,
                   help="the teacher commit the checkout was extracted from (recorded)")
    p.add_argument("--out", type=Path, default=None,
                   help="output npz (default tests/data/alpamayo_action_space_<commit[:7]>.npz)")
    p.add_argument("--world", type=int, default=24, help="built-in-world samples (default 24)")
    p.add_argument("--random", type=int, default=24, help="random smooth samples (default 24)")
    p.add_argument("--seed", type=int, default=0, help="world seed and random seed (default 0)")
    args = p.parse_args(argv)

    torch.set_num_threads(1)
    uac, utils, rotation = load_teacher(args.teacher_src.resolve())
    w = world_samples(args.world, args.seed)
    r = random_samples(args.random, args.seed)
    hx, hr, fx, fr = (np.concatenate([a, b]) for a, b in zip(w, r))
    source = np.array([0] * args.world + [1] * args.random, np.int8)

    t64 = run_teacher(uac, utils, rotation, hx, hr, fx, fr, torch.float64)
    t32 = run_teacher(uac, utils, rotation, hx, hr, fx, fr, torch.float32)
    arrays = dict(
        commit=np.array(args.commit),  # fixed-width unicode: loads with allow_pickle=False
        dt=np.array(DT),
        source=source,  # 0: built-in world (train split, indices 0..), 1: random smooth
        history_xyz=hx, history_rot=hr, future_xyz=fx, future_rot=fr,
        **{f"teacher_{k}": v for k, v in t64.items()},
        **{f"teacher_f32_{k}": t32[k] for k in ("v0", "accel", "curvature")},
    )
    out = args.out or ROOT / "tests" / "data" / f"alpamayo_action_space_{args.commit[:7]}.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    gap = {k: float(np.abs(t64[k] - t32[k]).max()) for k in ("v0", "accel", "curvature")}
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB, {len(source)} samples); "
          f"teacher float32 vs float64 max |diff|: {gap}")


if __name__ == "__main__":
    main()
