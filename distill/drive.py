"""python -m distill.drive --checkpoint CKPT --episodes N [--seed S] [--replan-every K]
[--workers W] [--out DIR]
python -m distill.drive --policy planner|constant-velocity --episodes N ...

Drives a camera student closed-loop through episodes of the built-in world (scenes of a random
stream of their own, 6.4 s at 10 Hz from the teacher's state at t0; docs/closed_loop.md), and
the two references (the world's planner, constant velocity) through the same scenes. Writes to
--out (default: the checkpoint's folder, or the current one for a reference): drive.json (every
episode's metrics and the summaries), drive_summary.png (per scenario: each policy's score and
failures) and drive_worst.gif (top-down, the episode the policy scored worst, each step's plan
drawn). Exit code 2 on bad input (checkpoint, flags)."""
from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

from . import plots
from .closed_loop.episode import EPISODE_STEPS, EpisodeSpec, episode_scene
from .closed_loop.policies import POLICIES, REFERENCES, PolicyError, StudentPolicy, check_student
from .closed_loop.policies import reference_policy
from .closed_loop.runner import DriveSetup, drive_episodes
from .closed_loop.summary import score_definition, summarise, table
from .data.readers import one_line
from .training import checkpoint
from .training.config import ConfigError
from .training.runtime import pick_device
from .training.trained import load_student
from .world.__main__ import positive


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m distill.drive", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="a camera student's checkpoint (--policy student)")
    p.add_argument("--policy", choices=POLICIES, default="student",
                   help="what drives: the checkpoint's student (default) or a reference")
    p.add_argument("--episodes", type=positive, default=50, help="episodes (default 50)")
    p.add_argument("--seed", type=int, default=0, help="world seed of the scenes (default 0)")
    p.add_argument("--replan-every", type=positive, default=1, metavar="K",
                   help="steps of 0.1 s between plans; the ego executes K actions of each "
                   "(default 1)")
    p.add_argument("--workers", type=positive, default=1,
                   help="processes, each driving whole episodes (default 1)")
    p.add_argument("--out", default=None, help="output folder")
    p.add_argument("--resolution", type=positive, default=None,
                   help="camera frames in pixels (default: the resolution the student trained at)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    return p.parse_args(argv)


def student_policy(path: str, device: str) -> StudentPolicy:
    """The checkpoint's student as a policy (a module-level function: workers build their own)."""
    student = load_student(path, pick_device(device))
    return StudentPolicy(student.model, student.cfg, student.stats, pick_device(device), path)


def run_drive(make_policy, policy: str, episodes: int, seed: int, setup: DriveSetup,
              workers: int = 1) -> tuple[dict, list]:
    """Drive ``episodes`` episodes with the policy ``make_policy`` builds (named ``policy``)
    and the references named in ``setup``: the report (drive.json without the files it names)
    and the episodes (with the policy's rollouts)."""
    specs = [EpisodeSpec(seed, i) for i in range(episodes)]
    done, seconds = drive_episodes(specs, make_policy, setup, workers)
    records = [e.record for e in done]
    report = {
        "policy": policy, "seed": seed, "num_episodes": episodes,
        "episode_steps": EPISODE_STEPS, "replan_every": setup.replan_every,
        "resolution": setup.resolution, "workers": workers, "seconds": round(seconds, 2),
        "episodes_per_s": round(episodes / seconds, 4), "score": score_definition(),
        "summary": summarise(records, [policy, *setup.references]),
        "episodes": records,
    }
    return report, done


def closed_loop_summary(student, device, episodes: int, seed: int = 0) -> dict:
    """What ``distill.evaluate --closed-loop N`` adds to eval.json: the summaries of the loaded
    ``student`` and the references over ``episodes`` episodes (one process, replanning every
    step, at the resolution it trained at)."""
    check_student(student.cfg, "--closed-loop")
    setup = DriveSetup(1, student.config.resolution, REFERENCES)
    make_policy = partial(StudentPolicy, student.model, student.cfg, student.stats, device)
    report, _ = run_drive(make_policy, "student", episodes, seed, setup)
    return {k: report[k] for k in ("seed", "num_episodes", "replan_every", "resolution",
                                   "seconds", "episodes_per_s", "score", "summary")}


def write_json(path: Path, obj: dict) -> None:
    with plots.atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=1) + "\n")


def drive(args: argparse.Namespace) -> dict:
    if args.policy == "student" and not args.checkpoint:
        raise ConfigError("--checkpoint: required to drive a student (or pass --policy "
                          f"{' or '.join(REFERENCES)})")
    if args.policy != "student" and args.checkpoint:
        raise ConfigError(f"--checkpoint: --policy {args.policy} drives without one")
    if args.policy == "student":
        device = pick_device(args.device)
        student = load_student(args.checkpoint, device)
        check_student(student.cfg, args.checkpoint, args.replan_every)
        resolution = args.resolution or student.config.resolution
        make_policy = (partial(student_policy, args.checkpoint, args.device) if args.workers > 1
                       else partial(StudentPolicy, student.model, student.cfg, student.stats,
                                    device, args.checkpoint))
        out = Path(args.out or Path(args.checkpoint).parent)
    else:
        if args.replan_every > EPISODE_STEPS:
            raise ConfigError(f"--replan-every {args.replan_every}: at most {EPISODE_STEPS}")
        resolution = args.resolution or 64
        make_policy = partial(reference_policy, args.policy)
        out = Path(args.out or ".")
    out.mkdir(parents=True, exist_ok=True)
    references = tuple(r for r in REFERENCES if r != args.policy)
    setup = DriveSetup(args.replan_every, resolution, references)
    report, done = run_drive(make_policy, args.policy, args.episodes, args.seed, setup,
                             args.workers)
    report["checkpoint"] = args.checkpoint
    worst = min(done, key=lambda e: (e.record[args.policy]["score"], e.record["index"]))
    _, scene, teacher = episode_scene(EpisodeSpec(args.seed, worst.record["index"]))
    title = f"#{worst.record['index']} {scene.behaviour} score " \
            f"{worst.record[args.policy]['score']:.2f}"
    report["worst_episode"] = worst.record["index"]
    report["files"] = [str(p) for p in (
        out / "drive.json",
        plots.drive_summary(report["summary"], out / "drive_summary.png"),
        plots.drive_animation(scene, teacher, worst.rollout, title, out / "drive_worst.gif"))]
    write_json(out / "drive.json", report)
    return report


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        report = drive(args)
    except (ConfigError, PolicyError, checkpoint.CheckpointError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    print(table(report["summary"]))
    print(f"{report['num_episodes']} episodes in {report['seconds']:.1f} s "
          f"({report['episodes_per_s']:.3f} episodes/s, {report['workers']} worker(s)); "
          f"wrote {', '.join(report['files'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
