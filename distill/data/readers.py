"""Readers of the guide's formats. They validate every array against the schemas of
``formats`` and join frames, labels and ego history by the sample key (clip_id, t0_us), never
by position. Every problem is a ``DataError`` whose message is one line naming the file.
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..constants import CAMERAS, NUM_CAMERAS, NUM_FRAMES
from . import formats, jpeg, provenance
from .formats import Key


class DataError(ValueError):
    """Bad input data; the message is one line that names the file and the problem."""


def one_line(error: Exception) -> str:
    """An error's message on one line. Errors re-raised by DataLoader workers carry the worker's
    traceback; its last line is the original ``module.Type: message``."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    if len(lines) <= 1:
        return str(error)
    return lines[-1].split(f"{type(error).__name__}: ", 1)[-1]


def _describe(shape: tuple) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _check_array(path: Path, key: str, value: np.ndarray, spec: tuple, dims: dict) -> None:
    kind, shape = spec
    ok_dtype = value.dtype.kind == "U" if kind == "U" else value.dtype == np.dtype(kind)
    if not ok_dtype:
        want = "fixed-width unicode" if kind == "U" else np.dtype(kind).name
        raise DataError(f"{path}: array '{key}' has dtype {value.dtype}, expected {want}")
    if value.ndim != len(shape) or any(
        isinstance(d, int) and d != s for d, s in zip(shape, value.shape)
    ):
        raise DataError(
            f"{path}: array '{key}' has shape {value.shape}, expected {_describe(shape)}"
        )
    for d, s in zip(shape, value.shape):
        if d == "N" and dims.setdefault(d, (s, key))[0] != s:
            raise DataError(
                f"{path}: array '{key}' has {s} rows but '{dims[d][1]}' has {dims[d][0]}"
            )
    if value.dtype.kind == "f":
        bad = ~np.isfinite(value)
        if bad.any():
            first = np.argwhere(bad)[0]
            raise DataError(
                f"{path}: array '{key}' has {int(bad.sum())} non-finite values "
                f"(first at index {tuple(int(i) for i in first)})"
            )


def load_npz(path: str | os.PathLike, schema: dict, optional: dict | None = None) -> dict:
    """Load every array of ``schema`` (and those of ``optional`` that are present) from an npz,
    checking presence, dtype, shape and finiteness. Returns a dict of numpy arrays."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = set(npz.files)
            missing = [k for k in schema if k not in names]
            if missing:
                raise DataError(
                    f"{path}: missing array '{missing[0]}' (has: {', '.join(sorted(names))})"
                )
            wanted = {**schema, **{k: v for k, v in (optional or {}).items() if k in names}}
            arrays = {k: npz[k] for k in wanted}
    except DataError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as e:
        raise DataError(f"{path}: not a readable npz ({type(e).__name__}: {e})") from None
    dims: dict = {}
    for key, spec in wanted.items():
        _check_array(path, key, arrays[key], spec, dims)
    return arrays


def _keys(path: Path, clip_ids: np.ndarray, t0_us: np.ndarray) -> list[Key]:
    keys = [(str(c), int(t)) for c, t in zip(clip_ids, t0_us)]
    if len(set(keys)) != len(keys):
        seen: set = set()
        dup = next(k for k in keys if k in seen or seen.add(k))
        raise DataError(f"{path}: sample key {dup} appears more than once")
    return keys


@dataclass
class KeyedArrays:
    """Arrays of one file whose rows are samples, with each row's key, and (labels) the file's
    parsed ``provenance`` (None when it has none)."""

    path: Path
    keys: list[Key]
    arrays: dict[str, np.ndarray]
    provenance: dict | None = None

    def rows(self, keys: list[Key]) -> dict[str, np.ndarray]:
        """The arrays reordered to ``keys`` (each must be present)."""
        where = {k: i for i, k in enumerate(self.keys)}
        idx = np.array([where[k] for k in keys], dtype=np.int64)
        return {name: a[idx] for name, a in self.arrays.items()}


def load_labels(path: str | os.PathLike) -> KeyedArrays:
    """``{split}_labels.npz``: teacher trajectories, rotations, CoC texts and embeddings; its
    provenance, when it has one, parsed into ``.provenance`` (not a row array)."""
    path = Path(path)
    arrays = load_npz(path, formats.LABELS_SCHEMA, formats.LABELS_OPTIONAL_SCHEMA)
    origin = None
    if "provenance" in arrays:
        try:
            origin = provenance.parse(str(arrays.pop("provenance")))
        except ValueError as e:
            raise DataError(f"{path}: array 'provenance': {e}") from None
    return KeyedArrays(path, _keys(path, arrays["clip_ids"], arrays["t0_us"]), arrays, origin)


def load_ego_history(path: str | os.PathLike) -> KeyedArrays:
    """``{split}_ego_history.npz``: 16 past ego poses per sample in the t0 frame."""
    arrays = load_npz(path, formats.EGO_HISTORY_SCHEMA)
    return KeyedArrays(Path(path), _keys(Path(path), arrays["clip_ids"], arrays["t0_us"]), arrays)


def read_frame_key(path: str | os.PathLike) -> Key:
    """The (clip_id, t0_us) stored in one sample's frames file, without decoding its frames."""
    keys_schema = {k: formats.FRAMES_SCHEMA[k] for k in ("clip_id", "t0_us")}
    arrays = load_npz(path, keys_schema)
    return str(arrays["clip_id"]), int(arrays["t0_us"])


