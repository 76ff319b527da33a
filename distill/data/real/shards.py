"""``--shard i/n``: which samples a script run handles. Sample indices are global (a sample's
position in its split), so shards run on different machines never write the same file."""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

from ..readers import DataError

SAMPLE_FILE = re.compile(r"sample_(\d+)\.npz")


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    def owns(self, sample_index: int) -> bool:
        return sample_index % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """argparse type of ``--shard i/n`` (0 <= i < n)."""
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not match or not int(match[1]) < int(match[2]):
        raise argparse.ArgumentTypeError(f"expected i/n with 0 <= i < n, got {text!r}")
    return Shard(int(match[1]), int(match[2]))


def sample_files(folder: Path) -> dict[int, Path]:
    """Sample index -> ``sample_{idx:05d}.npz`` of a frames folder, in index order."""
    if not folder.is_dir():
        raise DataError(f"{folder}: frames folder not found")
    files = {int(m[1]): p for p in folder.iterdir() if (m := SAMPLE_FILE.fullmatch(p.name))}
    if not files:
        raise DataError(f"{folder}: no sample_*.npz files")
    return dict(sorted(files.items()))
