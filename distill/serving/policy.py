"""The student as a ``carla_driver_interface`` policy (``BaseDriver``): at each drive, the four
cameras' frames at t - 0.3 s ... t and the ego's 16 poses at t - 1.5 s ... t become one batch of
the batch contract, the student plans through ``student_plan``, and its most probable mode
goes back as 64 poses at t + 0.1 s ... t + 6.4 s in the rig frame at t (x forward, y left,
z up; the servicer turns it into the runtime's local frame)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from carla_driver_interface.driver import BaseDriver, DriveContext, DriveResult, SessionState
from carla_driver_interface.geometry import Pose, Trajectory

from ..constants import CAMERAS
from ..models.plan import student_plan
from ..training.trained import TrainedStudent
from .observations import FrameTensors, RequestError, history_in_rig, pick_frames


def camera_map(items: Sequence[str]) -> dict[str, str]:
    """Our camera -> the runtime's camera id: our names by default; each ``RUNTIME_ID=OUR_CAMERA``
    of ``items`` (``--camera-map``) replaces one. ValueError (one line) for a malformed item or
    an unknown camera of ours."""
    ids = {camera: camera for camera in CAMERAS}
    named = set()
    for item in items:
        runtime, sep, ours = item.partition("=")
        if not (sep and runtime and ours):
            raise ValueError(f"--camera-map {item!r} is not RUNTIME_ID=OUR_CAMERA")
        if ours not in CAMERAS:
            raise ValueError(f"--camera-map {item!r}: {ours!r} is not one of our cameras "
                             f"({', '.join(CAMERAS)})")
        if ours in named:
            raise ValueError(f"--camera-map names our camera {ours!r} twice")
        named.add(ours)
        ids[ours] = runtime
    return ids


class StudentDriver(BaseDriver):
    """Serves one camera student (``TrainedStudent``) with the runtime's cameras ``camera_ids``
    (ours -> runtime id, ``camera_map``)."""

    # Frames kept per camera: t - 0.3 s and what precedes it at camera rates up to ~100 Hz.
    frame_history_length = 32

    def __init__(self, student: TrainedStudent, camera_ids: dict[str, str]):
        if student.cfg.input_type != "camera":
            raise ValueError(f"a {student.cfg.input_type} student cannot drive from cameras; "
                             "only camera students can be served")
        self.student = student
        self.camera_ids = dict(camera_ids)
        self.name = f"distill-{student.config.model}-{student.config.model_size}"
        self.device = next(student.model.parameters()).device
        self.frames: dict[str, FrameTensors] = {}  # by session
        self.drives = 0

    def on_session_start(self, session: SessionState) -> None:
        missing = [f"{runtime!r} (our {ours})" for ours, runtime in self.camera_ids.items()
                   if runtime not in session.cameras]
        if missing:
            raise ValueError(f"camera {', '.join(missing)} not declared by the runtime; it "
                             f"declared {sorted(session.cameras)} (--camera-map "
                             "RUNTIME_ID=OUR_CAMERA reads another)")
        self.frames[session.uuid] = FrameTensors(self.student.config.resolution)

    def on_session_close(self, session: SessionState) -> None:
        self.frames.pop(session.uuid, None)

    def drive(self, ctx: DriveContext) -> DriveResult:
        session, now, cfg = ctx.session, ctx.time_now_us, self.student.cfg
        with session.lock:
            anchor = session.latest_pose()
            if anchor is None:  # no egomotion yet: an empty plan, which runtimes read as hold
                return DriveResult(trajectory_in_rig=Trajectory.empty())
            picked = [self._picked(session, camera, now) for camera in CAMERAS]
            xyz, rot = history_in_rig(session.ego_trajectory, anchor, now, cfg.history_steps,
                                      cfg.dt)
        batch = {"frames": self.frames[session.uuid](picked)[None],
                 "ego_history_xyz": torch.from_numpy(xyz)[None],
                 "ego_history_rot": torch.from_numpy(rot)[None]}
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with torch.inference_mode():
            plan = student_plan(self.student.model, batch, cfg, self.student.stats)
        self.drives += 1
        xy, yaw = plan.modes_xy[0].cpu().numpy(), plan.modes_yaw[0].cpu().numpy()  # (K, T, ...)
        probs = plan.probs[0].cpu().numpy()
        best = int(probs.argmax())
        return DriveResult(
            trajectory_in_rig=rig_plan(xy[best], yaw[best], now, cfg.dt),
            sampled_trajectories_in_rig=[rig_plan(xy[k], yaw[k], now, cfg.dt)
                                         for k in range(len(probs)) if k != best],
            debug_scalars={"mode_probability": float(probs[best])})

    def _picked(self, session: SessionState, camera: str, now: int) -> list:
        runtime = self.camera_ids[camera]
        frames = list(session.frame_history.get(runtime, ()))
        if not frames:
            raise RequestError(f"no frame of camera {runtime!r} (our {camera}) before the drive "
                               f"at {now} us")
        return pick_frames(frames, now)


def rig_plan(xy: np.ndarray, yaw: np.ndarray, time_now_us: int, dt: float) -> Trajectory:
    """A plan ``xy (T, 2)``, ``yaw (T,)`` (ego frame at t0, steps of ``dt`` from t0 + dt) as a
    rig-frame trajectory stamped ``time_now_us + (i + 1) dt``, on the ground (z = 0)."""
    step_us = round(dt * 1e6)
    return Trajectory([time_now_us + step_us * (i + 1) for i in range(len(xy))],
                      [Pose.from_xyz_yaw(float(x), float(y), 0.0, float(a))
                       for (x, y), a in zip(xy.tolist(), yaw.tolist())])