def read_stored_frames(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """One sample's frames file as stored, validated: its key and times plus either ``jpeg``
    and ``offsets`` (JPEG storage) or ``frames`` (raw)."""
    path = Path(path)
    arrays = load_npz(path, formats.FRAMES_SCHEMA,
                      {**formats.FRAMES_JPEG_SCHEMA, **formats.FRAMES_RAW_SCHEMA})
    if "frames" not in arrays:
        for key in formats.FRAMES_JPEG_SCHEMA:
            if key not in arrays:
                raise DataError(f"{path}: missing array '{key}' (and no raw 'frames')")
        try:
            jpeg.check_offsets(arrays["jpeg"], arrays["offsets"])
        except ValueError as e:
            raise DataError(f"{path}: {e}") from None
    return arrays


def frame_error(path, clip_id, image: int, problem) -> DataError:
    """The error for image ``image`` (= 4 * camera + frame) of a frames file: one line naming
    the file, the clip, the camera and the frame."""
    camera, frame = divmod(image, NUM_FRAMES)
    return DataError(f"{path}: clip {clip_id}: {CAMERAS[camera]} frame {frame}: {problem}")


def check_sample_key(path, arrays: dict, key: Key) -> None:
    """Raises DataError when the frames file ``path`` (``arrays``, as read) holds another sample
    than ``key``, the one it was indexed as (the file changed since)."""
    stored = (str(arrays["clip_id"]), int(arrays["t0_us"]))
    if stored != key:
        raise DataError(f"{path}: holds sample {stored}, expected {key} (changed since indexing)")


def read_frames(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """One sample's frames file, validated and decoded: ``frames`` uint8 (4, 4, H, W, 3) RGB,
    ``clip_id``, ``t0_us`` and ``timestamps``, whichever the storage."""
    arrays = read_stored_frames(path)
    if "frames" in arrays:
        return arrays
    images = []
    for i, stream in enumerate(jpeg.split_streams(arrays.pop("jpeg"), arrays.pop("offsets"))):
        try:
            images.append(jpeg.decode_stream(stream))
        except ValueError as e:
            raise frame_error(path, arrays["clip_id"], i, e) from None
    if len({image.shape for image in images}) > 1:
        raise DataError(f"{path}: clip {arrays['clip_id']}: images of different sizes "
                        f"{sorted({image.shape[:2] for image in images})}")
    arrays["frames"] = np.stack(images).reshape(NUM_CAMERAS, NUM_FRAMES,
                                                *images[0].shape)
    return arrays


def index_frames(frames_dir: str | os.PathLike, split: str) -> dict[Key, Path]:
    """Map each sample key to its frames file under ``frames_dir/split``."""
    folder = Path(frames_dir) / split
    if not folder.is_dir():
        raise DataError(f"{folder}: frames folder not found")
    files = sorted(folder.glob("sample_*.npz"))
    if not files:
        raise DataError(f"{folder}: no sample_*.npz files")
    index: dict[Key, Path] = {}
    for f in files:
        key = read_frame_key(f)
        if key in index:
            raise DataError(f"{f}: sample key {key} is also in {index[key].name}")
        index[key] = f
    return index


def _require_same_keys(a_path: Path, a_keys, b_path: Path, b_keys) -> None:
    a, b = set(a_keys), set(b_keys)
    for src, dst, src_path, dst_path in ((a, b, a_path, b_path), (b, a, b_path, a_path)):
        missing = sorted(src - dst)
        if missing:
            raise DataError(
                f"{dst_path}: {len(missing)} sample keys of {src_path} are missing here, "
                f"e.g. {missing[0]}"
            )


@dataclass
class SplitData:
    """A split joined by key: labels and history rows aligned to ``keys``, frames by path, and
    the labels' parsed provenance (None for labels without one)."""

    keys: list[Key]
    labels: dict[str, np.ndarray]
    history: dict[str, np.ndarray]
    frame_paths: list[Path]
    provenance: dict | None = None

    def __len__(self) -> int:
        return len(self.keys)

    def subset(self, n: int) -> "SplitData":
        """The first ``n`` samples (in label order)."""
        return SplitData(
            self.keys[:n],
            {k: v[:n] for k, v in self.labels.items()},
            {k: v[:n] for k, v in self.history.items()},
            self.frame_paths[:n],
            self.provenance,
        )


def load_split(labels_file, history_file, frames_dir, split: str) -> SplitData:
    """Join one split's labels, ego history and frames by (clip_id, t0_us), in label order.
    A key present in one of the three and not in another is an error naming the file."""
    labels = load_labels(labels_file)
    history = load_ego_history(history_file)
    _require_same_keys(labels.path, labels.keys, history.path, history.keys)
    frames = index_frames(frames_dir, split)
    _require_same_keys(labels.path, labels.keys, Path(frames_dir) / split, frames.keys())
    return SplitData(
        keys=labels.keys,
        labels=labels.arrays,
        history=history.rows(labels.keys),
        frame_paths=[frames[k] for k in labels.keys],
        provenance=labels.provenance,
    )
