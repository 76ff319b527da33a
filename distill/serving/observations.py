"""What a runtime sent, as the student's inputs: the frames of each camera at t - 0.3 s ... t
and the ego's poses at t - 1.5 s ... t in the rig frame at t.

- Frames: for each of t + FRAME_OFFSETS_US, the latest frame of the camera at or before that
  time (a frame's time is the end of its exposure), as the real-data extraction picks them;
  a time before the camera's first frame gets that first frame (the padding at the start of
  a session). Each frame is decoded, normalised and resized to the checkpoint's resolution
  once (``FrameTensors``), the way the torch loader treats stored frames.
- Poses: the ego trajectory interpolated at the 16 history times (linear positions, slerped
  rotations), expressed in the rig frame of the latest pose (the frame the plan is returned
  in); a time before the first pose gets the first pose (the padding).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from carla_driver_interface.driver import CameraFrame
from carla_driver_interface.geometry import Pose, Trajectory

from ..constants import FRAME_OFFSETS_US
from ..data.dataset import resize_frames
from ..ops import normalize_frames


class RequestError(ValueError):
    """A drive the student cannot plan from; the message is one line naming what is wrong (the
    server answers it with INVALID_ARGUMENT and keeps serving)."""


def pick_frames(frames: Sequence[CameraFrame], time_now_us: int) -> list[CameraFrame]:
    """The camera's frame for each of ``time_now_us + FRAME_OFFSETS_US``: the latest at or
    before it, else the earliest."""
    ordered = sorted(frames, key=lambda f: f.timestamp_us)
    stamps = np.array([f.timestamp_us for f in ordered], np.int64)
    wanted = time_now_us + np.array(FRAME_OFFSETS_US, np.int64)
    index = np.searchsorted(stamps, wanted, side="right") - 1
    return [ordered[max(int(i), 0)] for i in index]


def history_in_rig(trajectory: Trajectory, anchor: Pose, time_now_us: int, steps: int,
                   dt: float) -> tuple[np.ndarray, np.ndarray]:
    """float32 positions ``(steps, 3)`` and rotations ``(steps, 3, 3)`` of the ego at
    ``time_now_us - (steps - 1 - i) * dt``, in the frame of ``anchor`` (the latest pose)."""
    step_us = round(dt * 1e6)
    times = [time_now_us - step_us * k for k in range(steps - 1, -1, -1)]
    to_rig = anchor.inverse()
    poses = [to_rig @ trajectory.interpolate(t) for t in times]
    xyz = np.stack([p.position for p in poses])
    rot = np.stack([p.rotation_matrix for p in poses])
    if not (np.isfinite(xyz).all() and np.isfinite(rot).all()):
        raise RequestError(f"the egomotion between {times[0]} and {time_now_us} us has a "
                           "non-finite pose")
    return xyz.astype(np.float32), rot.astype(np.float32)


class FrameTensors:
    """One session's frames as the model sees them: float32 ``(3, R, R)`` per frame, made once
    per frame and kept while a drive still picks it."""

    def __init__(self, resolution: int):
        self.resolution = resolution
        self.tensors: dict[tuple, torch.Tensor] = {}

    def __call__(self, picked: Sequence[Sequence[CameraFrame]]) -> torch.Tensor:
        """float32 ``(cameras, 3 * frames, R, R)`` of the picked frames of each camera."""
        keep = {}
        for frame in (f for frames in picked for f in frames):
            key = _key(frame)
            keep[key] = self.tensors[key] if key in self.tensors else self._tensor(frame)
        self.tensors = keep
        return torch.stack([torch.cat([keep[_key(f)] for f in frames]) for frames in picked])

    def _tensor(self, frame: CameraFrame) -> torch.Tensor:
        try:
            rgb = frame.as_array()
        except (OSError, ValueError) as e:  # PIL: unidentified, truncated or corrupt data
            reason = str(e).split(" <")[0]  # without the buffer's repr
            raise RequestError(f"camera {frame.logical_id!r}: the frame ending at "
                               f"{frame.frame_end_us} us is not a decodable image ({reason})"
                               ) from None
        return resize_frames(normalize_frames(torch.tensor(rgb)[None]), self.resolution)


def _key(frame: CameraFrame) -> tuple:
    return frame.logical_id, frame.frame_start_us, frame.frame_end_us
