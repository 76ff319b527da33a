"""Write a built-in world in the guide's formats: per split, one frames file per sample, the
teacher labels and the ego history, all keyed by (clip_id, t0_us)."""
from __future__ import annotations

import multiprocessing as mp
import shutil
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..constants import DEFAULT_T0_US, FRAME_OFFSETS_US, NUM_CAMERAS
from ..data import formats, provenance
from .coc import sentence
from .planner import drive
from .render import render_frames
from .scenarios import build_scene, sample_behaviour
from .scene import FUTURE_INDICES, HISTORY_INDICES, T0_INDEX, TIMES, Scene

SPLIT_STREAMS = {"train": 0, "val": 1}  # independent random streams per split
DRIVE_STREAM = 2  # the closed loop's episodes (distill.closed_loop): a stream of their own
PLANNER = "distill-world-planner"


def world_provenance(seed: int) -> dict:
    """The provenance of the world's labels (its own and the world teacher's): the rule-based
    planner of this code version, sample i of a split simulated from (seed, split, i)."""
    streams = ", ".join(f"{s} {n}" for s, n in SPLIT_STREAMS.items())
    sampling = dict(method="deterministic rule-based planner, no sampling", world_seed=seed,
                    seed_rule=f"sample i of split s: numpy default_rng([world_seed, stream of s "
                    f"({streams}), i])")
    return provenance.build("world", PLANNER, provenance.code_version(), sampling,
                            "distill built-in world", f"seed {seed}",
                            provenance.t0_rule([DEFAULT_T0_US]))


def poses_in_ego_frame(track, indices, ref: int = T0_INDEX):
    """Ego poses at ``indices`` in the ego frame at time index ``ref`` (x forward, y left, z
    up): xyz float32 (n, 3) and rotations float32 (n, 3, 3) (yaw only; the world is flat)."""
    x0, y0, yaw0 = track.x[ref], track.y[ref], track.yaw[ref]
    c, s = np.cos(yaw0), np.sin(yaw0)
    dx, dy = track.x[indices] - x0, track.y[indices] - y0
    xyz = np.stack([c * dx + s * dy, -s * dx + c * dy, np.zeros(len(indices))], axis=1)
    yaw = track.yaw[indices] - yaw0
    rot = np.zeros((len(indices), 3, 3))
    rot[:, 0, 0], rot[:, 0, 1] = np.cos(yaw), -np.sin(yaw)
    rot[:, 1, 0], rot[:, 1, 1] = np.sin(yaw), np.cos(yaw)
    rot[:, 2, 2] = 1.0
    return xyz.astype(np.float32), rot.astype(np.float32)


@dataclass(frozen=True)
class SampleJob:
    out: Path
    split: str
    index: int
    seed: int
    resolution: int


def draw_scene(seed: int, stream: int, index: int, times=TIMES) -> tuple[str, Scene]:
    """Scene ``index`` of a random stream (``SPLIT_STREAMS``, ``DRIVE_STREAM``) and its clip
    id, its time arrays on ``times`` (a ``scene.time_grid``)."""
    rng = np.random.default_rng([seed, stream, index])
    clip_id = str(uuid.UUID(bytes=rng.bytes(16), version=4))
    behaviour = sample_behaviour(rng)
    return clip_id, build_scene(rng, behaviour, times)


def simulate(seed: int, split: str, index: int):
    """One sample's scene, the planner's drive through it and its label / history row."""
    clip_id, scene = draw_scene(seed, SPLIT_STREAMS[split], index)
    track = drive(scene)
    traj_xyz, traj_rot = poses_in_ego_frame(track, FUTURE_INDICES)
    hist_xyz, hist_rot = poses_in_ego_frame(track, HISTORY_INDICES)
    row = dict(clip_ids=clip_id, t0_us=DEFAULT_T0_US, trajectory_xyz=traj_xyz,
               trajectory_rot=traj_rot, coc_texts=sentence(scene, track),
               scenario=scene.behaviour,
               ego_history_xyz=hist_xyz, ego_history_rot=hist_rot)
    return scene, track, row


def make_sample(job: SampleJob) -> dict:
    """Simulate, render and write one sample's frames; return its label and history row."""
    scene, track, row = simulate(job.seed, job.split, job.index)
    frames = render_frames(scene, track, job.resolution)
    stamps = np.tile(np.array(FRAME_OFFSETS_US, np.int64) + row["t0_us"],
                     (NUM_CAMERAS, 1))
    formats.write_frames(formats.frames_path(job.out / "extracted_frames", job.split, job.index),
                         frames, row["clip_ids"], row["t0_us"], stamps)
    return row


def generate_split(out: Path, split: str, n: int, seed: int, resolution: int,
                   workers: int) -> list[dict]:
    jobs = [SampleJob(out, split, i, seed, resolution) for i in range(n)]
    bar = dict(total=n, desc=f"world {split}", unit="sample", dynamic_ncols=True)
    if workers <= 1:
        rows = [make_sample(j) for j in tqdm(jobs, **bar)]
    else:
        with mp.get_context("spawn").Pool(workers) as pool:
            rows = list(tqdm(pool.imap(make_sample, jobs, chunksize=4), **bar))
    return rows


def stack_rows(rows: list[dict]) -> tuple[dict, dict]:
    """Rows of a split -> (labels arrays, ego-history arrays) in the formats' layout."""
    from ..data.text_encoder import embed_texts

    def col(key):
        return np.stack([r[key] for r in rows])

    labels = dict(clip_ids=col("clip_ids"), t0_us=col("t0_us"),
                  trajectory_xyz=col("trajectory_xyz"), trajectory_rot=col("trajectory_rot"),
                  coc_texts=col("coc_texts"), coc_embeddings=embed_texts(col("coc_texts")),
                  scenario=col("scenario"))
    history = dict(clip_ids=col("clip_ids"), t0_us=col("t0_us"),
                   ego_history_xyz=col("ego_history_xyz"), ego_history_rot=col("ego_history_rot"))
    return labels, history


def write_split_labels(out: Path, split: str, rows: list[dict], seed: int) -> None:
    """Stack the rows of a split into its labels and ego-history files."""
    labels, history = stack_rows(rows)
    labels_dir = out / "teacher_labels"
    formats.write_labels(formats.labels_path(labels_dir, split), world_provenance(seed),
                         **labels)
    formats.write_ego_history(formats.ego_history_path(labels_dir, split), **history)


def existing_outputs(out: Path) -> list[Path]:
    return [p for p in (out / "extracted_frames", out / "teacher_labels") if p.exists()]


def generate_world(out, train: int, val: int, seed: int = 0, resolution: int = 224,
                   workers: int = 1, overwrite: bool = False) -> dict:
    """Write the world under ``out`` and return a summary (samples, scenario mix, seconds)."""
    out = Path(out)
    found = existing_outputs(out)
    if found and not overwrite:
        raise FileExistsError(f"{found[0]}: already exists; pass --overwrite to replace it")
    for p in found:
        shutil.rmtree(p)
    start = time.perf_counter()
    summary = {"out": str(out), "seed": seed, "resolution": resolution, "splits": {}}
    for split, n in (("train", train), ("val", val)):
        rows = generate_split(out, split, n, seed, resolution, workers)
        write_split_labels(out, split, rows, seed)
        summary["splits"][split] = {
            "samples": n,
            "scenarios": dict(sorted(Counter(r["scenario"] for r in rows).items())),
            "distinct_sentences": len({r["coc_texts"] for r in rows}),
        }
    summary["seconds"] = round(time.perf_counter() - start, 1)
    return summary
