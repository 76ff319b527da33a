"""Merge teacher_labels/{split}_labels_shard{0..N-1}.npz into {split}_labels.npz. Refuses when
a shard is missing, when shards differ in arrays, shapes or provenance, when a sample key is in
two shards or (with the frames folder present) when an extracted sample is in none.

    python scripts/merge_shards.py --split train --num-shards 4

See docs/data_pipeline.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from distill.data.real.cli import run
from distill.teachers.merge import merge_shards


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python scripts/merge_shards.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", required=True)
    p.add_argument("--num-shards", type=int, required=True)
    p.add_argument("--labels-dir", default="teacher_labels", help="default teacher_labels")
    p.add_argument("--frames-dir", default="extracted_frames",
                   help="check that every sample here is labelled (default extracted_frames; "
                   "skipped when the folder is absent)")
    p.add_argument("--overwrite", action="store_true", help="replace a merged file already there")
    args = p.parse_args(argv)
    if args.num_shards < 1:
        p.error("--num-shards must be >= 1")
    return args


def main_args(args: argparse.Namespace) -> None:
    frames = Path(args.frames_dir)
    out = merge_shards(Path(args.labels_dir), args.split, args.num_shards,
                       frames if (frames / args.split).is_dir() else None, args.overwrite)
    print(f"wrote {out}")


def main(argv=None) -> int:
    return run(main_args, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
