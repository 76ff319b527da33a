"""Extract each sample's 16 camera frames (4 cameras x t0-0.3, -0.2, -0.1, 0 s) of
PhysicalAI-Autonomous-Vehicles, read with NVIDIA's devkit, into
extracted_frames/{split}/sample_{idx:05d}.npz (JPEG).

    python scripts/extract_frames.py --split train --resolution 224 --num-samples 2000  # hub
    python scripts/extract_frames.py --split train --num-samples 1000 --shard 0/4 --dataset-root DIR

Sample idx = the clip's position among the split's valid clips in the clip index (or in
--split-file), so shards never collide. Resumable: files already there are kept. See
docs/data_pipeline.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from distill.data import formats
from distill.data.real.cli import add_stop_signals, run
from distill.data.real.extract import Request, extract, plan
from distill.data.real.shards import Shard, parse_shard
from distill.data.real.source import add_source_flags, opened, source_from_args


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python scripts/extract_frames.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_source_flags(p)
    p.add_argument("--split", default="train", help="split of the clip index (default train); "
                   "with --split-file, the output folder's name")
    p.add_argument("--split-file", default=None, metavar="PARQUET",
                   help="the split's clips, in order: a parquet file with a clip_id column")
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
    p.add_argument("--frame-storage", choices=("jpeg", "raw"), default="jpeg",
                   help="JPEG (default) or the decoded uint8 frames as they are (docs/formats.md)")
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
    out = Path(args.out)
    start = time.perf_counter()
    ask = Request(out, args.split, args.split_file, args.num_samples, args.t0_us,
                  args.resolution, args.frame_storage == "raw", args.shard, args.overwrite)
    with opened(source_from_args(args)) as source:
        jobs, done = plan(source, ask)
        if done:
            print(f"resuming: {done} samples already extracted, {len(jobs)} to go")
        extract(jobs, args.workers)
    print(f"extracted {len(jobs)} samples of split {args.split} (shard {args.shard}) to "
          f"{out / args.split} from the {source} in {time.perf_counter() - start:.1f} s")


def main(argv=None) -> int:
    return run(main_args, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
