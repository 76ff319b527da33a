"""python -m distill.evaluate --checkpoint PATH [--split val] [--submission PATH]

Evaluates the weights a run selected (EMA when the run used it) on a split and writes, next to
the checkpoint (or to --output-dir): eval.json (the trainer's val metrics, per-scenario ADE/FDE
for built-in world data, ADE per horizon step; for a benchmark, its leaderboard's metric set
computed by the devkit) and PNG plots. --submission also writes a benchmark's predictions as
its challenge submission file (docs/datasets.md)."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from . import plots
from .constants import ROLLOUTS
from .data.batch import yaw_from_rot
from .closed_loop.policies import PolicyError
from .data.readers import DataError, one_line, read_frames
from .datasets import miss_rule
from .drive import closed_loop_summary, write_json
from .datasets.leaderboard import leaderboard, leaderboard_line, predict_modes
from .metrics import displacement_errors
from .ops import use_rollout
from .training import checkpoint
from .training.args import non_negative_int, positive_int
from .training.config import ConfigError
from .training.data import actions_cache_dir, attach_action_targets, load_dataset, make_loader
from .training.objective import loss_weights
from .training.outputs import ADDED_VAL_KEYS
from .training.report import lateral_toward_turn, scenario_report
from .training.runtime import pick_device
from .training.trained import load_student
from .training.validate import constant_velocity_errors, run_validation


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m distill.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by distill.train")
    p.add_argument("--split", choices=("val", "train"), default="val")
    p.add_argument("--output-dir", default=None, help="default: the checkpoint's folder")
    p.add_argument("--num-plots", type=non_negative_int, default=6,
                   help="samples drawn in the figures (0: no figures)")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--num-workers", type=non_negative_int, default=1)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--rollout", choices=ROLLOUTS, default="fused",
                   help="unicycle rollout: the compiled op or plain PyTorch (same results)")
    p.add_argument("--submission", default=None, metavar="PATH",
                   help="benchmark checkpoints: also write the predictions as the challenge "
                   "submission file (nuScenes: JSON of the devkit's Prediction objects; "
                   "Argoverse 2: av2's ChallengeSubmission parquet)")
    p.add_argument("--closed-loop", type=non_negative_int, default=0, metavar="N",
                   help="camera students: also drive N closed-loop episodes of the built-in "
                   "world (as distill.drive does, with its references) and add the driving "
                   "summary to eval.json under closed_loop (default 0: none)")
    return p.parse_args(argv)


def plot_samples(dataset, n: int) -> list[int]:
    """Indices of up to n samples spread over the split (the first of each scenario first)."""
    scen = dataset.data.labels.get("scenario")
    order = list(dict.fromkeys(int(np.flatnonzero(scen == s)[0]) for s in np.unique(scen))) \
        if scen is not None else []
    order += [i for i in np.linspace(0, len(dataset) - 1, n).astype(int) if i not in order]
    return order[:n]


def front_images(dataset, indices) -> list[np.ndarray]:
    """uint8 front-wide frames at t0 of the samples (noise frames when offline)."""
    out = []
    for i in indices:
        if dataset.data.frame_paths:
            out.append(read_frames(dataset.data.frame_paths[i])["frames"][1, -1])
        else:
            f = dataset.frames(int(i))[1, -3:].permute(1, 2, 0).numpy()
            out.append(np.clip((f * 0.25 + 0.5) * 255, 0, 255).astype(np.uint8))
    return out


def output_folder(args: argparse.Namespace) -> Path:
    return Path(args.output_dir or Path(args.checkpoint).parent)


def draw_figures(dataset, result: dict, errors: np.ndarray, cv_errors: np.ndarray, cfg,
                 num_plots: int, out: Path) -> list[Path]:
    """The PNGs: ``num_plots`` samples' plans over the front camera (camera students) and
    top-down, and the ADE by horizon against constant velocity."""
    scen = dataset.data.labels.get("scenario")
    idx = plot_samples(dataset, num_plots)
    titles = [f"{scen[i] if scen is not None else dataset.data.keys[i][0][:8]}\n"
              f"ADE {result['per_sample']['ade'][i]:.2f} m" for i in idx]
    pred, gt = result["pred_xy"].numpy()[idx], result["gt_xy"].numpy()[idx]
    front = ([plots.front_camera(front_images(dataset, idx), pred, gt, titles,
                                 out / "eval_front.png")] if cfg.input_type == "camera" else [])
    return [*front, plots.top_down(pred, gt, titles, out / "eval_topdown.png"),
            plots.ade_by_horizon(errors, cv_errors, cfg.dt, out / "eval_ade_horizon.png")]


def evaluate(args: argparse.Namespace) -> dict:
    device = pick_device(args.device)
    student = load_student(args.checkpoint, device)
    state, config, cfg = student.state, student.config, student.cfg
    model, stats = student.model, student.stats
    if args.submission and config.benchmark is None:
        raise ConfigError(f"--submission: {args.checkpoint} was not trained on a benchmark "
                          "(--benchmark nuscenes or argoverse2); only those have a challenge")
    dataset = load_dataset(config, args.split)
    attach_action_targets(dataset, actions_cache_dir(config), cfg.dt, cfg.kinematics)
    weights = loss_weights(config, math.inf)  # the reasoning term at its full weight
    loader = make_loader(dataset, args.batch_size, args.num_workers)
    result = run_validation(model, loader, cfg, stats, weights, device, keep_predictions=True,
                            miss=miss_rule(config.benchmark))
    # Rows come back in dataset order (no shuffling), so they align with dataset.data.
    errors = displacement_errors(result["pred_xy"], result["gt_xy"]).numpy()
    cv_errors = constant_velocity_errors(dataset.data, cfg.dt, cfg.kinematics).numpy()
    report = {f"val_{k}": result[k] for k in ("loss", "ade", "fde", "ade_1s", "ade_2s",
                                              "ade_3s", "yaw_err_deg")}
    # The keys added after the guide's in metrics.jsonl (minADE_k, minFDE_k, MR_k, ...).
    report.update({key: result[key[len("val_"):]] for key in ADDED_VAL_KEYS})
    report.update(cv_ade=float(cv_errors.mean()), split=args.split, samples=len(dataset),
                  checkpoint=str(args.checkpoint), epoch=state["run"]["epoch"],
                  weights=student.weights,
                  ade_by_step=[round(float(e), 4) for e in errors.mean(0)])
    scen = dataset.data.labels.get("scenario")
    if scen is not None:
        lateral = lateral_toward_turn(result["pred_xy"].numpy(), result["gt_xy"].numpy(),
                                      yaw_from_rot(dataset.data.labels["trajectory_rot"]), cfg.dt)
        per = {k: v.numpy() for k, v in result["per_sample"].items()}
        report["per_scenario"] = scenario_report(scen, per, cv_errors, lateral)
    if config.benchmark:  # the leaderboard's metric set, by the devkit's own code
        report["leaderboard"] = leaderboard(
            dataset, config.benchmark, predict_modes(model, loader, cfg, stats, device),
            Path(args.submission) if args.submission else None)
    out = output_folder(args)
    out.mkdir(parents=True, exist_ok=True)
    report["plots"] = ([str(p) for p in draw_figures(dataset, result, errors, cv_errors, cfg,
                                                     args.num_plots, out)]
                       if args.num_plots else [])
    if args.closed_loop > 0:  # the student driving the built-in world (docs/closed_loop.md)
        report["closed_loop"] = closed_loop_summary(student, device, args.closed_loop)
    write_json(out / "eval.json", report)
    return report


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        with use_rollout(args.rollout):
            report = evaluate(args)
    except (DataError, ConfigError, PolicyError, checkpoint.CheckpointError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    print(f"{args.split}: ADE {report['val_ade']:.3f} m, FDE {report['val_fde']:.3f} m, "
          f"constant-velocity ADE {report['cv_ade']:.3f} m over {report['samples']} samples")
    print(f"  minADE_6 {report['val_minADE_6']:.3f} m, minFDE_6 {report['val_minFDE_6']:.3f} m, "
          f"MR_6 {report['val_MR_6']:.3f}, brier-minFDE_6 {report['val_brier_minFDE_6']:.3f} m")
    print(f"  MR_1 {report['val_MR_1']:.3f}" + ("; per scenario, the lateral error 3 s ahead: "
          "mean |e| / bias toward the turn / spread" if "per_scenario" in report else ""))
    for s, r in report.get("per_scenario", {}).items():
        print(f"  {s:<17} n={r['samples']:<4} ADE {r['ade']:.2f} m  FDE {r['fde']:.2f} m  "
              f"minADE_6 {r['minADE_6']:.2f} m  (cv ADE {r['cv_ade']:.2f})  MR_1 {r['MR_1']:.2f}"
              f"  lat {r['lateral_3s']:.2f} / {r['lateral_bias_3s']:+.2f} / "
              f"{r['lateral_std_3s']:.2f} m")
    if "leaderboard" in report:
        print(f"  {leaderboard_line(report['leaderboard'])}")
    if "closed_loop" in report:
        print(f"closed loop, {report['closed_loop']['num_episodes']} episodes: driving score "
              + ", ".join(f"{p} {s['overall']['score']:.3f}"
                          for p, s in report["closed_loop"]["summary"].items()))
    if args.submission:
        print(f"wrote the submission {args.submission}")
    figures = ", ".join(Path(p).name for p in report["plots"])
    print(f"wrote {output_folder(args) / 'eval.json'}" + (f" and {figures}" if figures else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
