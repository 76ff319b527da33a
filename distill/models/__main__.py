"""`python -m distill.models`: parameter counts of every student kind x size.

Models are built on the meta device, so this is instant and allocates no memory.
"""
from __future__ import annotations

import torch

from . import MODEL_SIZES, STUDENTS, build_student, get_model_config


def main() -> None:
    kinds = list(STUDENTS)
    print(f"{'size':<6} {'backbone':<10} {'decoder':<20} {'trunk':>12}"
          + "".join(f" {k:>12}" for k in kinds))
    for size in MODEL_SIZES:
        cfg = get_model_config(size)
        counts = {}
        with torch.device("meta"):
            for kind in kinds:
                model = build_student(kind, cfg)
                counts[kind] = sum(p.numel() for p in model.parameters())
        trunk = sum(p.numel() for p in model.trunk.parameters())
        decoder = f"{cfg.num_layers} x {cfg.d_model} (ffn {cfg.ffn_dim})"
        print(f"{size:<6} {cfg.backbone:<10} {decoder:<20} {trunk:>12,}"
              + "".join(f" {counts[k]:>12,}" for k in kinds))


if __name__ == "__main__":
    main()
