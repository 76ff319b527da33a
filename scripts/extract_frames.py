"""Extract each sample's 16 camera frames (4 cameras x t0-0.3, -0.2, -0.1, 0 s) from a local
copy of PhysicalAI-Autonomous-Vehicles into extracted_frames/{split}/sample_{idx:05d}.npz (JPEG).

    python scripts/extract_frames.py --split train --num-samples 1000 --shard 0/4

Sample idx = the clip's position among the split's valid clips in clip_index.parquet, so
shards never collide. Resumable: files already there are kept. See docs/data_pipeline.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from distill.data import formats
from distill.data.real.cli import add_dataset_root, add_stop_signals, run
from distill.data.real.extract import extract, plan
from distill.data.real.layout import dataset_root
from distill.data.real.shards import Shard, parse_shard


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python scripts/extract_frames.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_root(p)
    p.add_argument("--split", default="train", help="split of clip_index.parquet (default train)")
    p.add_argument("--out", default="extracted_frames", help="output folder (default "
                   "extracted_frames; files go to OUT/SPLIT/)")
    p.add_argument("--resolution", type=int, default=224,
                   help="square frame size in px (default 224; 0 = the camera's native size)")
    p.add_argument("--num-samples", type=int, default=0,
                   help="first N clips of the split (0 = all)")
    p.add_argument("--t0-us", type=int, default=formats.DEFAULT_T0_US,
                   help=f"the present, us from clip start (default {formats.DEFAULT_T0_US})")
    p.add_argument("--shard", type=parse_shard, default=Shard(), metavar="I/N",
                   help="extract samples with idx %% N == I (default 0/1)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="decoding processes (default: up to 4)")
    p.add_argument("--overwrite", action="store_true", help="extract samples already there again")
    add_stop_signals(p)
    args = p.parse_args(argv)
    for name in ("resolution", "num_samples"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0")
    if args.t0_us + min(formats.FRAME_OFFSETS_US) < 0:
        p.error(f"--t0-us must be >= {-min(formats.FRAME_OFFSETS_US)}")
    return args


def main_args(args: argparse.Namespace) -> None:
    root = dataset_root(args.dataset_root)
    out = Path(args.out)
    start = time.perf_counter()
    jobs, done = plan(root, out, args.split, args.num_samples, args.t0_us, args.resolution,
                      args.shard, args.overwrite)
    if done:
        print(f"resuming: {done} samples already extracted, {len(jobs)} to go")
    extract(jobs, args.workers)
    print(f"extracted {len(jobs)} samples of split {args.split} (shard {args.shard}) to "
          f"{out / args.split} in {time.perf_counter() - start:.1f} s")


def main(argv=None) -> int:
    return run(main_args, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
