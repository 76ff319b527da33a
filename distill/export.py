"""python -m distill.export --checkpoint CKPT --format onnx|aoti|tensorrt [--out DIR]
                          [--precision fp32|fp16|bf16]

Exports the student a run selected (the EMA weights when it kept them) to a deployable artefact
with its model_card.json (docs/deploy.md): ONNX (run by ONNX Runtime), an AOTInductor package
(.pt2) or, on a CUDA GPU with torch-tensorrt, TensorRT engines. The artefact takes uint8 frames
and the ego history and returns the plan: trajectories, mode probabilities (and the reasoning
embedding); frames' normalisation, v0 and the rollout are in the graph. After writing it, the
export runs the artefact on example inputs against the eager student and records the error
in the card. Default folder: next to the checkpoint, {stem}_{format}_{precision}/."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from .data.readers import one_line
from .deploy import FORMATS, PRECISIONS, DeployError, export_student
from .deploy.card import CARD
from .deploy.exporter import check_request
from .training import checkpoint
from .training.config import ConfigError
from .training.trained import load_student as load_checkpoint


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m distill.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by distill.train")
    p.add_argument("--format", required=True, choices=tuple(FORMATS))
    p.add_argument("--out", default=None, help="the artefact folder (replaced if it holds an "
                                               "older export)")
    p.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32",
                   help="the network's weights and activations; v0 and the rollout stay fp32")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        student = load_checkpoint(args.checkpoint, torch.device("cpu"))
        check_request(student.cfg.input_type, args.format, args.precision)
        print(f"exporting the {student.config.model} {student.config.model_size} "
              f"{student.cfg.input_type} student to {args.format} ({args.precision}) ...",
              flush=True)
        out = export_student(student, Path(args.checkpoint), args.format, args.out,
                             args.precision)
    except (DeployError, ConfigError, checkpoint.CheckpointError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    card = json.loads((out / CARD).read_text())
    errors = card["export"]["check"]["max_abs_error_vs_eager_fp32"]
    size = (out / card["artefact"]).stat().st_size / 2**20
    print(f"wrote {out / card['artefact']} ({size:.1f} MiB) and {CARD} in "
          f"{time.perf_counter() - start:.0f} s")
    print("  vs the eager student on example inputs, max abs error: " + ", ".join(
        f"{name} {value:.2e}" for name, value in errors.items()))
    if not card["v0"]["in_graph"]:
        print(f"  v0 is an input: {card['v0']['computed_as']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
