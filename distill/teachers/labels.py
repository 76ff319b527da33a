"""``scripts/generate_teacher_labels.py``: label a split's extracted samples with a teacher into
teacher_labels/{split}_labels.npz (or ``_shard{i}`` with --shard i/n).

Each batch's labels are written at once to a part file in a hidden folder next to the output
(``.{split}_labels[_shard{i}].parts/``), so an interrupted run loses at most one batch (a stop
signal: none; it ends after the part being written) and ``--resume`` goes on from the parts; at
the end the parts are joined, the chain-of-causation sentences embedded (all-MiniLM-L6-v2) and
the output written in one piece, with the teacher's provenance (``distill.data.provenance``)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ..constants import FUTURE_STEPS
from ..data import formats, provenance
from ..data.readers import DataError, load_ego_history, read_frame_key
from ..data.real.cli import ScriptError, progress
from ..data.real.shards import Shard, sample_files
from ..data.real.source import Source
from ..data.stop import Stopped, stop_requested
from .base import Teacher, TeacherLabel, TeacherSample

PART_KEYS = ("clip_ids", "t0_us", "trajectory_xyz", "trajectory_rot", "coc_texts")


def output_paths(out_dir: Path, split: str, shard: Shard | None) -> tuple[Path, Path]:
    """(the labels file, its parts folder)."""
    final = formats.labels_path(out_dir, split, None if shard is None else shard.index)
    return final, final.parent / f".{final.stem}.parts"


def read_parts(parts: Path) -> list[dict]:
    """The part files written so far, in sample order."""
    if not parts.is_dir():
        return []
    out = []
    for f in sorted(parts.glob("part_*.npz")):
        with np.load(f, allow_pickle=False) as z:
            out.append({k: z[k] for k in z.files})
    return out


def history_lookup(history_file: Path, source: Source | None):
    """``(key, frames path) -> (xyz, rot)``: from the split's ego-history file when it exists,
    else computed from the egomotion of the opened dataset ``source`` (so labelling may come
    before scripts/generate_ego_history.py, as in the guide)."""
    if history_file.is_file():
        history = load_ego_history(history_file)
        row = {k: i for i, k in enumerate(history.keys)}

        def from_file(key, path):
            if key not in row:
                raise DataError(f"{history.path}: no ego history for sample {key} of {path}; "
                                "run scripts/generate_ego_history.py again")
            return (history.arrays["ego_history_xyz"][row[key]],
                    history.arrays["ego_history_rot"][row[key]])
        return from_file
    if source is None:
        raise ScriptError(f"{history_file}: not found, and no dataset was given to compute the "
                          "ego history from")
    from ..data.real.ego_history import EgomotionHistory

    egomotion = EgomotionHistory(source)
    return lambda key, path: egomotion(key[0], key[1], path)


def pending_samples(frames_dir: Path, split: str, shard: Shard | None, history, done: set
                    ) -> tuple[list[TeacherSample], int]:
    """(the shard's samples not labelled yet, with their ego history when ``history`` (a
    ``history_lookup``) is given; the number of the shard's samples)."""
    files = {i: p for i, p in sample_files(frames_dir / split).items()
             if shard is None or shard.owns(i)}
    if not files:
        raise ScriptError(f"{frames_dir / split}: shard {shard} has no samples")
    samples = []
    for index, path in files.items():
        key = read_frame_key(path)
        if key not in done:
            xyz, rot = history(key, path) if history else (None, None)
            samples.append(TeacherSample(split, index, key, path, xyz, rot))
    return samples, len(files)


def part_arrays(samples: list[TeacherSample], labels: list[TeacherLabel], teacher: str) -> dict:
    """One batch's rows; a label of the wrong shape or with non-finite values names its clip."""
    for s, label in zip(samples, labels):
        xyz, rot = np.asarray(label.trajectory_xyz), np.asarray(label.trajectory_rot)
        if xyz.shape != (FUTURE_STEPS, 3) or rot.shape != (FUTURE_STEPS, 3, 3) \
                or not (np.isfinite(xyz).all() and np.isfinite(rot).all()):
            raise DataError(f"{s.frames_path}: clip {s.key[0]}: the {teacher} teacher returned "
                            f"a trajectory of shape {xyz.shape} / {rot.shape} or non-finite values")
    arrays = dict(clip_ids=np.array([s.key[0] for s in samples]),
                  t0_us=np.array([s.key[1] for s in samples], np.int64),
                  trajectory_xyz=np.stack([l.trajectory_xyz for l in labels]).astype(np.float32),
                  trajectory_rot=np.stack([l.trajectory_rot for l in labels]).astype(np.float32),
                  coc_texts=np.array([l.coc_text for l in labels]))
    if all(l.scenario is not None for l in labels):
        arrays["scenario"] = np.array([l.scenario for l in labels])
    return arrays


def join_parts(parts: list[dict]) -> dict:
    """The labels file's arrays from its parts (``scenario`` only when every part has it)."""
    from ..data.text_encoder import embed_texts

    keys = [*PART_KEYS] + (["scenario"] if all("scenario" in p for p in parts) else [])
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in keys}
    arrays["coc_embeddings"] = embed_texts(arrays["coc_texts"])
    return arrays


def generate_labels(teacher: Teacher, frames_dir: Path, split: str, out_dir: Path,
                    batch_size: int, shard: Shard | None = None, history_dir: Path | None = None,
                    resume: bool = False, overwrite: bool = False,
                    source: Source | None = None) -> Path:
    """Label the shard's samples of ``split``; returns the labels file written. A teacher that
    needs the ego history reads {split}_ego_history.npz from ``history_dir`` (default
    ``out_dir``) or, without it, the egomotion of the opened dataset ``source``."""
    final, parts = output_paths(out_dir, split, shard)
    if final.exists() and not overwrite:
        raise ScriptError(f"{final}: already exists; pass --overwrite to replace it")
    if parts.exists() and overwrite:
        shutil.rmtree(parts)
    elif parts.exists() and not resume:
        raise ScriptError(f"{parts}: a partial run is there; pass --resume to go on with it "
                          "or --overwrite to start over")
    done = read_parts(parts)
    done_keys = {(str(c), int(t)) for p in done for c, t in zip(p["clip_ids"], p["t0_us"])}
    history = (history_lookup(formats.ego_history_path(history_dir or out_dir, split),
                              source) if teacher.needs_history else None)
    samples, total = pending_samples(frames_dir, split, shard, history, done_keys)
    if done_keys:
        print(f"resuming: {len(done_keys)} of {total} samples already labelled")
    parts.mkdir(parents=True, exist_ok=True)
    with progress(total=total, initial=total - len(samples), unit="sample",
                  desc=f"{teacher.name} labels {split}") as bar:
        for start in range(0, len(samples), batch_size):
            if stop_requested():  # each part file is whole; --resume goes on from them
                raise Stopped(f"stopped by {stop_requested()}: {bar.n} of {total} samples "
                              f"labelled (in {parts}); go on with --resume")
            batch = samples[start:start + batch_size]
            arrays = part_arrays(batch, teacher.label(batch), teacher.name)
            formats.save_npz_atomic(parts / f"part_{batch[0].index:06d}.npz", **arrays)
            bar.update(len(batch))
    arrays = join_parts(read_parts(parts))
    origin = teacher.provenance(provenance.t0_rule(arrays["t0_us"]))
    formats.write_labels(final, origin, **arrays)
    shutil.rmtree(parts)
    return final
