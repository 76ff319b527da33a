"""``scripts/extract_frames.py``: one frames file per sample of a split, from the camera zips.
Resumable: a sample whose file is already there (same key, same size) is not extracted again."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import formats, jpeg
from ..readers import DataError, read_stored_frames
from ..stop import Stopped, stop_requested
from .cli import ScriptError, pool_map, progress
from .layout import Clip, clips_of_split
from .shards import Shard
from .video import sample_frames


@dataclass(frozen=True)
class ExtractJob:
    root: Path
    path: Path
    clip: Clip
    t0_us: int
    resolution: int  # 0 = native size


def extract_one(job: ExtractJob) -> Path:
    """Decode one sample's 16 frames and write its frames file (JPEG)."""
    frames, stamps = sample_frames(job.root, job.clip.clip_id, job.clip.chunk, job.t0_us,
                                   job.resolution or None)
    return formats.write_frames(job.path, frames, job.clip.clip_id, job.t0_us, stamps)


def already_extracted(job: ExtractJob) -> bool:
    """True when the job's file holds its sample at its size; a file holding something else
    is a DataError (another dataset or t0 or size is there: --overwrite replaces it)."""
    if not job.path.is_file():
        return False
    try:
        arrays = read_stored_frames(job.path)
    except DataError:
        return False  # unreadable (e.g. a killed writer's leftovers): extract again
    stored = (str(arrays["clip_id"]), int(arrays["t0_us"]))
    want = (job.clip.clip_id, job.t0_us)
    if stored != want:
        raise DataError(f"{job.path}: holds sample {stored}, this run writes {want}; pass "
                        "--overwrite to replace it")
    if "frames" in arrays:
        size = tuple(arrays["frames"].shape[2:4])
    else:
        size = jpeg.check_stream(jpeg.split_streams(arrays["jpeg"], arrays["offsets"])[0])
    if job.resolution and size != (job.resolution, job.resolution):
        raise DataError(f"{job.path}: holds {size[0]}x{size[1]} px frames, this run writes "
                        f"{job.resolution} px; pass --overwrite to replace it")
    return True


def plan(root: Path, out_dir: Path, split: str, num_samples: int, t0_us: int, resolution: int,
         shard: Shard, overwrite: bool) -> tuple[list[ExtractJob], int]:
    """(jobs still to do, samples of the shard already extracted)."""
    clips = clips_of_split(root, split)
    if num_samples:
        clips = clips[:num_samples]
    jobs = [ExtractJob(root, formats.frames_path(out_dir, split, i), clip, t0_us, resolution)
            for i, clip in enumerate(clips) if shard.owns(i)]
    if not jobs:
        raise ScriptError(f"shard {shard} of the {len(clips)} samples of split {split} is empty")
    if overwrite:
        return jobs, 0
    todo = [job for job in jobs if not already_extracted(job)]
    if not todo:
        raise ScriptError(f"{out_dir / split}: all {len(jobs)} samples of shard {shard} are "
                          "already extracted; pass --overwrite to extract them again")
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
