"""python -m distill.infer --artefact DIR --frames SAMPLE.npz --ego-history HISTORY.npz
                         [--key CLIP_ID:T0_US] [--labels LABELS.npz] [--resize] [--output-dir DIR]

Runs an exported student (python -m distill.export) on one sample of the guide's formats: the
frames file extracted_frames/{split}/sample_XXXXX.npz and the ego history file's row of the same
key (clip_id, t0_us) (--key, when given, must be the frames file's). Prints the plan (mode
probabilities and the most probable mode's poses each second) and writes, to --output-dir,
infer_{clip}_{t0}.json (every output) and the figures distill.evaluate draws:
infer_{clip}_{t0}_front.png, _topdown.png, with the teacher's trajectory when --labels is given.
Frames of another size than the student's are refused, or resized with --resize (antialiased
bilinear, as the training loader resizes)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import plots
from .data.readers import DataError, load_ego_history, load_labels, one_line, read_frames
from .deploy import DeployError, ExportedStudent, load_student
from .deploy.card import write_json

FRONT_CAMERA = 1  # camera_front_wide_120fov in the frames' camera order


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m distill.infer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artefact", required=True, help="a folder written by distill.export")
    p.add_argument("--frames", required=True, help="one sample's frames file")
    p.add_argument("--ego-history", required=True, help="a {split}_ego_history.npz")
    p.add_argument("--key", default=None, help="CLIP_ID:T0_US, checked against the frames file")
    p.add_argument("--labels", default=None, help="a {split}_labels.npz: draw the teacher too")
    p.add_argument("--resize", action="store_true",
                   help="resize frames of another size to the student's resolution")
    p.add_argument("--output-dir", default=".")
    return p.parse_args(argv)


def sample_key(arrays: dict, path: str, key: str | None) -> tuple[str, int]:
    """The frames file's key; a --key that differs from it is an error."""
    stored = (str(arrays["clip_id"]), int(arrays["t0_us"]))
    if key is None:
        return stored
    clip, sep, t0 = key.rpartition(":")
    if not (sep and clip and t0.lstrip("-").isdigit()):
        raise DataError(f"--key {key!r} is not CLIP_ID:T0_US")
    if (clip, int(t0)) != stored:
        raise DataError(f"{path}: holds sample {stored[0]}:{stored[1]}, not --key {key}")
    return stored


def row(read, path: str, key: tuple[str, int]) -> dict[str, np.ndarray]:
    """The row of ``key`` in the keyed file ``path`` (read by ``read``)."""
    arrays = read(path)
    if key not in set(arrays.keys):
        raise DataError(f"{path}: no sample {key[0]}:{key[1]}")
    return {name: a[0] for name, a in arrays.rows([key]).items()}


def sized_frames(frames: np.ndarray, student: ExportedStudent, path: str, resize: bool):
    """uint8 (4, 4, R, R, 3) at the student's resolution R (resized with ``resize``)."""
    scene = student.card["scene"]
    if scene["input_type"] != "camera":
        raise DeployError(f"{student.folder}: a {scene['input_type']} student; distill.infer "
                          "reads camera samples (run it through distill.deploy.load_student)")
    size = tuple(scene["resolution"])
    if frames.shape[2:4] == size:
        return frames
    if not resize:
        raise DeployError(f"{path}: frames are {frames.shape[3]}x{frames.shape[2]} px, the "
                          f"student takes {size[1]}x{size[0]} (its training resolution); "
                          "pass --resize to resize them")
    x = torch.from_numpy(frames).flatten(0, 1).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    x = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    return x.unflatten(0, frames.shape[:2]).numpy()


def describe(out: dict, key: tuple[str, int], dt: float) -> str:
    """The plan as text: mode probabilities and the most probable mode once per second."""
    probs, traj = out["probs"][0], out["trajectories"][0]
    best = int(probs.argmax())
    lines = [f"sample {key[0]} at t0 = {key[1]} us: {len(probs)} mode(s), probabilities "
             + " ".join(f"{p:.3f}" for p in probs),
             f"most probable mode {best}, ego frame at t0 (x forward, y left):",
             "  t (s)    x (m)    y (m)  yaw (deg)"]
    every = max(1, round(1 / dt))
    for i in range(every - 1, traj.shape[1], every):
        x, y, yaw = traj[best, i]
        lines.append(f"  {(i + 1) * dt:5.1f} {x:8.2f} {y:8.2f} {np.degrees(yaw):10.1f}")
    if "embedding" in out:
        lines.append(f"reasoning embedding: {out['embedding'].shape[-1]}-d, "
                     f"norm {np.linalg.norm(out['embedding'][0]):.3f}")
    return "\n".join(lines)


def infer(args: argparse.Namespace) -> tuple[dict, list[Path]]:
    student = load_student(args.artefact)
    arrays = read_frames(args.frames)
    key = sample_key(arrays, args.frames, args.key)
    frames = sized_frames(arrays["frames"], student, args.frames, args.resize)
    history = row(load_ego_history, args.ego_history, key)
    out = student.plan(frames=frames[None], history_xyz=history["ego_history_xyz"][None],
                       history_rot=history["ego_history_rot"][None])
    teacher = (row(load_labels, args.labels, key)["trajectory_xyz"][None, :, :2]
               if args.labels else None)
    folder = Path(args.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"infer_{key[0]}_{key[1]}"
    write_json(folder / f"{stem}.json", {"clip_id": key[0], "t0_us": key[1],
                                         **{k: v.tolist() for k, v in out.items()}})
    best = out["trajectories"][0, int(out["probs"][0].argmax()), :, :2][None]
    title = [f"{key[0][:12]} @ {key[1] / 1e6:.1f} s"]
    figures = [plots.front_camera([frames[FRONT_CAMERA, -1]], best, teacher, title,
                                  folder / f"{stem}_front.png"),
               plots.top_down(best, teacher, title, folder / f"{stem}_topdown.png")]
    return {"out": out, "key": key, "dt": student.card["student"]["model_config"]["dt"],
            "json": folder / f"{stem}.json"}, figures


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        result, figures = infer(args)
    except (DataError, DeployError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    print(describe(result["out"], result["key"], result["dt"]))
    print(f"wrote {result['json']} and {', '.join(p.name for p in figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
