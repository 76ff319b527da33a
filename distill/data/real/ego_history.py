"""``scripts/generate_ego_history.py``: each extracted sample's 16 past ego poses from its
clip's egomotion, in the ego frame at its t0, into teacher_labels/{split}_ego_history.npz."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import formats
from ..readers import DataError, read_frame_key
from .cli import progress
from .egomotion import ego_history, read_egomotion
from .layout import CLIP_INDEX, chunk_of, egomotion_zip, read_member
from .shards import sample_files


def split_ego_history(root: Path, frames_dir: Path, split: str) -> dict[str, np.ndarray]:
    """The ego-history arrays (EGO_HISTORY_SCHEMA) of every sample under frames_dir/split,
    in sample-index order, keyed by the (clip_id, t0_us) stored in each frames file."""
    chunks = chunk_of(root)
    files, rows = sample_files(frames_dir / split), []
    with progress(files.values(), desc=f"ego history {split}", unit="sample") as bar:
        for path in bar:
            clip_id, t0_us = read_frame_key(path)
            if clip_id not in chunks:
                raise DataError(f"{path}: clip {clip_id} is not in {root / CLIP_INDEX}")
            zip_path = egomotion_zip(root, chunks[clip_id])
            where = f"{zip_path}: clip {clip_id}"
            data = read_member(zip_path, f"{clip_id}.egomotion.parquet", clip_id, "egomotion")
            xyz, rot = ego_history(read_egomotion(data, where), t0_us, where)
            rows.append((clip_id, t0_us, xyz, rot))
    return dict(clip_ids=np.array([r[0] for r in rows]),
                t0_us=np.array([r[1] for r in rows], np.int64),
                ego_history_xyz=np.stack([r[2] for r in rows]),
                ego_history_rot=np.stack([r[3] for r in rows]))


def write_split_ego_history(root: Path, frames_dir: Path, split: str, out_dir: Path) -> Path:
    arrays = split_ego_history(root, frames_dir, split)
    return formats.write_ego_history(formats.ego_history_path(out_dir, split), **arrays)
