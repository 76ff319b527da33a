"""Compares our v0 estimator and inverse (``distill.kinematics``) with the teacher's
(``distill.kinematics.teacher``) on built-in-world samples, against the planner's truth.

    python scripts/compare_kinematics.py --samples 200 [--noise 0.01]

For each sample (``distill.world.generate.simulate``, train split) it takes the float32 history
and future poses the world writes, and reports, in float64:
  * v0: |ours - teacher|, and each against the planner's true speed at t0;
  * actions: each inverse (with its own v0) against the planner's true actions;
  * 6.4 s: each inverse's actions rolled out (``unicycle_rollout_reference``, its own v0)
    against the true pose at t0 + 6.4 s, and against each other;
  * mixing: our actions rolled out from the teacher's v0 (labels from one, v0 from the other);
  * the v0 effect alone: the true actions rolled out from our v0 and from the teacher's.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from distill.constants import DT  # the built-in world's step (the teacher's too)
from distill.kinematics import actions_from_trajectory, estimate_v0, unicycle_rollout_reference
from distill.kinematics.teacher import (
    teacher_actions_from_trajectory,
    teacher_estimate_v0,
    yaw_from_rotation,
)
from distill.world.generate import simulate
from distill.world.scene import FUTURE_INDICES, T0_INDEX


def load(samples: int, seed: int):
    keys = ("ego_history_xyz", "ego_history_rot", "trajectory_xyz", "trajectory_rot")
    cols = {k: [] for k in keys}
    v_true, a_true, k_true = [], [], []
    for i in range(samples):
        _, track, row = simulate(seed, "train", i)
        for k in keys:
            cols[k].append(row[k])
        v_true.append(track.v[T0_INDEX])
        a_true.append(track.a[T0_INDEX:FUTURE_INDICES[-1]])
        k_true.append(track.k[T0_INDEX:FUTURE_INDICES[-1]])
    t = lambda x: torch.from_numpy(np.stack(x)).double()  # noqa: E731
    return ({k: t(v) for k, v in cols.items()}, t(v_true), t(a_true), t(k_true))


def stats(x: torch.Tensor) -> str:
    return f"mean {x.mean().item():<9.3g} p95 {x.quantile(0.95).item():<9.3g} max {x.max().item():.3g}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=200, help="world samples (default 200)")
    p.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    p.add_argument("--noise", type=float, default=0.0,
                   help="std of Gaussian noise added to every x, y but t0's, m (default 0)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    d, v_true, a_true, k_true = load(args.samples, args.seed)
    hx, hr, fx, fr = (d[k] for k in ("ego_history_xyz", "ego_history_rot",
                                     "trajectory_xyz", "trajectory_rot"))
    if args.noise > 0:
        g = torch.Generator().manual_seed(args.seed)
        hx, fx = hx.clone(), fx.clone()
        hx[:, :-1, :2] += args.noise * torch.randn(hx[:, :-1, :2].shape, generator=g, dtype=hx.dtype)
        fx[..., :2] += args.noise * torch.randn(fx[..., :2].shape, generator=g, dtype=fx.dtype)
    v_ours = estimate_v0(hx, DT)
    v_teacher = teacher_estimate_v0(hx, hr, DT)
    a_ours, k_ours = actions_from_trajectory(fx, yaw_from_rotation(fr), v_ours, DT)
    a_teacher, k_teacher = teacher_actions_from_trajectory(fx, fr, v_teacher, DT,
                                                           t0_xyz=hx[:, -1])

    def end(a, k, v0):
        x, y, _ = unicycle_rollout_reference(a, k, v0, DT)
        return torch.stack([x[:, -1], y[:, -1]], -1)

    p_true = fx[:, -1, :2]
    p_ours, p_teacher = end(a_ours, k_ours, v_ours), end(a_teacher, k_teacher, v_teacher)
    dist = lambda p, q: torch.linalg.vector_norm(p - q, dim=-1)  # noqa: E731

    print(f"{args.samples} built-in-world samples (seed {args.seed}, train), float64, "
          f"position noise {args.noise} m; "
          f"true v0 {v_true.min().item():.2f}..{v_true.max().item():.2f} m/s")
    print(f"|v0 ours - teacher|            m/s   {stats((v_ours - v_teacher).abs())}")
    print(f"|v0 ours - true|               m/s   {stats((v_ours - v_true).abs())}")
    print(f"|v0 teacher - true|            m/s   {stats((v_teacher - v_true).abs())}")
    print(f"|accel ours - true|  (all t)   m/s2  {stats((a_ours - a_true).abs().mean(1))}  (per-sample mean)")
    print(f"|accel teacher - true|         m/s2  {stats((a_teacher - a_true).abs().mean(1))}")
    print(f"|curv ours - true|             1/m   {stats((k_ours - k_true).abs().mean(1))}")
    print(f"|curv teacher - true|          1/m   {stats((k_teacher - k_true).abs().mean(1))}")
    print(f"|accel ours - teacher|         m/s2  {stats((a_ours - a_teacher).abs().mean(1))}")
    print(f"6.4 s: |ours rollout - true|      m  {stats(dist(p_ours, p_true))}")
    print(f"6.4 s: |teacher rollout - true|   m  {stats(dist(p_teacher, p_true))}")
    print(f"6.4 s: |ours - teacher rollout|   m  {stats(dist(p_ours, p_teacher))}")
    print(f"6.4 s: |ours actions from teacher v0 - true|  m  "
          f"{stats(dist(end(a_ours, k_ours, v_teacher), p_true))}")
    print(f"6.4 s: true actions, v0 ours vs teacher      m  "
          f"{stats(dist(end(a_true, k_true, v_ours), end(a_true, k_true, v_teacher)))}")


if __name__ == "__main__":
    main()
