"""``scripts/extract_frames.py``: one frames file per sample of a split, its frames decoded by
the devkit (``clips.py``) at native size and resized to a square. Resumable: a sample whose file
is already there (same key, size and storage) is not extracted again."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .. import formats, jpeg
from ..readers import DataError, read_stored_frames
from ..stop import Stopped, stop_requested
from .cli import ScriptError, pool_map, progress
from .clips import reader, split_clips
from .shards import Shard
from .source import Source


@dataclass(frozen=True)
class ExtractJob:
    source: Source
    path: Path
    clip_id: str
    t0_us: int
    resolution: int  # 0 = native size
    raw: bool  # store the uint8 frames as they are instead of JPEG


def resize(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 (..., H, W, 3) -> (..., size, size, 3), each image averaged over the source pixels
    it covers (PIL's box filter)."""
    flat = frames.reshape(-1, *frames.shape[-3:])
    out = [np.asarray(Image.fromarray(f).resize((size, size), Image.Resampling.BOX))
           for f in flat]
    return np.stack(out).reshape(*frames.shape[:-3], size, size, 3)


def extract_one(job: ExtractJob) -> Path:
    """Decode one sample's 16 frames (its clip checked to cover the sample's whole window) and
    write its frames file."""
    clips = reader(job.source)
    clips.egomotion(job.clip_id, job.t0_us)
    frames, stamps = clips.frames(job.clip_id, job.t0_us)
    if job.resolution:
        frames = resize(frames, job.resolution)
    return formats.write_frames(job.path, frames, job.clip_id, job.t0_us, stamps,
                                jpeg_quality=None if job.raw else jpeg.JPEG_QUALITY)


def already_extracted(job: ExtractJob) -> bool:
    """True when the job's file holds its sample at its size and storage; a file holding
    something else is a DataError (--overwrite replaces it)."""
    if not job.path.is_file():
        return False
    try:
        arrays = read_stored_frames(job.path)
    except DataError:
        return False  # unreadable (e.g. a killed writer's leftovers): extract again
    stored = (str(arrays["clip_id"]), int(arrays["t0_us"]))
    want = (job.clip_id, job.t0_us)
    if stored != want:
        raise DataError(f"{job.path}: holds sample {stored}, this run writes {want}; pass "
                        "--overwrite to replace it")
    if ("frames" in arrays) != job.raw:
        raise DataError(f"{job.path}: holds {'raw' if 'frames' in arrays else 'JPEG'} frames, "
                        f"this run writes {'raw' if job.raw else 'JPEG'}; pass --overwrite to "
                        "replace it")
    if "frames" in arrays:
        size = tuple(arrays["frames"].shape[2:4])
    else:
        size = jpeg.check_stream(jpeg.split_streams(arrays["jpeg"], arrays["offsets"])[0])
    if job.resolution and size != (job.resolution, job.resolution):
        raise DataError(f"{job.path}: holds {size[0]}x{size[1]} px frames, this run writes "
                        f"{job.resolution} px; pass --overwrite to replace it")
    return True


@dataclass(frozen=True)
class Request:
    """What ``scripts/extract_frames.py`` was asked for."""

    out_dir: Path
    split: str
    split_file: str | None
    num_samples: int  # 0 = all
    t0_us: int
    resolution: int
    raw: bool
    shard: Shard
    overwrite: bool


def plan(source: Source, ask: Request) -> tuple[list[ExtractJob], int]:
    """(jobs still to do, samples of the shard already extracted)."""
    clips = split_clips(source, ask.split, ask.split_file)
    if ask.num_samples:
        clips = clips[:ask.num_samples]
    jobs = [ExtractJob(source, formats.frames_path(ask.out_dir, ask.split, i), clip_id,
                       ask.t0_us, ask.resolution, ask.raw)
            for i, clip_id in enumerate(clips) if ask.shard.owns(i)]
    if not jobs:
        raise ScriptError(f"shard {ask.shard} of the {len(clips)} samples of split {ask.split} "
                          "is empty")
    if ask.overwrite:
        return jobs, 0
    todo = [job for job in jobs if not already_extracted(job)]
    if not todo:
        raise ScriptError(f"{ask.out_dir / ask.split}: all {len(jobs)} samples of shard "
                          f"{ask.shard} are already extracted; pass --overwrite to extract them "
                          "again")
    return todo, len(jobs) - len(todo)


def extract(jobs: list[ExtractJob], workers: int) -> None:
    """Run the jobs, ``workers`` processes at a time, with a progress bar. A stop signal ends
    it once the files being written are whole (``Stopped``: the same command goes on)."""
    with progress(total=len(jobs), desc="extract frames", unit="sample") as bar:
        if workers <= 1:
            for job in jobs:
                if stop_requested():
                    break
                extract_one(job)
                bar.update()
        else:
            for _ in pool_map(extract_one, jobs, workers):
                bar.update()
    if bar.n < len(jobs):
        raise Stopped(f"stopped by {stop_requested()}: {bar.n} of the {len(jobs)} samples to do "
                      "extracted (each file whole); run the same command again to go on")
