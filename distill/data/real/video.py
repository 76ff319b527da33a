"""A clip's camera frames: the latest frame at or before each wanted time, decoded with PyAV."""
from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq

from ...constants import CAMERAS, FRAME_OFFSETS_US
from ..readers import DataError
from .layout import camera_zip, read_member


def frame_times(t0_us: int) -> np.ndarray:
    """int64 (4,): the wanted frame times t0 - 0.3 s ... t0, microseconds from clip start."""
    return t0_us + np.array(FRAME_OFFSETS_US, np.int64)


def latest_at_or_before(timestamps: np.ndarray, targets: np.ndarray, where: str) -> np.ndarray:
    """int64 index of the latest timestamp <= each target (timestamps must increase)."""
    if len(timestamps) == 0 or (np.diff(timestamps) <= 0).any():
        raise DataError(f"{where}: frame timestamps are empty or not increasing")
    index = np.searchsorted(timestamps, targets, side="right") - 1
    if (index < 0).any():
        raise DataError(f"{where}: no frame at or before {int(targets[index < 0][0])} us "
                        f"(the first is at {int(timestamps[0])} us)")
    return index


def decode_frames(video: bytes, indices: np.ndarray, size: int | None, where: str) -> np.ndarray:
    """uint8 (len(indices), H, W, 3) RGB: frames ``indices`` (in decode order from the first)
    of an MP4, resized to size x size (area interpolation) unless ``size`` is None."""
    wanted = {int(i): n for n, i in enumerate(indices)}
    out: list[np.ndarray | None] = [None] * len(indices)
    kwargs = dict(width=size, height=size, interpolation="AREA") if size else {}
    try:
        with av.open(io.BytesIO(video)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for k, frame in enumerate(container.decode(stream)):
                if k in wanted:
                    image = frame.to_ndarray(format="rgb24", **kwargs)
                    for n, i in enumerate(indices):
                        if i == k:
                            out[n] = image
                if k >= max(wanted):
                    break
    except (av.FFmpegError, IndexError) as e:
        raise DataError(f"{where}: not a decodable video ({e})") from None
    if any(o is None for o in out):
        raise DataError(f"{where}: the video ends before frame {int(max(indices))} that its "
                        "timestamps name")
    return np.stack(out)


def camera_frames(root: Path, clip_id: str, chunk: int, camera: str, t0_us: int,
                  size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """One camera of a clip: (frames uint8 (4, H, W, 3), their timestamps int64 (4,))."""
    zip_path = camera_zip(root, camera, chunk)
    where = f"{zip_path}: clip {clip_id} {camera}"
    stamps_file = read_member(zip_path, f"{clip_id}.{camera}.timestamps.parquet", clip_id,
                              f"{camera} timestamps")
    video = read_member(zip_path, f"{clip_id}.{camera}.mp4", clip_id, f"{camera} video")
    try:
        stamps = pq.read_table(io.BytesIO(stamps_file), columns=["timestamp"])
    except Exception as e:  # pyarrow raises several types for unreadable files
        raise DataError(f"{where}: timestamps not readable ({type(e).__name__}: {e})") from None
    stamps = stamps.column("timestamp").to_numpy().astype(np.int64)
    index = latest_at_or_before(stamps, frame_times(t0_us), where)
    return decode_frames(video, index, size, where), stamps[index]


def sample_frames(root: Path, clip_id: str, chunk: int, t0_us: int,
                  size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """A sample's frames uint8 (4 cams, 4 frames, H, W, 3) and timestamps int64 (4, 4)."""
    per_camera = [camera_frames(root, clip_id, chunk, cam, t0_us, size) for cam in CAMERAS]
    return np.stack([f for f, _ in per_camera]), np.stack([t for _, t in per_camera])
