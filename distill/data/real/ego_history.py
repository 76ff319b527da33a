"""``scripts/generate_ego_history.py``: each extracted sample's 16 past ego poses from its
clip's egomotion (the devkit's interpolator, ``clips.py``), in the ego frame at its t0, into
teacher_labels/{split}_ego_history.npz."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import formats
from ..readers import DataError, read_frame_key
from ..stop import Stopped, stop_requested
from .cli import progress
from .clips import reader
from .shards import sample_files
from .source import Source


class EgomotionHistory:
    """A sample's ego history from its clip's egomotion in an opened source:
    ``(clip_id, t0_us, where) -> (xyz float32 (16, 3), rot float32 (16, 3, 3))``; errors name
    ``where`` (the sample's frames file) and the clip."""

    def __init__(self, source: Source):
        self.clips = reader(source)

    def __call__(self, clip_id: str, t0_us: int, where: Path) -> tuple[np.ndarray, np.ndarray]:
        try:
            return self.clips.history(clip_id, t0_us)
        except DataError as e:
            raise DataError(f"{where}: {e}") from None


def split_ego_history(source: Source, frames_dir: Path, split: str) -> dict[str, np.ndarray]:
    """The ego-history arrays (EGO_HISTORY_SCHEMA) of every sample under frames_dir/split,
    in sample-index order, keyed by the (clip_id, t0_us) stored in each frames file."""
    history, files, rows = EgomotionHistory(source), sample_files(frames_dir / split), []
    with progress(files.values(), desc=f"ego history {split}", unit="sample") as bar:
        for path in bar:
            if stop_requested():  # nothing of this split written; finished splits are kept
                raise Stopped(f"stopped by {stop_requested()} during split {split} (not written; "
                              "the splits finished before are); run the same command again to "
                              "go on")
            clip_id, t0_us = read_frame_key(path)
            rows.append((clip_id, t0_us, *history(clip_id, t0_us, path)))
    return dict(clip_ids=np.array([r[0] for r in rows]),
                t0_us=np.array([r[1] for r in rows], np.int64),
                ego_history_xyz=np.stack([r[2] for r in rows]),
                ego_history_rot=np.stack([r[3] for r in rows]))


def write_split_ego_history(source: Source, frames_dir: Path, split: str, out_dir: Path) -> Path:
    arrays = split_ego_history(source, frames_dir, split)
    return formats.write_ego_history(formats.ego_history_path(out_dir, split), **arrays)
