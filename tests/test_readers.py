"""Readers: join by (clip_id, t0_us), never by position, and one clear line naming the file
for every kind of bad input."""
from __future__ import annotations

import numpy as np
import pytest

from distill.data import formats, provenance
from distill.data.readers import DataError, load_labels, load_split, read_frames

N = 3


ORIGIN = provenance.build("alpamayo-r1", "nvidia/Alpamayo-R1-10B", "c" * 40, {"top_p": 0.98},
                          "nvidia/PhysicalAI-Autonomous-Vehicles", None,
                          provenance.t0_rule([formats.DEFAULT_T0_US]))


def _write_split(root, order=(0, 1, 2), origin=ORIGIN):
    """A tiny split in the guide's formats (labels with provenance ``origin``); history rows
    written in ``order``."""
    labels_dir, frames_dir = root / "teacher_labels", root / "extracted_frames"
    clips = np.array([f"clip-{i}" for i in range(N)])
    t0 = np.full(N, formats.DEFAULT_T0_US, np.int64)
    rng = np.random.default_rng(0)
    traj = rng.normal(size=(N, formats.FUTURE_STEPS, 3)).astype(np.float32)
    rot = np.tile(np.eye(3, dtype=np.float32), (N, formats.FUTURE_STEPS, 1, 1))
    formats.write_labels(formats.labels_path(labels_dir, "train"), origin, clip_ids=clips,
                         t0_us=t0, trajectory_xyz=traj, trajectory_rot=rot,
                         coc_texts=np.array(["a", "b", "a"]),
                         coc_embeddings=np.ones((N, formats.EMBED_DIM), np.float32))
    hist = np.arange(N, dtype=np.float32)[:, None, None] * np.ones((1, formats.HISTORY_STEPS, 3))
    o = list(order)
    formats.write_ego_history(
        formats.ego_history_path(labels_dir, "train"), clip_ids=clips[o], t0_us=t0[o],
        ego_history_xyz=hist[o],
        ego_history_rot=np.tile(np.eye(3, dtype=np.float32), (N, formats.HISTORY_STEPS, 1, 1)))
    for i in range(N):
        # Frames files in reverse order of the labels: only the key can pair them. Raw
        # storage (JPEG is tested in test_jpeg_frames.py): its arrays are rewritten below.
        frames = np.full((4, 4, 8, 8, 3), i, np.uint8)
        formats.write_frames(formats.frames_path(frames_dir, "train", N - 1 - i), frames,
                             clips[i], t0[i], np.zeros((4, 4), np.int64), jpeg_quality=None)
    return labels_dir, frames_dir


def _load(labels_dir, frames_dir):
    return load_split(formats.labels_path(labels_dir, "train"),
                      formats.ego_history_path(labels_dir, "train"), frames_dir, "train")


def _load_all(labels_dir, frames_dir):
    """Join the split, then read every frames file (what one epoch of a loader does)."""
    for path in _load(labels_dir, frames_dir).frame_paths:
        read_frames(path)


def test_join_is_by_key_not_position(tmp_path):
    labels_dir, frames_dir = _write_split(tmp_path, order=(2, 0, 1))
    data = _load(labels_dir, frames_dir)
    assert [k[0] for k in data.keys] == ["clip-0", "clip-1", "clip-2"]
    assert data.history["ego_history_xyz"][:, 0, 0].tolist() == [0.0, 1.0, 2.0]
    for i, path in enumerate(data.frame_paths):
        assert np.load(path)["frames"].flat[0] == i
        assert path.name == f"sample_{N - 1 - i:05d}.npz"


def test_provenance_is_read_kept_by_subsets_and_optional(tmp_path):
    labels_dir, frames_dir = _write_split(tmp_path)
    data = _load(labels_dir, frames_dir)
    assert data.provenance == ORIGIN and data.subset(2).provenance == ORIGIN
    assert provenance.is_alpamayo(data.provenance)
    assert str(np.load(formats.labels_path(labels_dir, "train"))["provenance"]) == \
        provenance.to_json(ORIGIN)  # a 0-d unicode array holding the JSON
    labels_dir, frames_dir = _write_split(tmp_path / "older", origin=None)
    data = _load(labels_dir, frames_dir)  # labels written before provenance existed
    assert data.provenance is None and not provenance.is_alpamayo(data.provenance)
    assert load_labels(formats.labels_path(labels_dir, "train")).provenance is None
    assert "provenance" not in data.labels


