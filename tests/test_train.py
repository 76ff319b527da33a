"""The trainer end to end on the small world: flags of the guide, checkpoints, exact resume,
refusals, offline mode, torch.compile, and the evaluator."""
from __future__ import annotations

import contextlib
import json
import os
import signal

import numpy as np
import pytest
import torch

from distill.evaluate import main as evaluate_main
from distill.train import main as train_main
from distill.training.args import build_parser
from distill.training.step import TrainStep
from distill.training.outputs import METRIC_KEYS

# Every flag of the training guide's CLI reference, by its exact name.
GUIDE_FLAGS = """--model --model-size --train-labels --val-labels --frames-dir --offline
--ego-history-dir --max-epochs --patience --batch-size --accumulation-steps --lr --weight-decay
--warmup-epochs --lr-schedule --ema --ema-decay --yaw-weight --reasoning-weight
--reasoning-warmup-epochs --temperature --action-weight --grad-clip --discrete-actions
--num-action-bins --label-smoothing --no-unicycle --freeze-bn --overfit-tiny --max-train-samples
--max-val-samples --log-action-stats --output-dir --save-every --save-final-only --seed --compile
--resume --num-workers""".split()
GUIDE_DEFAULTS = {"model_size": "500m", "max_epochs": 150, "patience": 15, "batch_size": 48,
                  "accumulation_steps": 1, "lr": 1e-4, "weight_decay": 0.02, "warmup_epochs": 5,
                  "lr_schedule": "cosine", "ema_decay": 0.999, "yaw_weight": 0.3,
                  "reasoning_weight": 0.25, "reasoning_warmup_epochs": 20, "temperature": 0.07,
                  "action_weight": 0.0, "grad_clip": 0.0, "num_action_bins": 256,
                  "label_smoothing": 0.1, "output_dir": "checkpoints", "save_every": 5,
                  "seed": 42, "train_labels": "teacher_labels/train_labels.npz",
                  "val_labels": "teacher_labels/val_labels.npz",
                  "frames_dir": "extracted_frames", "ego_history_dir": "teacher_labels"}


def test_help_shows_every_guide_flag_with_its_default(capsys):
    with pytest.raises(SystemExit):
        train_main(["--help"])
    text = capsys.readouterr().out
    missing = [f for f in GUIDE_FLAGS if f not in text]
    assert not missing
    args = build_parser().parse_args(["--model", "baseline"])
    assert {k: getattr(args, k) for k in GUIDE_DEFAULTS} == GUIDE_DEFAULTS
    for flag in ("ema", "offline", "no_unicycle", "discrete_actions", "freeze_bn", "compile",
                 "save_final_only", "log_action_stats"):
        assert getattr(args, flag) is False


def _train(world, out, *extra):
    argv = ["--model", "reasoning", "--model-size", "tiny", "--resolution", "64",
            "--batch-size", "16", "--num-workers", "0", "--lr", "3e-4", "--warmup-epochs", "1",
            "--reasoning-warmup-epochs", "1", "--action-weight", "0.1", "--ema",
            "--ema-decay", "0.5", "--grad-clip", "1.0", "--accumulation-steps", "2",
            "--save-every", "1", "--keep-last", "0", "--output-dir", str(out), *extra]
    with contextlib.chdir(world):  # the default data paths, as a user runs it from the world
        return train_main(argv)


