"""``scripts/generate_ego_history.py``: each extracted sample's 16 past ego poses from its
clip's egomotion, in the ego frame at its t0, into teacher_labels/{split}_ego_history.npz."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import formats
from ..readers import DataError, read_frame_key
from ..stop import Stopped, stop_requested
from .cli import progress
from .egomotion import ego_history, read_egomotion
from .layout import CLIP_INDEX, chunk_of, egomotion_zip, read_member
from .shards import sample_files


class EgomotionHistory:
    """A sample's ego history computed from its clip's egomotion in the dataset copy at
    ``root``: ``(clip_id, t0_us) -> (xyz float32 (16, 3), rot float32 (16, 3, 3))``."""

    def __init__(self, root: Path):
        self.root, self.chunks = root, chunk_of(root)

    def __call__(self, clip_id: str, t0_us: int, where: Path) -> tuple[np.ndarray, np.ndarray]:
        if clip_id not in self.chunks:
            raise DataError(f"{where}: clip {clip_id} is not in {self.root / CLIP_INDEX}")
        zip_path = egomotion_zip(self.root, self.chunks[clip_id])
        name = f"{zip_path}: clip {clip_id}"
        data = read_member(zip_path, f"{clip_id}.egomotion.parquet", clip_id, "egomotion")
        return ego_history(read_egomotion(data, name), t0_us, name)


def split_ego_history(root: Path, frames_dir: Path, split: str) -> dict[str, np.ndarray]:
    """The ego-history arrays (EGO_HISTORY_SCHEMA) of every sample under frames_dir/split,
    in sample-index order, keyed by the (clip_id, t0_us) stored in each frames file."""
    history, files, rows = EgomotionHistory(root), sample_files(frames_dir / split), []
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


def write_split_ego_history(root: Path, frames_dir: Path, split: str, out_dir: Path) -> Path:
    arrays = split_ego_history(root, frames_dir, split)
    return formats.write_ego_history(formats.ego_history_path(out_dir, split), **arrays)
