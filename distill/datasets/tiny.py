"""python -m distill.datasets.tiny --out DIR: tiny nuScenes and Argoverse 2 datasets in the
real formats (DIR/nuscenes, DIR/argoverse2), made with the devkits' own structures, to try the
benchmark path in a minute without the downloads (tiny_nuscenes.py, tiny_argoverse2.py)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from . import tiny_argoverse2, tiny_nuscenes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m distill.datasets.tiny", description=__doc__)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--av2-train", type=int, default=64, help="Argoverse 2 train scenarios")
    p.add_argument("--av2-val", type=int, default=16, help="Argoverse 2 val scenarios")
    p.add_argument("--nuscenes-train-scenes", type=int, default=4,
                   help="nuScenes train scenes (24 samples each: 4 agents x 6 times)")
    p.add_argument("--nuscenes-val-scenes", type=int, default=1)
    args = p.parse_args(argv)
    start, out = time.perf_counter(), Path(args.out)
    tiny_nuscenes.write(out / "nuscenes", args.nuscenes_train_scenes, args.nuscenes_val_scenes,
                        seed=args.seed)
    tiny_argoverse2.write(out / "argoverse2", args.av2_train, args.av2_val, seed=args.seed)
    print(f"wrote {out / 'nuscenes'} and {out / 'argoverse2'} in "
          f"{time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
