"""Where things are in a local copy of PhysicalAI-Autonomous-Vehicles (chunk ids 4 digits):

    clip_index.parquet                                 clip_id, chunk, clip_is_valid, split
    camera/<cam>/<cam>.chunk_NNNN.zip                  <clip_id>.<cam>.mp4 (30 fps) and
                                                       <clip_id>.<cam>.timestamps.parquet
    labels/egomotion/egomotion.chunk_NNNN.zip          <clip_id>.egomotion.parquet
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from ..readers import DataError

ROOT_ENV = "PAI_DATASET_ROOT"
CLIP_INDEX = "clip_index.parquet"


@dataclass(frozen=True)
class Clip:
    clip_id: str
    chunk: int


def dataset_root(arg: str | None) -> Path:
    """``--dataset-root``, else $PAI_DATASET_ROOT; the folder must hold clip_index.parquet."""
    if not arg:
        arg = os.environ.get(ROOT_ENV)
        if not arg:
            raise DataError(f"--dataset-root is not given and ${ROOT_ENV} is not set")
    root = Path(arg).expanduser()
    if not (root / CLIP_INDEX).is_file():
        raise DataError(f"{root}: not a PhysicalAI-Autonomous-Vehicles copy (no {CLIP_INDEX})")
    return root


def camera_zip(root: Path, camera: str, chunk: int) -> Path:
    return root / "camera" / camera / f"{camera}.chunk_{chunk:04d}.zip"


def egomotion_zip(root: Path, chunk: int) -> Path:
    return root / "labels" / "egomotion" / f"egomotion.chunk_{chunk:04d}.zip"


def read_clip_index(root: Path) -> list[tuple[Clip, str, bool]]:
    """Every row of clip_index.parquet as (clip, split, valid), in file order."""
    path = root / CLIP_INDEX
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for unreadable files
        raise DataError(f"{path}: not a readable parquet file ({type(e).__name__}: {e})") from None
    missing = [c for c in ("clip_id", "chunk", "split") if c not in table.column_names]
    if missing:
        raise DataError(f"{path}: missing column '{missing[0]}' (has: "
                        f"{', '.join(table.column_names)})")
    cols = table.to_pydict()
    valid = cols.get("clip_is_valid", [True] * table.num_rows)
    return [(Clip(str(c), int(k)), str(s), bool(v))
            for c, k, s, v in zip(cols["clip_id"], cols["chunk"], cols["split"], valid)]


def clips_of_split(root: Path, split: str) -> list[Clip]:
    """The valid clips of ``split``, in clip-index order (a clip's position = its sample index)."""
    rows = read_clip_index(root)
    splits = sorted({s for _, s, _ in rows})
    if split not in splits:
        raise DataError(f"{root / CLIP_INDEX}: no split '{split}' (has: {', '.join(splits)})")
    return [clip for clip, s, valid in rows if s == split and valid]


def chunk_of(root: Path) -> dict[str, int]:
    """clip_id -> chunk for every clip of the index."""
    return {clip.clip_id: clip.chunk for clip, _, _ in read_clip_index(root)}


def read_member(zip_path: Path, member: str, clip_id: str, what: str) -> bytes:
    """One file of a chunk zip; a missing zip or member is a DataError naming the clip."""
    if not zip_path.is_file():
        raise DataError(f"{zip_path}: not found, so clip {clip_id} has no {what}")
    try:
        with zipfile.ZipFile(zip_path) as zf:
            try:
                return zf.read(member)
            except KeyError:
                raise DataError(f"{zip_path}: clip {clip_id} has no {what} ({member} is not in "
                                "the zip)") from None
    except zipfile.BadZipFile as e:
        raise DataError(f"{zip_path}: not a readable zip ({e}); needed for clip "
                        f"{clip_id}") from None
