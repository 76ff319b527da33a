"""``scripts/merge_shards.py``: join {split}_labels_shard{0..N-1}.npz into {split}_labels.npz,
checking that every shard is there, that they hold the same arrays, the same provenance and
disjoint sample keys, and (given the frames folder) that every extracted sample is labelled."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import formats, provenance
from ..data.readers import DataError, KeyedArrays, index_frames, load_labels
from ..data.real.cli import ScriptError, progress


def load_shards(labels_dir: Path, split: str, num_shards: int) -> list[KeyedArrays]:
    paths = [formats.labels_path(labels_dir, split, i) for i in range(num_shards)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"{missing[0]}: shard missing ({len(missing)} of {num_shards} shards "
                        f"are: {', '.join(p.name for p in missing)})")
    with progress(paths, desc=f"merge {split}", unit="shard") as bar:
        return [load_labels(p) for p in bar]


def check_shards(shards: list[KeyedArrays]) -> None:
    """The same arrays (their shapes are the schema's, checked on loading) and the same
    provenance in every shard, and no key in two shards."""
    first = shards[0]
    owner: dict = {}
    for shard in shards:
        if set(shard.arrays) != set(first.arrays):
            raise DataError(f"{shard.path}: has arrays {sorted(shard.arrays)}, "
                            f"{first.path.name} has {sorted(first.arrays)}")
        differs = provenance.difference(shard.provenance, first.provenance)
        if differs:
            raise DataError(f"{shard.path}: its provenance differs from {first.path.name}'s "
                            f"({differs}); shards of one split come from one teacher run")
        for key in shard.keys:
            if key in owner:
                raise DataError(f"{shard.path}: sample key {key} is also in {owner[key].name}")
            owner[key] = shard.path


def merge_shards(labels_dir: Path, split: str, num_shards: int, frames_dir: Path | None = None,
                 overwrite: bool = False) -> Path:
    """Write the merged labels file (rows in shard order) and return its path."""
    out = formats.labels_path(labels_dir, split)
    if out.exists() and not overwrite:
        raise ScriptError(f"{out}: already exists; pass --overwrite to replace it")
    shards = load_shards(labels_dir, split, num_shards)
    check_shards(shards)
    if frames_dir is not None:
        labelled = {k for s in shards for k in s.keys}
        unlabelled = sorted(set(index_frames(frames_dir, split)) - labelled)
        if unlabelled:
            raise DataError(f"{frames_dir / split}: {len(unlabelled)} samples are in no shard, "
                            f"e.g. {unlabelled[0]}")
    merged = {name: np.concatenate([s.arrays[name] for s in shards]) for name in shards[0].arrays}
    return formats.write_labels(out, shards[0].provenance, **merged)
