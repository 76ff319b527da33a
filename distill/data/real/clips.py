"""A sample of PhysicalAI-Autonomous-Vehicles as the devkit reads it, chosen as the guide and
Alpamayo-R1's own loader choose it: the clips of a split (the devkit's clip index, or a split
file), and for a (clip_id, t0_us) the 4 cameras' frames at t0-0.3 ... t0 (the devkit's camera
readers: the latest frame at or before each time) and the ego poses at t0-1.5 ... t0 (the
devkit's egomotion interpolator: cubic-spline positions, slerp rotations) in the ego frame at
t0. A sample is valid when its clip covers t0-1.5 ... t0+6.4 s (history and teacher horizon).
Every problem is a one-line DataError naming the clip."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ...constants import CAMERAS, DT, FRAME_OFFSETS_US, FUTURE_STEPS, HISTORY_STEPS
from ..readers import DataError
from .source import Source, dataset, hub_error, one_line_of

EGOMOTION = "egomotion"  # the devkit's feature names: this and the cameras' (CAMERAS)
STEP_US = int(round(DT * 1e6))


def frame_times(t0_us: int) -> np.ndarray:
    """int64 (4,): t0 - 0.3 s ... t0."""
    return t0_us + np.array(FRAME_OFFSETS_US, np.int64)


def history_times(t0_us: int) -> np.ndarray:
    """int64 (16,): t0 - 1.5 s ... t0 every 0.1 s."""
    return t0_us + STEP_US * np.arange(-(HISTORY_STEPS - 1), 1, dtype=np.int64)


def window(t0_us: int) -> tuple[int, int]:
    """The times a sample needs poses at: t0 - 1.5 s and t0 + 6.4 s (the future's end)."""
    return int(history_times(t0_us)[0]), t0_us + STEP_US * FUTURE_STEPS


def split_clips(source: Source, split: str, split_file: str | None = None) -> list[str]:
    """The clips of a split in order (a clip's position = its sample index): the valid clips of
    ``split`` in the devkit's clip index, or the clips a split file (parquet with a ``clip_id``
    column or index) lists, each of which must be in the index and valid."""
    index = dataset(source).clip_index
    valid = (index["clip_is_valid"] if "clip_is_valid" in index else
             index.index.to_series(index=index.index).notna())  # no column: all valid
    if split_file is None:
        splits = sorted(map(str, set(index["split"]))) if "split" in index else []
        if split not in splits:
            raise DataError(f"{source}: its clip index has no split '{split}' (has: "
                            f"{', '.join(splits) or 'no split column'})")
        return [str(c) for c in index.index[(index["split"] == split) & valid]]
    clips = read_split_file(Path(split_file))
    for clip_id in clips:
        if clip_id not in index.index:
            raise DataError(f"{split_file}: clip {clip_id} is not in the clip index of the "
                            f"{source}")
        if not valid[clip_id]:
            raise DataError(f"{split_file}: clip {clip_id} is marked invalid in the clip index")
    return clips


def read_split_file(path: Path) -> list[str]:
    import pandas as pd

    try:
        table = pd.read_parquet(path)
    except Exception as e:  # pandas and pyarrow raise several types for unreadable files
        raise DataError(f"{path}: not a readable parquet file ({one_line_of(e)})") from None
    ids = (table["clip_id"] if "clip_id" in table.columns else
           table.index.to_series() if table.index.name == "clip_id" else None)
    if ids is None:
        raise DataError(f"{path}: no 'clip_id' column (has: {', '.join(map(str, table.columns))})")
    clips = [str(c) for c in ids]
    seen: set = set()
    twice = next((c for c in clips if c in seen or seen.add(c)), None)
    if twice is not None:
        raise DataError(f"{path}: clip {twice} is listed twice")
    return clips


@contextmanager
def clip_errors(clip_id: str, what: str, absent: str) -> Iterator[None]:
    """Whatever the devkit raises while reading ``what`` of a clip, as one line naming both
    (``absent``: what to say when a file is not there)."""
    try:
        yield
    except DataError:
        raise
    except Exception as e:
        mapped = hub_error(e, f"clip {clip_id}: {what}")  # gated, no connection, ...
        if mapped is None and isinstance(e, KeyError):  # a member missing from its chunk zip
            mapped = DataError(f"clip {clip_id}: {what}: missing from its chunk file "
                               f"({one_line_of(e)})")
        elif mapped is None and isinstance(e, FileNotFoundError):
            mapped = DataError(f"clip {clip_id}: {what}: {absent}")
        elif mapped is None:  # decoders and parsers: not a video, a bad parquet, ...
            mapped = DataError(f"clip {clip_id}: {what}: not readable ({type(e).__name__}: "
                               f"{one_line_of(e)})")
        raise mapped from None


def check_covers(clip_id: str, what: str, have: tuple[int, int], need: tuple[int, int],
                 t0_us: int) -> None:
    if need[0] < have[0] or need[1] > have[1]:
        end = "start" if need[0] < have[0] else "end"
        raise DataError(f"clip {clip_id}: t0_us {t0_us} is too close to the clip's {end}: "
                        f"{what} covers {have[0]}..{have[1]} us, the sample needs "
                        f"{need[0]}..{need[1]} us")


class ClipReader:
    """Samples of one source through its devkit interface (one per process: ``reader``)."""

    def __init__(self, source: Source):
        self.source, self.dataset = source, dataset(source)
        self.stream = source.kind == "hub"

    def feature(self, clip_id: str, feature: str):
        if clip_id not in self.dataset.clip_index.index:
            raise DataError(f"clip {clip_id}: not in the clip index of the {self.source}")
        if feature not in self.dataset.features.ALL:
            raise DataError(f"{self.source}: its features.csv has no feature {feature}")
        chunk_file = self.dataset.features.get_chunk_feature_filename(
            self.dataset.get_clip_chunk(clip_id), feature)
        with clip_errors(clip_id, feature, f"{chunk_file} is not in the {self.source}"):
            return self.dataset.get_clip_feature(clip_id, feature, maybe_stream=self.stream)

    def camera(self, clip_id: str, camera: str, t0_us: int) -> tuple[np.ndarray, np.ndarray]:
        """One camera's frames uint8 (4, H, W, 3) RGB at native size and their times (4,)."""
        video = self.feature(clip_id, camera)
        try:
            times = frame_times(t0_us)
            stamps = video.timestamps
            check_covers(clip_id, camera, (int(stamps[0]), int(stamps[-1])),
                         (int(times[0]), int(times[-1])), t0_us)
            with clip_errors(clip_id, camera, "a file is missing"):
                frames, chosen = video.decode_images_from_timestamps(times)
        finally:
            video.close()
        return frames, chosen.astype(np.int64)

    def frames(self, clip_id: str, t0_us: int) -> tuple[np.ndarray, np.ndarray]:
        """A sample's frames uint8 (4 cams, 4 frames, H, W, 3) and times int64 (4, 4)."""
        per_camera = [self.camera(clip_id, cam, t0_us) for cam in CAMERAS]
        sizes = {f.shape for f, _ in per_camera}
        if len(sizes) > 1:
            raise DataError(f"clip {clip_id}: the cameras' frames differ in size "
                            f"({', '.join(f'{s[2]}x{s[1]}' for s in sorted(sizes))})")
        return np.stack([f for f, _ in per_camera]), np.stack([t for _, t in per_camera])

    def egomotion(self, clip_id: str, t0_us: int):
        """The clip's egomotion interpolator, checked to cover the sample's window."""
        interpolate = self.feature(clip_id, EGOMOTION)
        lo, hi = interpolate.time_range
        check_covers(clip_id, EGOMOTION, (int(lo), int(hi)), window(t0_us), t0_us)
        return interpolate

    def history(self, clip_id: str, t0_us: int) -> tuple[np.ndarray, np.ndarray]:
        """float32 xyz (16, 3) and rotations (16, 3, 3) at t0 - 1.5 s ... t0 in the ego frame
        at t0: xyz_local = R_t0^-1 (xyz - xyz_t0), rot_local = R_t0^-1 R_i."""
        interpolate = self.egomotion(clip_id, t0_us)
        with clip_errors(clip_id, EGOMOTION, "a file is missing"):
            pose = interpolate(history_times(t0_us)).pose
        xyz, rot = pose.translation, pose.rotation
        if not np.isfinite(xyz).all():
            raise DataError(f"clip {clip_id}: egomotion: non-finite poses in the history")
        to_t0 = rot[-1].inv()
        return (to_t0.apply(xyz - xyz[-1]).astype(np.float32),
                (to_t0 * rot).as_matrix().astype(np.float32))


_READERS: dict[Source, ClipReader] = {}


def reader(source: Source) -> ClipReader:
    """This process's reader of an opened source."""
    if source not in _READERS:
        _READERS[source] = ClipReader(source)
    return _READERS[source]