def _rewrite(path, **changes):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    for k in [k for k, v in changes.items() if v is None]:
        del arrays[k]
    formats.save_npz_atomic(path, **arrays)


BAD = {
    "missing file": lambda L, F: formats.labels_path(L, "train").unlink(),
    "corrupt npz": lambda L, F: formats.labels_path(L, "train").write_bytes(b"not a zip"),
    "truncated npz": lambda L, F: formats.ego_history_path(L, "train").write_bytes(
        formats.ego_history_path(L, "train").read_bytes()[:200]),
    "missing array": lambda L, F: _rewrite(formats.labels_path(L, "train"), coc_texts=None),
    "wrong shape": lambda L, F: _rewrite(formats.labels_path(L, "train"),
                                         trajectory_xyz=np.zeros((N, 32, 3), np.float32)),
    "wrong dtype": lambda L, F: _rewrite(formats.labels_path(L, "train"),
                                         trajectory_xyz=np.zeros((N, 64, 3), np.float64)),
    "row count": lambda L, F: _rewrite(formats.labels_path(L, "train"),
                                       coc_embeddings=np.ones((N + 1, 384), np.float32)),
    "NaN label": lambda L, F: _rewrite(formats.labels_path(L, "train"), trajectory_xyz=np.full(
        (N, 64, 3), np.nan, np.float32)),
    "key not in history": lambda L, F: _rewrite(formats.ego_history_path(L, "train"),
                                                clip_ids=np.array(["clip-0", "clip-1", "other"])),
    "duplicate key": lambda L, F: _rewrite(formats.labels_path(L, "train"),
                                           clip_ids=np.array(["clip-0", "clip-0", "clip-2"])),
    "frames missing": lambda L, F: formats.frames_path(F, "train", 0).unlink(),
    "corrupt frames": lambda L, F: formats.frames_path(F, "train", 1).write_bytes(b"\0" * 64),
    "frames wrong shape": lambda L, F: _rewrite(formats.frames_path(F, "train", 1),
                                                frames=np.zeros((4, 3, 8, 8, 3), np.uint8)),
    "no frames folder": lambda L, F: [p.unlink() for p in (F / "train").iterdir()]
    and (F / "train").rmdir(),
    "provenance not JSON": lambda L, F: _rewrite(formats.labels_path(L, "train"),
                                                 provenance=np.array("teacher: me")),
    "provenance lacks a key": lambda L, F: _rewrite(formats.labels_path(L, "train"),
                                                    provenance=np.array('{"dataset": "x"}')),
    "provenance per row": lambda L, F: _rewrite(formats.labels_path(L, "train"),
                                                provenance=np.array(["{}"] * N)),
}
EXPECT = {
    "missing file": ("train_labels.npz", "file not found"),
    "corrupt npz": ("train_labels.npz", "not a readable npz"),
    "truncated npz": ("train_ego_history.npz", "not a readable npz"),
    "missing array": ("train_labels.npz", "missing array 'coc_texts'"),
    "wrong shape": ("train_labels.npz", "'trajectory_xyz' has shape (3, 32, 3), expected (N, 64, 3)"),
    "wrong dtype": ("train_labels.npz", "'trajectory_xyz' has dtype float64, expected float32"),
    "row count": ("train_labels.npz", "'coc_embeddings' has 4 rows"),
    "NaN label": ("train_labels.npz", "'trajectory_xyz' has 576 non-finite values"),
    "key not in history": ("train_ego_history.npz", "1 sample keys of"),
    "duplicate key": ("train_labels.npz", "('clip-0', 5100000) appears more than once"),
    "frames missing": ("extracted_frames/train", "1 sample keys of"),
    "corrupt frames": ("sample_00001.npz", "not a readable npz"),
    "frames wrong shape": ("sample_00001.npz", "'frames' has shape (4, 3, 8, 8, 3)"),
    "no frames folder": ("extracted_frames/train", "frames folder not found"),
    "provenance not JSON": ("train_labels.npz", "array 'provenance': provenance is not JSON"),
    "provenance lacks a key": ("train_labels.npz", "provenance lacks key 'teacher_model'"),
    "provenance per row": ("train_labels.npz", "'provenance' has shape (3,), expected ()"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_naming_the_file(tmp_path, case):
    labels_dir, frames_dir = _write_split(tmp_path)
    BAD[case](labels_dir, frames_dir)
    with pytest.raises(DataError) as e:
        _load_all(labels_dir, frames_dir)
    message = str(e.value)
    file_part, problem = EXPECT[case]
    assert "\n" not in message
    assert file_part in message and problem in message, message
