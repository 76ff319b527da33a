"""A tiny PhysicalAI-Autonomous-Vehicles in the layout NVIDIA's devkit reads (features.csv,
clip_index.parquet indexed by clip_id, metadata/feature_presence.parquet and
data_collection.parquet, per-chunk camera and egomotion zips), built by the tests: clips of the
built-in world (so the world teacher labels them and their egomotion is the world planner's
track), 4 cameras of 30 fps H.264 video at 64x32 px whose frames encode their own index and
camera, and frame timestamps offset per camera so that "the latest frame at or before t" is not
simply "the nearest". ``hf_cache`` makes a Hugging Face cache holding the same files; the
last part runs the data scripts on it."""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from distill.data import formats
from distill.world.generate import simulate
from distill.world.scene import TIMES

WIDTH, HEIGHT = 64, 32  # px, native size; 4 x 2 macroblocks, one flat code per quadrant
FPS = 30
NUM_VIDEO_FRAMES = 160  # 5.33 s: past the default t0 (5.1 s)
CAMERA_OFFSET_US = (4_000, 11_000, 19_000, 27_000)  # first frame time of each camera
REVISION = "1234567890abcdef1234567890abcdef12345678"  # the copy's commit in hf_cache
EGOMOTION_ZIP = "labels/egomotion/egomotion.chunk_{chunk_id:04d}.zip"


def camera_zip(camera: str) -> str:
    return f"camera/{camera}/{camera}.chunk_{{chunk_id:04d}}.zip"


def frame_image(k: int, camera: int) -> np.ndarray:
    """uint8 (32, 64, 3): video frame k of a camera; the top quadrants encode k, the bottom
    left the camera (flat grey levels survive H.264 and JPEG within +-2)."""
    image = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
    h, w = HEIGHT // 2, WIDTH // 2
    image[:h, :w] = 24 + 8 * (k // 16)
    image[:h, w:] = 24 + 12 * (k % 16)
    image[h:, :w] = 24 + 40 * camera
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
        stream.width, stream.height = WIDTH, HEIGHT
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "10", "g": "30"}  # a key frame every second: the reader seeks
        for k in range(NUM_VIDEO_FRAMES):
            frame = av.VideoFrame.from_ndarray(frame_image(k, camera), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def parquet_bytes(columns: dict) -> bytes:
    buf = io.BytesIO()
    pd.DataFrame(columns).to_parquet(buf)
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


def write_metadata(root: Path, rows: list[tuple[str, int, bool, str]]) -> None:
    """features.csv, clip_index.parquet and metadata/*.parquet for clips (id, chunk, valid,
    split)."""
    features = [(cam, "camera", camera_zip(cam),
                 {"video": f"{{clip_id}}.{cam}.mp4",
                  "frame_timestamps": f"{{clip_id}}.{cam}.timestamps.parquet"})
                for cam in formats.CAMERAS]
    features.append(("egomotion", "labels", EGOMOTION_ZIP,
                     {"egomotion": "{clip_id}.egomotion.parquet"}))
    pd.DataFrame({"feature": [f[0] for f in features], "directory": [f[1] for f in features],
                  "chunk_path": [f[2] for f in features],
                  "clip_files_in_zip": [json.dumps(f[3]) for f in features]}
                 ).to_csv(root / "features.csv", index=False)
    ids = pd.Index([r[0] for r in rows], name="clip_id")
    pd.DataFrame({"clip_is_valid": [r[2] for r in rows], "chunk": [r[1] for r in rows],
                  "split": [r[3] for r in rows]}, index=ids).to_parquet(root / "clip_index.parquet")
    (root / "metadata").mkdir(exist_ok=True)
    pd.DataFrame({f[0]: [True] * len(rows) for f in features}, index=ids).to_parquet(
        root / "metadata" / "feature_presence.parquet")
    pd.DataFrame({"country": "United States", "month": 6, "hour_of_day": 12,
                  "platform_class": "hyperion_8.1", "radar_config": "none"}, index=ids).to_parquet(
        root / "metadata" / "data_collection.parquet")


def build_copy(root: Path, seed: int = 0, train: int = 2, val: int = 1) -> list[CopyClip]:
    """Write the copy under ``root``: world clips (train in chunk 0, val in chunk 1) plus an
    invalid train clip that has no files at all. Returns the valid clips."""
    clips = [CopyClip(split, i, simulate(seed, split, i)[2]["clip_ids"], chunk)
             for split, n, chunk in (("train", train, 0), ("val", val, 1)) for i in range(n)]
    rows = [(c.clip_id, c.chunk, True, c.split) for c in clips]
    rows.insert(1, ("00000000-0000-4000-8000-000000000000", 0, False, "train"))
    write_metadata(root, rows)
    videos = [video_bytes(cam) for cam in range(formats.NUM_CAMERAS)]
    members = {}
    for c in clips:
        for cam, name in enumerate(formats.CAMERAS):
            zip_name = camera_zip(name).format(chunk_id=c.chunk)
            members.setdefault(zip_name, {})[f"{c.clip_id}.{name}.mp4"] = videos[cam]
            members[zip_name][f"{c.clip_id}.{name}.timestamps.parquet"] = parquet_bytes(
                {"timestamp": frame_timestamps(cam)})
        track = simulate(seed, c.split, c.index)[1]
        members.setdefault(EGOMOTION_ZIP.format(chunk_id=c.chunk), {})[
            f"{c.clip_id}.egomotion.parquet"] = parquet_bytes(
                egomotion_columns(track, formats.DEFAULT_T0_US))
    for zip_name, files in members.items():
        (root / zip_name).parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(root / zip_name, "w") as zf:
            for member, data in files.items():
                zf.writestr(member, data)
    return clips


def hf_cache(root: Path, cache: Path) -> Path:
    """A Hugging Face cache holding the copy at REVISION (refs/main names it); returns it."""
    repo = cache / "datasets--nvidia--PhysicalAI-Autonomous-Vehicles"
    shutil.copytree(root, repo / "snapshots" / REVISION)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    return cache


def rewrite_member(zip_path: Path, member: str, data: bytes | None) -> None:
    """Rewrite a zip with one member replaced (None: without it, a clip's camera missing)."""
    with zipfile.ZipFile(zip_path) as zf:
        kept = {n: zf.read(n) for n in zf.namelist()}
    if data is None:
        del kept[member]
    else:
        kept[member] = data
    with zipfile.ZipFile(zip_path, "w") as zf:
        for name, content in kept.items():
            zf.writestr(name, content)


# --- running the data scripts on it, in this process ------------------------------------------

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def script(name: str):
    """The ``main(argv) -> exit status`` of ``scripts/{name}.py``."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def one_error_line(capsys) -> str:
    """The one ``error: ...`` line a refused script printed."""
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(err) == 1, err
    return err[0]


@contextlib.contextmanager
def offline():
    """What a script's own process gets from HF_HUB_OFFLINE=1 set before huggingface_hub is
    imported (in this process an earlier test may have imported it without)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        hub = sys.modules.get("huggingface_hub.constants")
        if hub is not None:
            patch.setattr(hub, "HF_HUB_OFFLINE", True)
        yield patch
