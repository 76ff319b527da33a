"""A tiny copy of PhysicalAI-Autonomous-Vehicles in its real layout, built by the tests: clips of
the built-in world (so the world teacher labels them and their egomotion is the world planner's
track), 4 cameras of 30 fps H.264 video at 32 px whose frames encode their own index and camera,
and frame timestamps offset per camera so that "the latest frame at or before t" is not simply
"the nearest"."""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from distill.data import formats
from distill.world.generate import simulate
from distill.world.scene import TIMES

SIZE = 32  # px; 2 x 2 macroblocks, one flat code per quadrant
FPS = 30
NUM_VIDEO_FRAMES = 160  # 5.33 s: past the default t0 (5.1 s)
CAMERA_OFFSET_US = (4_000, 11_000, 19_000, 27_000)  # first frame time of each camera


def frame_image(k: int, camera: int) -> np.ndarray:
    """uint8 (32, 32, 3): video frame k of a camera; the top quadrants encode k, the bottom
    left the camera (flat grey levels survive H.264 and JPEG within +-2)."""
    image = np.full((SIZE, SIZE, 3), 128, np.uint8)
    h = SIZE // 2
    image[:h, :h] = 24 + 8 * (k // 16)
    image[:h, h:] = 24 + 12 * (k % 16)
    image[h:, :h] = 24 + 40 * camera
    return image


def read_code(image: np.ndarray) -> tuple[int, int]:
    """(k, camera) back from a decoded frame of any size (quadrant centres)."""
    h, w = image.shape[0] // 4, image.shape[1] // 4

    def level(y, x):
        return float(image[y * 2 * h + h // 2:y * 2 * h + h // 2 + max(1, h), x * 2 * w + w // 2:
                           x * 2 * w + w // 2 + max(1, w)].mean())
    hi = round((level(0, 0) - 24) / 8)
    lo = round((level(0, 1) - 24) / 12)
    return 16 * hi + lo, round((level(1, 0) - 24) / 40)


def frame_timestamps(camera: int) -> np.ndarray:
    stamps = np.round(np.arange(NUM_VIDEO_FRAMES) * 1e6 / FPS) + CAMERA_OFFSET_US[camera]
    return stamps.astype(np.int64)


def video_bytes(camera: int) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "10"}
        for k in range(NUM_VIDEO_FRAMES):
            frame = av.VideoFrame.from_ndarray(frame_image(k, camera), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def parquet_bytes(columns: dict) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf)
    return buf.getvalue()


def egomotion_columns(track, t0_us: int) -> dict:
    """The world planner's track as an egomotion table (world frame, scalar-last quaternions)."""
    zeros = np.zeros(len(TIMES))
    return {"timestamp": (t0_us + np.round(TIMES * 1e6)).astype(np.int64),
            "x": track.x, "y": track.y, "z": zeros,
            "qx": zeros, "qy": zeros, "qz": np.sin(track.yaw / 2), "qw": np.cos(track.yaw / 2),
            "vx": track.v * np.cos(track.yaw), "vy": track.v * np.sin(track.yaw), "vz": zeros,
            "ax": np.append(track.a, 0.0), "ay": zeros, "az": zeros,
            "curvature": np.append(track.k, 0.0)}


@dataclass(frozen=True)
class CopyClip:
    split: str
    index: int  # sample index in its split (valid clips only)
    clip_id: str
    chunk: int


def build_copy(root: Path, seed: int = 0, train: int = 2, val: int = 1) -> list[CopyClip]:
    """Write the copy under ``root``: world clips (train in chunk 0, val in chunk 1) plus an
    invalid train clip that has no files at all. Returns the valid clips."""
    clips = [CopyClip(split, i, simulate(seed, split, i)[2]["clip_ids"], chunk)
             for split, n, chunk in (("train", train, 0), ("val", val, 1)) for i in range(n)]
    invalid = "00000000-0000-4000-8000-000000000000"
    index_rows = [(c.clip_id, c.chunk, True, c.split) for c in clips]
    index_rows.insert(1, (invalid, 0, False, "train"))
    pq.write_table(pa.table({"clip_id": [r[0] for r in index_rows],
                             "chunk": [r[1] for r in index_rows],
                             "clip_is_valid": [r[2] for r in index_rows],
                             "split": [r[3] for r in index_rows]}), root / "clip_index.parquet")
    videos = [video_bytes(cam) for cam in range(formats.NUM_CAMERAS)]
    for cam, name in enumerate(formats.CAMERAS):
        for chunk in {c.chunk for c in clips}:
            path = root / "camera" / name / f"{name}.chunk_{chunk:04d}.zip"
            path.parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(path, "w") as zf:
                for c in (c for c in clips if c.chunk == chunk):
                    zf.writestr(f"{c.clip_id}.{name}.mp4", videos[cam])
                    zf.writestr(f"{c.clip_id}.{name}.timestamps.parquet",
                                parquet_bytes({"timestamp": frame_timestamps(cam)}))
    for chunk in {c.chunk for c in clips}:
        path = root / "labels" / "egomotion" / f"egomotion.chunk_{chunk:04d}.zip"
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w") as zf:
            for c in (c for c in clips if c.chunk == chunk):
                track = simulate(seed, c.split, c.index)[1]
                zf.writestr(f"{c.clip_id}.egomotion.parquet",
                            parquet_bytes(egomotion_columns(track, formats.DEFAULT_T0_US)))
    return clips


def drop_member(zip_path: Path, member: str) -> None:
    """Rewrite a zip without one member (a clip whose camera is missing)."""
    with zipfile.ZipFile(zip_path) as zf:
        kept = {n: zf.read(n) for n in zf.namelist() if n != member}
    with zipfile.ZipFile(zip_path, "w") as zf:
        for name, data in kept.items():
            zf.writestr(name, data)
