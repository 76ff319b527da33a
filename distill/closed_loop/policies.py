"""The policies that drive an episode: a camera student, and the two references, the world's
planner (the teacher, privileged: it reads the scene) and constant velocity. Each turns an
``Observation`` into a ``PolicyPlan``: the actions from now on and the positions they lead to."""
from __future__ import annotations

import numpy as np
import torch

from ..constants import DT, FUTURE_STEPS
from ..kinematics import ActionNormalization, actions_from_trajectory
from ..models.config import ModelConfig
from ..models.plan import student_inputs, student_plan
from ..multimodal import most_probable, take_mode
from ..ops import normalize_frames
from ..world.planner import drive_from
from .episode import Observation, PolicyPlan

POLICIES = ("student", "planner", "constant-velocity")
REFERENCES = POLICIES[1:]


class PolicyError(ValueError):
    """A policy that cannot drive the built-in world; the message is one line."""


class PlannerPolicy:
    """The world's planner replanning from the ego's state: its plan is its own closed-loop
    simulation over ``horizon`` steps (the first actions are what it would do now)."""

    name = "planner"
    needs_frames = False

    def __init__(self, horizon: int = FUTURE_STEPS):
        self.horizon = horizon

    def plan(self, obs: Observation) -> PolicyPlan:
        track = drive_from(obs.scene, obs.t_index, obs.state, obs.s_hint, self.horizon)
        x0, y0, yaw0, _ = obs.state
        c, s = np.cos(yaw0), np.sin(yaw0)
        dx, dy = track.x[1:] - x0, track.y[1:] - y0
        xy = np.stack([c * dx + s * dy, -s * dx + c * dy], axis=1)
        return PolicyPlan(np.stack([track.a, track.k], axis=1), xy)


class ConstantVelocityPolicy:
    """Keep speed and heading: no acceleration, no curvature."""

    name = "constant-velocity"
    needs_frames = False

    def __init__(self, horizon: int = FUTURE_STEPS):
        self.horizon = horizon

    def plan(self, obs: Observation) -> PolicyPlan:
        t = DT * np.arange(1, self.horizon + 1)
        xy = np.stack([obs.state[3] * t, np.zeros_like(t)], axis=1)
        return PolicyPlan(np.zeros((self.horizon, 2)), xy)


def check_student(cfg: ModelConfig, source: str, replan_every: int = 1) -> None:
    """PolicyError unless the student can drive the built-in world at this replanning rate."""
    if cfg.input_type != "camera":
        raise PolicyError(f"{source}: a {cfg.input_type} student cannot drive the built-in "
                          "world (it renders cameras, not rasters or polylines)")
    if abs(cfg.dt - DT) > 1e-9:
        raise PolicyError(f"{source}: the student plans at dt {cfg.dt} s, the world steps at "
                          f"{DT} s")
    if replan_every > cfg.horizon:
        raise PolicyError(f"{source}: --replan-every {replan_every} exceeds the student's "
                          f"horizon of {cfg.horizon} steps")


class StudentPolicy:
    """A camera student through ``student_plan``, on a batch of one built as the loaders build
    theirs (frames through ``normalize_frames``, the history in the ego frame now). Unicycle
    students' actions are executed as they are; a direct student's poses become actions by
    ``actions_from_trajectory`` from its own v0. Of K modes, the most probable."""

    name = "student"
    needs_frames = True

    def __init__(self, model, cfg: ModelConfig, stats: ActionNormalization, device,
                 source: str = "student"):
        check_student(cfg, source)
        self.model, self.cfg, self.stats, self.device = model.eval(), cfg, stats, device

    @torch.inference_mode()
    def plan(self, obs: Observation) -> PolicyPlan:
        batch = {"frames": normalize_frames(torch.from_numpy(obs.frames))[None],
                 "ego_history_xyz": torch.from_numpy(obs.history_xyz)[None],
                 "ego_history_rot": torch.from_numpy(obs.history_rot)[None]}
        batch = {k: v.to(self.device) for k, v in batch.items()}
        plan = student_plan(self.model, batch, self.cfg, self.stats)
        mode = most_probable(plan.heads["mode_logits"])
        if plan.actions is not None:
            actions = take_mode(plan.actions, mode)[0]
        else:
            _, _, v0 = student_inputs(batch, self.cfg)
            xyz = torch.nn.functional.pad(plan.xy.double(), (0, 1))  # z = 0
            accel, curvature = actions_from_trajectory(xyz, plan.yaw.double(), v0.double(),
                                                       self.cfg.dt)
            actions = torch.stack([accel, curvature], -1)[0]
        return PolicyPlan(actions.double().cpu().numpy(), plan.xy[0].double().cpu().numpy())


def reference_policy(name: str, horizon: int = FUTURE_STEPS):
    """The reference ``name`` (one of REFERENCES) planning ``horizon`` steps ahead."""
    return {"planner": PlannerPolicy, "constant-velocity": ConstantVelocityPolicy}[name](horizon)
