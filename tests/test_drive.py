"""The closed loop (distill.drive): the world it extends still writes the same bytes, episodes
hand over from the teacher and execute what a policy plans, the references behave as they
must on a fixed set of scenes, and a tiny student drives end to end through the CLI."""
from __future__ import annotations

import contextlib
import hashlib
import json
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from distill.closed_loop.episode import (SCENE_TIMES, CameraFrames, EpisodeSpec,
                                         episode_scene, observe, run_episode)
from distill.closed_loop.metrics import episode_metrics, min_time_to_collision
from distill.closed_loop.policies import (ConstantVelocityPolicy, PlannerPolicy, PolicyError,
                                          StudentPolicy, check_student, reference_policy)
from distill.closed_loop.runner import DriveSetup, drive_episodes
from distill.drive import main as drive_main
from distill.drive import student_policy
from distill.evaluate import main as evaluate_main
from distill.kinematics import ActionNormalization
from distill.models import get_model_config
from distill.models.student import DIRECT_SCALE
from distill.train import main as train_main
from distill.world.generate import DRIVE_STREAM, draw_scene, poses_in_ego_frame
from distill.world.planner import drive, unicycle_step
from distill.world.render import render_frames
from distill.world.scene import T0_INDEX, TIMES

from conftest import WORLD

DATA = Path(__file__).parent / "data"
# Written by distill.world at 4483a19, before the closed loop extended it: every array of every
# file of the session world, but coc_embeddings (the text model's floats, not the world's).
DIGESTS = DATA / "world_digests_4483a19.json"
ADDED_ENTRIES = {"provenance"}  # arrays added to the labels files since (their provenance)

# Scenes of the closed loop's stream (seed 0) by index, and what constant velocity does there.
CV_FAILS = {15: ("stop_for_lead", "vehicle"), 24: ("stop_for_lead", "vehicle"),
            11: ("follow_lead", "vehicle"), 17: ("follow_lead", "vehicle"),
            8: ("red_light", "red light"), 13: ("red_light", "red light"),
            7: ("pedestrian", "pedestrian"), 0: ("pedestrian", "crosswalk")}
OTHERS = {1: "turn_right", 2: "curve", 4: "cruise", 5: "green_light", 6: "turn_left",
          20: "speed_limit_down", 21: "go_straight", 26: "speed_limit_up"}


def _digests(root: Path) -> dict:
    """Every array of the files distill.world wrote (not the trainer's caches that other tests
    of the session leave in hidden folders, e.g. teacher_labels/.distill_cache)."""
    out = {}
    for p in sorted(root.rglob("*.npz")):
        if any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        with zipfile.ZipFile(p) as z:
            out[p.relative_to(root).as_posix()] = {
                n[:-4]: hashlib.sha256(z.read(n)).hexdigest()[:32] for n in z.namelist()
                if n != "coc_embeddings.npy"}
    return out


def test_the_world_writes_the_bytes_it_wrote_before_the_closed_loop(world):
    assert WORLD == dict(train=48, val=16, seed=0, resolution=64), "the digests are of this world"
    want, got = json.loads(DIGESTS.read_text()), _digests(world)
    assert sorted(got) == sorted(want)
    changed = [f"{f}:{k}" for f in want for k in want[f] if got[f].get(k) != want[f][k]]
    added = {k for f in got for k in got[f] if k not in want[f]}
    assert not changed, f"distill.world now writes other bytes: {changed[:5]}"
    assert added <= ADDED_ENTRIES


def test_a_longer_grid_draws_the_same_scene_and_teacher():
    for index in range(12):
        _, short = draw_scene(0, DRIVE_STREAM, index)
        _, scene, teacher = episode_scene(EpisodeSpec(0, index))
        assert len(scene.times) == len(SCENE_TIMES) > len(short.times) == len(TIMES)
        np.testing.assert_array_equal(scene.times[:len(TIMES)], TIMES)
        for a, b in zip(short.boxes, scene.boxes, strict=True):
            assert all(a.pose(i) == b.pose(i) for i in range(len(TIMES)))
        track = drive(short)
        upto = T0_INDEX + 1  # the hand-over state and the history before it
        for f in ("x", "y", "yaw", "v"):
            np.testing.assert_array_equal(getattr(teacher, f)[:upto], getattr(track, f)[:upto])
        if index < 2:  # the cameras at the hand-over are the world's
            np.testing.assert_array_equal(render_frames(scene, teacher, 16),
                                          render_frames(short, track, 16))