@pytest.fixture(scope="module")
def straight_run(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    assert _train(world, out, "--max-epochs", "3") == 0
    return out


def test_checkpoints_and_metrics_of_a_run(world, straight_run):
    names = sorted(p.name for p in straight_run.glob("*.pt"))
    assert names == ["reasoning_seed42_best.pt", "reasoning_seed42_epoch1.pt",
                     "reasoning_seed42_epoch2.pt", "reasoning_seed42_epoch3.pt",
                     "reasoning_seed42_latest.pt"]
    state = torch.load(straight_run / "reasoning_seed42_latest.pt", weights_only=True)
    assert {"model", "ema", "optimizer", "scheduler", "run", "rng", "action_stats",
            "config"} <= set(state)
    assert state["run"]["epoch"] == 3 and state["config"]["seed"] == 42
    lines = (straight_run / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert all(tuple(r)[:len(METRIC_KEYS)] == METRIC_KEYS for r in records)
    assert all(r[k] == r[k] for r in records for k in METRIC_KEYS)  # no NaN
    # The world's labels name scenarios: their val ADEs, weighted by the counts, give val_ade.
    names, counts = np.unique(np.load(world / "teacher_labels" / "val_labels.npz")["scenario"],
                              return_counts=True)
    for r in records:
        assert list(r)[len(METRIC_KEYS):] == ["val_scenario_ade"]
        assert sorted(r["val_scenario_ade"]) == names.tolist()
        mean = sum(r["val_scenario_ade"][n] * c for n, c in zip(names, counts)) / counts.sum()
        assert mean == pytest.approx(r["val_ade"], abs=1e-3)


def test_resume_from_epoch2_equals_the_straight_run(world, straight_run, tmp_path):
    out = tmp_path / "resumed"
    code = _train(world, out, "--max-epochs", "3",
                  "--resume", str(straight_run / "reasoning_seed42_epoch2.pt"))
    assert code == 0
    a = torch.load(straight_run / "reasoning_seed42_latest.pt", weights_only=True)
    b = torch.load(out / "reasoning_seed42_latest.pt", weights_only=True)
    for part in ("model", "ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    assert [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()] \
        == [3]


def test_sigterm_mid_epoch_saves_latest_and_resumes_exactly(world, straight_run, tmp_path,
                                                             monkeypatch, capsys):
    """SIGTERM during epoch 2 (at its first optimizer step): the run saves _latest.pt with the
    samples it has seen of the epoch and exits 0; resumed, it ends with the straight run's
    weights and epoch 2's train means."""
    real, calls = TrainStep.update, []

    def update(self, lr):
        calls.append(lr)
        if len(calls) == 3:  # epoch 1 has 2 steps (3 batches of 16, 2 per step)
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, lr)

    monkeypatch.setattr(TrainStep, "update", update)
    out = tmp_path / "stopped"
    assert _train(world, out, "--max-epochs", "3") == 0
    assert "stopped by SIGTERM at epoch 2" in capsys.readouterr().out
    latest = out / "reasoning_seed42_latest.pt"
    state = torch.load(latest, weights_only=True)
    assert state["run"]["epoch"] == 1 and state["run"]["samples_in_epoch"] == 32
    monkeypatch.setattr(TrainStep, "update", real)
    assert _train(world, out, "--max-epochs", "3", "--resume", str(latest)) == 0
    a = torch.load(straight_run / "reasoning_seed42_latest.pt", weights_only=True)
    b = torch.load(latest, weights_only=True)
    for part in ("model", "ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    mine, straight = ([json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
                      for run in (out, straight_run))
    assert [r["epoch"] for r in mine] == [1, 2, 3]
    assert mine[1]["train_loss"] == pytest.approx(straight[1]["train_loss"], rel=1e-6)


def test_queue_negatives_resume_exactly(world, tmp_path):
    """--reasoning-negatives queue: the queue is in the checkpoints, so a run resumed from
    epoch 1 ends with the straight run's weights and queue; retrieval metrics are logged."""
    queue = ("--reasoning-negatives", "queue", "--queue-size", "40", "--max-epochs", "2",
             "--max-train-samples", "32")
    assert _train(world, tmp_path / "straight", *queue) == 0
    first = tmp_path / "straight" / "reasoning_seed42_epoch1.pt"
    assert _train(world, tmp_path / "resumed", *queue, "--resume", str(first)) == 0
    a, b = (torch.load(tmp_path / run / "reasoning_seed42_latest.pt", weights_only=True)
            for run in ("straight", "resumed"))
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["negatives"]["count"] == 40 and torch.equal(a["negatives"]["embeddings"],
                                                         b["negatives"]["embeddings"])
    record = json.loads((tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0 <= record["val_coc_top1"] <= record["val_coc_top5"] <= 1


def test_resume_refuses_a_differing_flag(world, straight_run, tmp_path, capsys):
    code = _train(world, tmp_path, "--max-epochs", "4", "--lr", "1e-3",
                  "--resume", str(straight_run / "reasoning_seed42_epoch2.pt"))
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "--lr" in err and "differs" in err and len(err.splitlines()) == 1


def test_output_dir_of_another_config_is_refused(world, straight_run, capsys):
    code = _train(world, straight_run, "--max-epochs", "1", "--yaw-weight", "0.5")
    assert code == 2
    err = capsys.readouterr().err
    assert "different config" in err and "--overwrite" in err


def test_evaluator_writes_its_files(world, straight_run, tmp_path):
    code = evaluate_main(["--checkpoint", str(straight_run / "reasoning_seed42_best.pt"),
                          "--output-dir", str(tmp_path), "--num-workers", "0"])
    assert code == 0
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["samples"] == 16 and report["weights"] == "ema"
    assert report["per_scenario"] and len(report["ade_by_step"]) == 64
    for name in ("eval_front.png", "eval_topdown.png", "eval_ade_horizon.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_evaluator_without_figures(world, straight_run, tmp_path, capsys):
    code = evaluate_main(["--checkpoint", str(straight_run / "reasoning_seed42_best.pt"),
                          "--output-dir", str(tmp_path), "--num-workers", "0",
                          "--num-plots", "0"])
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.json"]
    assert json.loads((tmp_path / "eval.json").read_text())["plots"] == []
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {tmp_path / 'eval.json'}"


def test_offline_quick_check_and_save_final_only(tmp_path):
    argv = ["--model", "baseline", "--offline", "--max-epochs", "2", "--model-size", "tiny",
            "--resolution", "32", "--max-train-samples", "8", "--max-val-samples", "4",
            "--batch-size", "4", "--num-workers", "0", "--save-final-only",
            "--output-dir", str(tmp_path)]
    assert train_main(argv) == 0
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["baseline_seed42_best.pt"]


@pytest.mark.parametrize("mode", [["--no-unicycle"], ["--discrete-actions", "--num-action-bins",
                                                       "32", "--log-action-stats"]])
def test_output_modes_train(tmp_path, mode):
    argv = ["--model", "baseline", "--offline", "--max-epochs", "1", "--model-size", "tiny",
            "--resolution", "32", "--max-train-samples", "8", "--max-val-samples", "4",
            "--batch-size", "4", "--num-workers", "0", "--output-dir", str(tmp_path), *mode]
    assert train_main(argv) == 0
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["val_ade"] > 0
    assert record["val_coc_top1"] is None and record["val_coc_top5"] is None  # no embedding
    assert ("action_stats" in record) == ("--log-action-stats" in mode)


def test_compile_trains_tiny(tmp_path):
    argv = ["--model", "baseline", "--offline", "--max-epochs", "1", "--model-size", "tiny",
            "--resolution", "32", "--max-train-samples", "4", "--max-val-samples", "4",
            "--batch-size", "4", "--num-workers", "0", "--compile", "--output-dir",
            str(tmp_path)]
    assert train_main(argv) == 0


def test_corrupt_frames_stop_the_run_with_one_line(world, tmp_path, capsys):
    import shutil
    copy = tmp_path / "world"
    shutil.copytree(world, copy)
    bad = copy / "extracted_frames" / "train" / "sample_00005.npz"
    bad.write_bytes(bad.read_bytes()[:100])  # truncated
    code = _train(copy, tmp_path / "out", "--max-epochs", "1", "--num-workers", "1")
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sample_00005.npz" in err and "not a readable npz" in err


def test_aux_xy_weight_needs_the_unicycle_output(tmp_path, capsys):
    argv = ["--model", "baseline", "--offline", "--model-size", "tiny", "--no-unicycle",
            "--aux-xy-weight", "1.0", "--output-dir", str(tmp_path)]
    assert train_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--aux-xy-weight needs unicycle mode" in err
