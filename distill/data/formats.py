"""The guide's on-disk formats: paths, schemas and atomic writers (their numbers, the cameras,
rates and sizes, are ``distill.constants``, re-exported here).

Documented for users in docs/formats.md; every reader validates against the schemas here and
every writer (the built-in world, the data scripts) goes through the writers here, so the two
cannot drift. Strings are fixed-width unicode so every load works with ``allow_pickle=False``.
"""
from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ..constants import (  # noqa: F401  (re-exported: the numbers docs/formats.md documents)
    CAMERAS,
    DEFAULT_T0_US,
    DT,
    EMBED_DIM,
    FRAME_OFFSETS_US,
    FUTURE_STEPS,
    HISTORY_STEPS,
    NUM_CAMERAS,
    NUM_FRAMES,
)
from . import provenance as provenance_json
from .jpeg import JPEG_QUALITY, encode_images

SPLITS = ("train", "val")

# A sample's identity: (clip_id, t0_us). Readers join files by it, never by position.
Key = tuple[str, int]


def frames_path(frames_dir: str | os.PathLike, split: str, idx: int) -> Path:
    """``extracted_frames/{split}/sample_{idx:05d}.npz``; idx is global across shards."""
    return Path(frames_dir) / split / f"sample_{idx:05d}.npz"


def labels_path(labels_dir: str | os.PathLike, split: str, shard: int | None = None) -> Path:
    """``teacher_labels/{split}_labels.npz`` or, for shard i, ``{split}_labels_shard{i}.npz``."""
    suffix = "" if shard is None else f"_shard{shard}"
    return Path(labels_dir) / f"{split}_labels{suffix}.npz"


def ego_history_path(labels_dir: str | os.PathLike, split: str) -> Path:
    """``teacher_labels/{split}_ego_history.npz``."""
    return Path(labels_dir) / f"{split}_ego_history.npz"


# Schemas: key -> (dtype kind, shape). Dims named "N" must agree within a file; "H", "W" and
# "L" (a byte count) are free; integers are exact. Dtype kinds: "U" unicode, "i8" int64,
# "f4" float32, "u1" uint8.
FRAMES_SCHEMA = {
    "clip_id": ("U", ()),
    "t0_us": ("i8", ()),
    "timestamps": ("i8", (NUM_CAMERAS, NUM_FRAMES)),
}
# A frames file also holds its images in one of two storages: JPEG (written by default; the
# streams back to back, image i = 4 * camera + frame, see ``jpeg.py``) or raw uint8 RGB.
FRAMES_JPEG_SCHEMA = {
    "jpeg": ("u1", ("L",)),
    "offsets": ("i8", (NUM_CAMERAS * NUM_FRAMES + 1,)),
}
FRAMES_RAW_SCHEMA = {"frames": ("u1", (NUM_CAMERAS, NUM_FRAMES, "H", "W", 3))}
LABELS_SCHEMA = {
    "clip_ids": ("U", ("N",)),
    "t0_us": ("i8", ("N",)),
    "trajectory_xyz": ("f4", ("N", FUTURE_STEPS, 3)),
    "trajectory_rot": ("f4", ("N", FUTURE_STEPS, 3, 3)),
    "coc_texts": ("U", ("N",)),
    "coc_embeddings": ("f4", ("N", EMBED_DIM)),
}
# scenario: written by the built-in world only (the planner's behaviour), for per-scenario
# evaluation. provenance: where the labels come from, a JSON object (``provenance.py``); files
# written before it existed have none.
LABELS_OPTIONAL_SCHEMA = {"scenario": ("U", ("N",)), "provenance": ("U", ())}
EGO_HISTORY_SCHEMA = {
    "clip_ids": ("U", ("N",)),
    "t0_us": ("i8", ("N",)),
    "ego_history_xyz": ("f4", ("N", HISTORY_STEPS, 3)),
    "ego_history_rot": ("f4", ("N", HISTORY_STEPS, 3, 3)),
}


def _cast(arrays: dict[str, np.ndarray], schema: dict) -> dict[str, np.ndarray]:
    """Cast arrays to the schema's dtypes (unicode stays fixed-width, never object)."""
    out = {}
    for key, value in arrays.items():
        kind = (schema.get(key) or LABELS_OPTIONAL_SCHEMA.get(key, ("", ())))[0]
        value = np.asarray(value)
        if kind == "U":
            value = value.astype(str)
        elif kind:
            value = value.astype(np.dtype(kind), copy=False)
        out[key] = value
    return out


def save_npz_atomic(path: str | os.PathLike, compressed: bool = True, **arrays: np.ndarray) -> Path:
    """Write an npz through a temp file in the same folder and rename it into place, so a
    reader never sees half a file and an interrupted writer leaves the old file intact. Zip
    entries carry a fixed date, so the same arrays always give the same bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".npz.tmp", dir=path.parent)
    method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", method, allowZip64=True) as zf:
            for key, value in arrays.items():
                value = np.asanyarray(value)
                if value.dtype == object:
                    raise TypeError(f"{path}: array {key!r} has dtype object; formats never pickle")
                info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = method
                with zf.open(info, "w", force_zip64=True) as entry:
                    np.lib.format.write_array(entry, value, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_frames(path, frames, clip_id: str, t0_us: int, timestamps,
                 jpeg_quality: int | None = JPEG_QUALITY) -> Path:
    """One sample's frames: uint8 (4 cams, 4 frames, H, W, 3) RGB plus its key and times (us),
    stored as JPEG of ``jpeg_quality`` (zip entries stored: JPEG does not deflate) or, with
    None, as the raw array (deflated)."""
    arrays = _cast(dict(clip_id=clip_id, t0_us=t0_us, timestamps=timestamps), FRAMES_SCHEMA)
    if jpeg_quality is None:
        return save_npz_atomic(path, frames=np.asarray(frames, np.uint8), **arrays)
    jpeg, offsets = encode_images(np.asarray(frames, np.uint8), jpeg_quality)
    return save_npz_atomic(path, compressed=False, jpeg=jpeg, offsets=offsets, **arrays)


def write_labels(path, provenance: dict | None = None, **arrays) -> Path:
    """Teacher labels of a split or shard; keys of LABELS_SCHEMA (+ optional ``scenario``) and
    the ``provenance`` dict, stored as JSON text."""
    if provenance is not None:
        arrays["provenance"] = provenance_json.to_json(provenance)
    return save_npz_atomic(path, **_cast(arrays, LABELS_SCHEMA))


def write_ego_history(path, **arrays) -> Path:
    """Ego history of a split; keys of EGO_HISTORY_SCHEMA."""
    return save_npz_atomic(path, **_cast(arrays, EGO_HISTORY_SCHEMA))