@pytest.mark.parametrize("replan_every", [1, 4])
def test_the_planner_driving_closed_loop_is_the_teacher(replan_every):
    """The planner executes its own plan: the ego follows the teacher's drive to the bit."""
    _, teacher, rollout = run_episode(EpisodeSpec(0, 15), PlannerPolicy(), replan_every)
    end = T0_INDEX + rollout.steps + 1
    for f in ("x", "y", "yaw", "v"):
        np.testing.assert_array_equal(getattr(rollout.track, f), getattr(teacher, f)[:end])
    assert len(rollout.plan_steps) == -(-rollout.steps // replan_every)
    assert rollout.plans_xy.shape == (len(rollout.plan_steps), 64, 2) and rollout.clipped == 0


def _reference_metrics(policy, index):
    scene, teacher, rollout = run_episode(EpisodeSpec(0, index), policy)
    return scene.behaviour, episode_metrics(scene, teacher, rollout)


def test_time_to_collision_with_a_stopped_car_and_on_a_curve():
    states = np.zeros((3, 4))
    states[:, 0], states[:, 3] = [0.0, 1.0, 2.0], 10.0  # along +x at 10 m/s
    parked = dict(pose=np.tile([20.0, 0.0, 0.0], (3, 1)), size=(4.6, 1.9), speed=np.zeros(3),
                  yaw_rate=np.zeros(3))
    # Bumper to bumper 20 - 3.6 - 2.3 = 14.1 m at the first step, 12.1 m at the last: the
    # footprints meet after 1.3 s (0.1 s steps) from there.
    assert min_time_to_collision(states, np.zeros(3), [parked]) == pytest.approx(1.3)
    beside = dict(parked, pose=np.tile([20.0, 3.0, 0.0], (3, 1)))  # in the next lane
    assert min_time_to_collision(states, np.zeros(3), [beside]) == 3.0
    # Turning left on a 68 m radius, which passes (20, 3), the ego heads for that car.
    assert min_time_to_collision(states, np.full(3, 1 / 68), [beside]) < 2.0


def test_references_on_a_fixed_set_of_scenes():
    for index in (*CV_FAILS, *OTHERS):
        scenario, planner = _reference_metrics(PlannerPolicy(horizon=1), index)
        assert scenario == (CV_FAILS[index][0] if index in CV_FAILS else OTHERS[index])
        assert not planner["collision"] and not planner["red_light_violation"], (index, planner)
        assert planner["score"] >= 0.95 and not planner["lane_departure"], (index, planner)
        _, cv = _reference_metrics(ConstantVelocityPolicy(horizon=1), index)
        if index in CV_FAILS:
            fail = CV_FAILS[index][1]
            if fail in ("vehicle", "pedestrian"):
                assert cv["collision"] and cv["collision_with"] == fail, (index, cv)
            elif fail == "red light":
                assert cv["red_light_violation"], (index, cv)
            else:
                assert cv["stop_overshoot_m"] > 5.0 and cv["score"] <= 0.25, (index, cv)
            assert cv["score"] < planner["score"] - 0.5
        if scenario in ("turn_left", "turn_right", "go_straight", "green_light"):
            # Straight on is a legal branch: no departure, progress, no failure.
            assert not cv["lane_departure"] and cv["progress_ratio"] > 0.9, (index, cv)
        if scenario == "curve":
            assert cv["lane_departure"], (index, cv)


class TeacherFuture(torch.nn.Module):
    """A direct student whose poses are the teacher's future (as its direct head holds them)."""

    def __init__(self, xyz: np.ndarray, rot: np.ndarray):
        super().__init__()
        yaw = np.arctan2(rot[:, 1, 0], rot[:, 0, 0])
        head = np.stack([xyz[:, 0] / DIRECT_SCALE, xyz[:, 1] / DIRECT_SCALE, np.sin(yaw),
                         np.cos(yaw)], -1)
        self.head = torch.tensor(head, dtype=torch.float32)[None, None]  # (1, K=1, T, 4)

    def forward(self, scene, history, v0):
        return {"direct": self.head, "mode_logits": torch.zeros(1, 1)}


def test_a_direct_student_executes_what_it_plans():
    _, scene, teacher = episode_scene(EpisodeSpec(0, 11))  # a lead that brakes
    future = poses_in_ego_frame(teacher, T0_INDEX + np.arange(1, 65))
    cfg = get_model_config("tiny", output="direct")
    stats = ActionNormalization.from_actions(torch.zeros(2, 64), torch.zeros(2, 64))
    policy = StudentPolicy(TeacherFuture(*future), cfg, stats, "cpu")
    plan = policy.plan(observe(scene, teacher, T0_INDEX, CameraFrames(scene, 16)))
    np.testing.assert_allclose(plan.xy, future[0][:, :2], atol=1e-5)
    steps = slice(T0_INDEX, T0_INDEX + 64)
    np.testing.assert_allclose(plan.actions[3:, 0], teacher.a[steps][3:], atol=0.1)
    np.testing.assert_allclose(plan.actions[:, 1], teacher.k[steps], atol=1e-4)
    x, y, yaw, v = teacher.x[T0_INDEX], teacher.y[T0_INDEX], teacher.yaw[T0_INDEX], \
        teacher.v[T0_INDEX]
    for a, k in plan.actions[:30]:  # executed from the true state, it follows the teacher
        x, y, yaw, v = unicycle_step(x, y, yaw, v, a, k)
    assert np.hypot(x - teacher.x[T0_INDEX + 30], y - teacher.y[T0_INDEX + 30]) < 0.1


def test_raster_and_vector_students_are_refused():
    for kind in ("raster", "vector"):
        with pytest.raises(PolicyError, match=f"a {kind} student cannot drive"):
            check_student(get_model_config("tiny", input_type=kind), "ckpt.pt")


@pytest.mark.parametrize("argv, message", [
    (["--episodes", "1"], "--checkpoint: required"),
    (["--policy", "planner", "--checkpoint", "x.pt"], "drives without one"),
    (["--checkpoint", "missing.pt"], "missing.pt: checkpoint not found"),
    (["--checkpoint", str(DATA / "old_checkpoint_08b0f76_av2_vector_epoch1.pt")],
     "a vector student cannot drive"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path):
    assert drive_main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


@pytest.fixture(scope="module")
def tiny_student(tmp_path_factory):
    """A tiny camera student after one step on the offline world (frames of noise)."""
    out = tmp_path_factory.mktemp("tiny")
    argv = ["--model", "baseline", "--model-size", "tiny", "--offline", "--resolution", "32",
            "--max-epochs", "1", "--batch-size", "8", "--max-train-samples", "8",
            "--max-val-samples", "4", "--num-workers", "0", "--no-tensorboard",
            "--output-dir", str(out)]
    with contextlib.chdir(out):
        assert train_main(argv) == 0
    return out / "baseline_seed42_best.pt"


def test_a_tiny_student_drives_through_the_cli(tiny_student, tmp_path):
    out = tmp_path / "drive"
    assert drive_main(["--checkpoint", str(tiny_student), "--episodes", "1", "--out",
                       str(out)]) == 0
    report = json.loads((out / "drive.json").read_text())
    assert {p.name for p in out.iterdir()} == {"drive.json", "drive_summary.png",
                                               "drive_worst.gif"}
    assert report["num_episodes"] == 1 and report["resolution"] == 32
    assert set(report["summary"]) == {"student", "planner", "constant-velocity"}
    assert report["worst_episode"] == 0 and report["episodes_per_s"] > 0
    for record in report["episodes"]:
        assert set(record["student"]) == set(record["planner"])
        assert 0.0 <= record["student"]["score"] <= 1.0
        assert record["planner"]["score"] >= 0.95
    with Image.open(out / "drive_worst.gif") as gif:
        assert gif.n_frames == 65  # t0 and each of the 64 steps


def _episodes(out: Path) -> list:
    return json.loads((out / "drive.json").read_text())["episodes"]


def test_two_workers_drive_the_episodes_one_does():
    specs = [EpisodeSpec(0, i) for i in (15, 7, 2)]
    setup = DriveSetup(1, 32, ("planner",))
    make_policy = partial(reference_policy, "constant-velocity")
    one, two = (drive_episodes(specs, make_policy, setup, workers, progress=False)[0]
                for workers in (1, 2))
    assert [e.record for e in one] == [e.record for e in two]
    assert [e.record["index"] for e in two] == [15, 7, 2]
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a.rollout.plans_xy, b.rollout.plans_xy)


@pytest.mark.slow
def test_two_workers_drive_a_student_as_one_does(tiny_student, tmp_path):
    argv = ["--checkpoint", str(tiny_student), "--episodes", "2"]
    assert drive_main([*argv, "--workers", "2", "--out", str(tmp_path / "two")]) == 0
    done, _ = drive_episodes([EpisodeSpec(0, i) for i in range(2)],
                             partial(student_policy, str(tiny_student), "cpu"),
                             DriveSetup(1, 32, ("planner", "constant-velocity")), workers=1,
                             progress=False)
    assert [e.record for e in done] == _episodes(tmp_path / "two")


def test_evaluate_appends_the_driving_summary(tiny_student):
    assert evaluate_main(["--checkpoint", str(tiny_student), "--closed-loop", "1",
                          "--num-workers", "0", "--device", "cpu"]) == 0
    report = json.loads((tiny_student.parent / "eval.json").read_text())
    summary = report["closed_loop"]["summary"]
    assert report["closed_loop"]["num_episodes"] == 1 and "val_ade" in report
    assert summary["planner"]["overall"]["score"] >= 0.95
