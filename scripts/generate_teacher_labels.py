"""Label extracted samples with a teacher: teacher_labels/{split}_labels.npz (trajectory, its
rotations, the chain-of-causation sentence and its all-MiniLM-L6-v2 embedding; every row keyed
by (clip_id, t0_us)). With --shard i/n: {split}_labels_shard{i}.npz, merged by merge_shards.py.

    python scripts/generate_teacher_labels.py --teacher alpamayo-r1 --split train --shard 0/8
    python scripts/generate_teacher_labels.py --teacher world --split val   # a built-in world

alpamayo-r1 needs NVIDIA's alpamayo_r1 package, a GPU and the dataset (--dataset-root,
$PAI_DATASET_ROOT, --hf-cache, else streamed from the hub): it sees each sample's frames
decoded by NVIDIA's devkit at the cameras' native size, and its ego history
(teacher_labels/{split}_ego_history.npz when there, else from the clip's egomotion). See
docs/data_pipeline.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from distill.data.real.cli import add_stop_signals, run
from distill.data.real.shards import parse_shard
from distill.data.real.source import add_source_flags, opened, source_from_args
from distill.teachers import TEACHERS, build_teacher
from distill.teachers.alpamayo import DEFAULT_MODEL
from distill.teachers.labels import generate_labels


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python scripts/generate_teacher_labels.py",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", choices=TEACHERS, default="alpamayo-r1")
    p.add_argument("--split", default="train")
    p.add_argument("--frames-dir", default="extracted_frames", help="default extracted_frames")
    p.add_argument("--out-dir", default="teacher_labels", help="default teacher_labels")
    p.add_argument("--ego-history-dir", default=None,
                   help="folder of {split}_ego_history.npz (default: --out-dir)")
    p.add_argument("--batch-size", type=int, default=8, help="samples per teacher call and per "
                   "part file (default 8)")
    p.add_argument("--shard", type=parse_shard, default=None, metavar="I/N",
                   help="label samples with idx %% N == I into {split}_labels_shard{I}.npz")
    p.add_argument("--resume", action="store_true", help="go on with an interrupted run")
    p.add_argument("--overwrite", action="store_true", help="replace a finished or partial run")
    add_stop_signals(p)
    g = p.add_argument_group("world teacher")
    g.add_argument("--world-seed", type=int, default=0, help="the world's seed (default 0)")
    g = p.add_argument_group("alpamayo-r1 teacher")
    add_source_flags(g)
    g.add_argument("--model", default=DEFAULT_MODEL, help="model id or local folder")
    g.add_argument("--model-revision", default=None, metavar="COMMIT",
                   help="the model's revision on the hub (default: main)")
    g.add_argument("--device", default="cuda", help="default cuda")
    g.add_argument("--seed", type=int, default=42, help="sampling seed (+ sample index)")
    args = p.parse_args(argv)
    if args.batch_size < 1:
        p.error("--batch-size must be >= 1")
    return args


def label(args: argparse.Namespace, teacher, source=None) -> None:
    out = generate_labels(teacher, Path(args.frames_dir), args.split, Path(args.out_dir),
                          args.batch_size, args.shard,
                          Path(args.ego_history_dir) if args.ego_history_dir else None,
                          args.resume, args.overwrite, source)
    print(f"wrote {out}")


def main_args(args: argparse.Namespace) -> None:
    if args.teacher == "world":
        return label(args, build_teacher("world", seed=args.world_seed))
    with opened(source_from_args(args)) as source:
        label(args, build_teacher(args.teacher, source=source, model=args.model,
                                  model_revision=args.model_revision, device=args.device,
                                  seed=args.seed), source)


def main(argv=None) -> int:
    return run(main_args, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
