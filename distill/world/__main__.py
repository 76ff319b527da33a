"""python -m distill.world --out DIR --train N --val M --seed S --resolution R"""
from __future__ import annotations

import argparse
import os
import sys

from .generate import generate_world


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m distill.world",
        description="Write a procedural driving world in the guide's formats: "
        "DIR/extracted_frames/{split}/sample_XXXXX.npz and DIR/teacher_labels/{split}_labels.npz, "
        "{split}_ego_history.npz. Run the trainer from DIR and its default paths find them.")
    p.add_argument("--out", default=".", help="output folder (default: the current folder)")
    p.add_argument("--train", type=positive, default=2000, help="training samples (default 2000)")
    p.add_argument("--val", type=positive, default=250, help="validation samples (default 250)")
    p.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    p.add_argument("--resolution", type=positive, default=224,
                   help="square frame size in pixels (default 224)")
    p.add_argument("--workers", type=positive, default=os.cpu_count() or 1,
                   help="rendering processes (default: all cores)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing world in --out")
    return p.parse_args(argv)


def print_summary(s: dict) -> None:
    print(f"world written to {s['out']} (seed {s['seed']}, {s['resolution']} px) "
          f"in {s['seconds']:.1f} s")
    for split, info in s["splits"].items():
        mix = ", ".join(f"{k} {v}" for k, v in info["scenarios"].items())
        print(f"  {split}: {info['samples']} samples, {info['distinct_sentences']} distinct "
              f"sentences; scenarios: {mix}")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        summary = generate_world(args.out, args.train, args.val, args.seed, args.resolution,
                                 args.workers, args.overwrite)
    except FileExistsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
