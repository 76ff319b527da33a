"""Write teacher_labels/{split}_ego_history.npz: for every extracted sample (the keys stored in
extracted_frames/{split}/), the ego poses at t0-1.5 s ... t0 (10 Hz) in the ego frame at t0,
interpolated from its clip's egomotion by NVIDIA's devkit (cubic-spline positions, slerp
rotations).

    python scripts/generate_ego_history.py --split all

See docs/data_pipeline.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from distill.data import formats
from distill.data.real.cli import ScriptError, add_stop_signals, run
from distill.data.real.ego_history import write_split_ego_history
from distill.data.real.source import add_source_flags, opened, source_from_args


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python scripts/generate_ego_history.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_source_flags(p)
    p.add_argument("--split", choices=(*formats.SPLITS, "all"), default="all",
                   help="split, or all: every split with a frames folder (default all)")
    p.add_argument("--frames-dir", default="extracted_frames",
                   help="extracted frames (default extracted_frames): the samples to cover")
    p.add_argument("--out-dir", default="teacher_labels", help="default teacher_labels")
    p.add_argument("--overwrite", action="store_true", help="replace finished files")
    add_stop_signals(p)
    return p.parse_args(argv)


def main_args(args: argparse.Namespace) -> None:
    source = source_from_args(args)
    frames_dir, out_dir = Path(args.frames_dir), Path(args.out_dir)
    splits = [args.split] if args.split != "all" else [
        s for s in formats.SPLITS if (frames_dir / s).is_dir()] or ["train"]
    done = [s for s in splits if formats.ego_history_path(out_dir, s).exists()]
    if done and not args.overwrite:
        if done == splits:
            raise ScriptError(f"{formats.ego_history_path(out_dir, done[0])}: already exists; "
                              "pass --overwrite to replace it")
        print(f"resuming: {', '.join(done)} already written")
        splits = [s for s in splits if s not in done]
    with opened(source) as source:
        for split in splits:
            path = write_split_ego_history(source, frames_dir, split, out_dir)
            print(f"wrote {path}")


def main(argv=None) -> int:
    return run(main_args, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
