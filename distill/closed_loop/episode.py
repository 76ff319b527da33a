"""One closed-loop episode in the built-in world: a scene of the closed loop's own random
stream, the ego handed over from the teacher at t0, then 64 steps of 0.1 s in which a policy
sees what a student sees (the four cameras rendered from the ego's actual poses, its actual
history) and the ego executes its plan; the other agents follow their scripts."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..constants import DT, FRAME_OFFSETS_US, FUTURE_STEPS, HISTORY_STEPS
from ..data.jpeg import decode_stream, encode_images, split_streams
from ..world.generate import DRIVE_STREAM, draw_scene, poses_in_ego_frame
from ..world.planner import A_MAX, A_MIN, K_MAX, EgoTrack, drive, unicycle_step
from ..world.render import render_views
from ..world.scene import T0_INDEX, Scene, time_grid

EPISODE_STEPS = FUTURE_STEPS  # 6.4 s at 10 Hz
# The scenes' grid: the episode and the full horizon of a plan made at its last step.
SCENE_TIMES = time_grid(EPISODE_STEPS + FUTURE_STEPS)
FRAME_LAGS = [-off // 100_000 for off in FRAME_OFFSETS_US]  # steps before now: 3, 2, 1, 0


@dataclass(frozen=True)
class EpisodeSpec:
    seed: int  # the world seed; episode ``index`` of the closed loop's stream
    index: int
    steps: int = EPISODE_STEPS


@dataclass
class Observation:
    """What a policy is given at a replanning step. Students read ``frames`` and the history;
    the references read the scene and the ego's state (privileged)."""

    scene: Scene
    t_index: int  # on the scene's grid
    state: tuple[float, float, float, float]  # x, y, yaw, v (world frame)
    s_hint: float  # the ego's arc length along the scene's path
    history_xyz: np.ndarray  # float32 (16, 3), ego frame now: t - 1.5 s ... t
    history_rot: np.ndarray  # float32 (16, 3, 3)
    frames: np.ndarray | None  # uint8 (4 cameras, 4 frames t - 0.3 s ... t, H, W, 3)


@dataclass
class PolicyPlan:
    actions: np.ndarray  # (T, 2) acceleration m/s^2, curvature 1/m, from now on
    xy: np.ndarray  # (T, 2) the planned positions, ego frame now (for the figures)


@dataclass
class Rollout:
    """The ego over an episode: ``track`` holds states on the scene's grid up to the last
    step (before t0 the teacher's), its ``a``, ``k`` the executed actions from t0."""

    track: EgoTrack
    steps: int
    clipped: int  # steps whose action was clipped to the planner's limits
    plan_steps: np.ndarray  # (P,) time index of each replanning
    plans_xy: np.ndarray  # (P, T, 2) each plan's positions, world frame

    def states(self) -> np.ndarray:
        """(steps + 1, 4): x, y, yaw, v at t0 ... t0 + steps."""
        i = slice(T0_INDEX, T0_INDEX + self.steps + 1)
        t = self.track
        return np.stack([t.x[i], t.y[i], t.yaw[i], t.v[i]], axis=1)


def episode_scene(spec: EpisodeSpec) -> tuple[str, Scene, EgoTrack]:
    """The episode's clip id, scene (on SCENE_TIMES) and the teacher's drive through it."""
    clip_id, scene = draw_scene(spec.seed, DRIVE_STREAM, spec.index, SCENE_TIMES)
    return clip_id, scene, drive(scene)


class CameraFrames:
    """The four cameras rendered once per time index from the ego's pose then, through the
    training data's JPEG round trip (``distill.data.jpeg``)."""

    def __init__(self, scene: Scene, size: int):
        self.scene, self.size, self.images = scene, size, {}

    def at(self, track: EgoTrack, t_index: int) -> np.ndarray:
        """uint8 (4 cameras, 4 frames, H, W, 3): the frames at t_index - 3 ... t_index."""
        for i in (t_index - lag for lag in FRAME_LAGS):
            if i not in self.images:
                pose = (track.x[i], track.y[i], track.yaw[i])
                views = render_views(self.scene, [pose], [i], self.size)[:, 0]
                streams = split_streams(*encode_images(views))
                self.images[i] = np.stack([decode_stream(s) for s in streams])
        return np.stack([self.images[t_index - lag] for lag in FRAME_LAGS], axis=1)


def clip_action(a: float, k: float) -> tuple[float, float, bool]:
    """The action within the planner's limits, and whether it had to be clipped."""
    a_c, k_c = min(max(a, A_MIN), A_MAX), min(max(k, -K_MAX), K_MAX)
    return a_c, k_c, (a_c, k_c) != (a, k)


def observe(scene, track: EgoTrack, t_index: int, frames: CameraFrames | None) -> Observation:
    xyz, rot = poses_in_ego_frame(track, np.arange(t_index - HISTORY_STEPS + 1, t_index + 1),
                                  t_index)
    state = (track.x[t_index], track.y[t_index], track.yaw[t_index], track.v[t_index])
    return Observation(scene, t_index, state, track.s[t_index], xyz, rot,
                       frames.at(track, t_index) if frames is not None else None)


def to_world(xy: np.ndarray, pose) -> np.ndarray:
    """Ego-frame points (..., 2) -> world frame, the ego at pose (x, y, yaw)."""
    x, y, yaw = pose
    c, s = np.cos(yaw), np.sin(yaw)
    return np.stack([x + c * xy[..., 0] - s * xy[..., 1], y + s * xy[..., 0] + c * xy[..., 1]], -1)


def run_episode(spec: EpisodeSpec, policy, replan_every: int = 1,
                resolution: int = 64) -> tuple[Scene, EgoTrack, Rollout]:
    """Drive ``policy`` through the episode: it plans every ``replan_every`` steps and the ego
    executes the plan's actions (clipped to A_MIN..A_MAX, |k| <= K_MAX; braking ends at a
    stop) until the next plan. Returns the scene, the teacher's track and the rollout."""
    _, scene, teacher = episode_scene(spec)
    end = T0_INDEX + spec.steps
    states = (np.array(getattr(teacher, f)[:end + 1]) for f in ("x", "y", "yaw", "v", "s"))
    track = EgoTrack(*states, a=np.zeros(spec.steps), k=np.zeros(spec.steps))
    frames = CameraFrames(scene, resolution) if policy.needs_frames else None
    clipped, plan_steps, plans_xy = 0, [], []
    for j, i in enumerate(range(T0_INDEX, end)):
        if j % replan_every == 0:
            plan = policy.plan(observe(scene, track, i, frames))
            plan_steps.append(i)
            plans_xy.append(to_world(plan.xy, (track.x[i], track.y[i], track.yaw[i])))
        a, k, was_clipped = clip_action(*map(float, plan.actions[j % replan_every]))
        clipped += was_clipped
        track.a[j], track.k[j] = max(a, -track.v[i] / DT), k  # a vehicle does not reverse
        track.x[i + 1], track.y[i + 1], track.yaw[i + 1], track.v[i + 1] = unicycle_step(
            track.x[i], track.y[i], track.yaw[i], track.v[i], track.a[j], track.k[j])
        track.s[i + 1] = scene.path.project(track.x[i + 1], track.y[i + 1], track.s[i])
    return scene, teacher, Rollout(track, spec.steps, clipped, np.array(plan_steps),
                                   np.stack(plans_xy))
