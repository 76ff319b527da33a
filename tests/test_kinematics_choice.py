"""The estimators a run uses (--kinematics) and where its action normalisation comes from
(--action-stats): the choice functions against the estimators they name, the teacher config's
reader and its refusals, and a run that records its choice in the checkpoint."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from distill.data.readers import DataError
from distill.evaluate import main as evaluate_main
from distill.kinematics import estimate_v0, speed_at_t0, trajectory_actions
from distill.kinematics.teacher import teacher_estimate_v0, teacher_traj_to_action
from distill.teachers.action_space import teacher_action_normalization
from distill.train import main as train_main

FIXTURE = "tests/data/alpamayo_action_space_1cba38c.npz"


@pytest.fixture(scope="module")
def poses():
    with np.load(FIXTURE) as f:
        return {k: torch.from_numpy(f[k]) for k in ("history_xyz", "history_rot", "future_xyz", "future_rot")}


def test_speed_at_t0_is_the_named_estimator(poses):
    xyz, rot = poses["history_xyz"].float(), poses["history_rot"].float()
    assert torch.equal(speed_at_t0("distill", xyz, rot, 0.1), estimate_v0(xyz, 0.1))
    teacher = speed_at_t0("teacher", xyz, rot, 0.1)
    assert teacher.dtype == torch.float32
    assert torch.equal(teacher, teacher_estimate_v0(xyz, rot, 0.1).float())
    assert not torch.allclose(teacher, estimate_v0(xyz, 0.1), atol=1e-3)  # they differ
    with pytest.raises(ValueError, match="kinematics 'exact' is not one of"):
        speed_at_t0("exact", xyz, rot, 0.1)


def test_trajectory_actions_teacher_is_the_teachers_inverse(poses):
    got = trajectory_actions("teacher", poses["history_xyz"], poses["history_rot"], poses["future_xyz"],
                             poses["future_rot"], 0.1)
    want = teacher_traj_to_action(poses["history_xyz"], poses["history_rot"], poses["future_xyz"],
                                  poses["future_rot"], 0.1)
    for g, w in zip(got, want):
        assert g.dtype == torch.float64 and torch.equal(g, w)


def _teacher_config(path, **space):
    base = dict(_target_="alpamayo_r1.action_space.UnicycleAccelCurvatureActionSpace",
                accel_mean=0.02, accel_std=0.9, curvature_mean=-0.001, curvature_std=0.03,
                dt=0.1, n_waypoints=64)
    path.mkdir(exist_ok=True)
    (path / "config.json").write_text(json.dumps({"action_space_cfg": {**base, **space}}))
    return path


def test_teacher_config_gives_its_normalization(tmp_path):
    stats = teacher_action_normalization(_teacher_config(tmp_path / "ckpt"), 0.1, 64)
    assert torch.allclose(stats.mean, torch.tensor([0.02, -0.001]))
    assert torch.allclose(stats.std, torch.tensor([0.9, 0.03]))


@pytest.mark.parametrize("space, message", [
    (dict(dt=0.5), "action_space_cfg.dt is 0.5, the student's is 0.1"),
    (dict(n_waypoints=32), "action_space_cfg.n_waypoints is 32, the student's is 64"),
    (dict(accel_std=0.0), "stds must be > 0"),
    (dict(curvature_mean="x"), "action_space_cfg.curvature_mean must be a finite number"),
])
def test_teacher_config_refusals(tmp_path, space, message):
    with pytest.raises(DataError, match=message):
        teacher_action_normalization(_teacher_config(tmp_path / "c", **space), 0.1, 64)


def test_teacher_config_missing_or_not_alpamayo(tmp_path):
    with pytest.raises(DataError, match="teacher config not found"):
        teacher_action_normalization(tmp_path / "nope.json", 0.1, 64)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(DataError, match="no action_space_cfg"):
        teacher_action_normalization(tmp_path, 0.1, 64)


OFFLINE = ["--model", "baseline", "--offline", "--max-epochs", "1", "--model-size", "tiny",
           "--resolution", "32", "--max-train-samples", "8", "--max-val-samples", "4",
           "--batch-size", "4", "--num-workers", "0"]


def test_run_with_teacher_kinematics_and_teacher_stats(tmp_path):
    config = _teacher_config(tmp_path / "teacher")
    out = tmp_path / "run"
    assert train_main([*OFFLINE, "--output-dir", str(out), "--kinematics", "teacher",
                       "--action-stats", "teacher", "--teacher-config", str(config)]) == 0
    state = torch.load(out / "baseline_seed42_best.pt", weights_only=True)
    assert state["model_config"]["kinematics"] == "teacher"
    assert torch.allclose(state["action_stats"]["std"], torch.tensor([0.9, 0.03]))
    assert state["provenance"] is None  # offline samples have no labels file
    assert evaluate_main(["--checkpoint", str(out / "baseline_seed42_best.pt"),
                          "--output-dir", str(tmp_path / "eval"), "--num-plots", "1"]) == 0


@pytest.mark.parametrize("extra, message", [
    (["--action-stats", "teacher"], "--action-stats teacher needs --teacher-config PATH"),
    (["--teacher-config", "x.json"], "--teacher-config is only read with --action-stats teacher"),
    (["--action-stats", "teacher", "--teacher-config", "missing_dir/config.json"],
     "missing_dir/config.json: teacher config not found"),
])
def test_bad_stats_flags_are_one_line(tmp_path, capsys, extra, message):
    assert train_main([*OFFLINE, "--output-dir", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def _labels_by(world, dest, teacher: str, model: str):
    """A copy of the world whose labels' provenance names another teacher."""
    import shutil

    from distill.data import provenance
    shutil.copytree(world, dest)
    for split in ("train", "val"):
        path = dest / "teacher_labels" / f"{split}_labels.npz"
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        origin = {**provenance.parse(str(arrays["provenance"])), "teacher": teacher,
                  "teacher_model": model}
        arrays["provenance"] = np.array(provenance.to_json(origin))
        np.savez(path, **arrays)
    return dest


@pytest.mark.parametrize("teacher, model, flag, want", [
    ("alpamayo-r1", "nvidia/Alpamayo-R1-10B", "auto", "teacher"),
    ("world", "distill-world-planner", "auto", "distill"),
])
def test_auto_kinematics_follows_the_labels_provenance(world, tmp_path, capsys, teacher, model,
                                                       flag, want):
    data = _labels_by(world, tmp_path / "world", teacher, model)
    out = tmp_path / "run"
    argv = ["--model", "baseline", "--model-size", "tiny", "--resolution", "64",
            "--max-epochs", "1", "--max-train-samples", "8", "--max-val-samples", "4",
            "--batch-size", "4", "--num-workers", "0", "--kinematics", flag,
            "--train-labels", str(data / "teacher_labels/train_labels.npz"),
            "--val-labels", str(data / "teacher_labels/val_labels.npz"),
            "--frames-dir", str(data / "extracted_frames"),
            "--ego-history-dir", str(data / "teacher_labels"), "--output-dir", str(out)]
    assert train_main(argv) == 0
    state = torch.load(out / "baseline_seed42_best.pt", weights_only=True)
    assert state["model_config"]["kinematics"] == want
    assert state["provenance"]["teacher_model"] == model  # copied from the labels
    whose = "the teacher's" if want == "teacher" else "our"
    assert f"kinematics: {whose} estimators" in capsys.readouterr().out
