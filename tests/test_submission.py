"""Leaderboards and submissions (docs/datasets.md): `python -m distill.evaluate --submission`
writes each benchmark's challenge file, which the devkits' own readers load and their own
scorers score to the numbers of eval.json's ``leaderboard`` entry, on the tiny datasets; metrics
over more modes than a model has are reported as not applicable; --num-modes takes 1 to 25."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from distill.evaluate import main as evaluate_main
from distill.train import main as train_main
from distill.training.args import build_parser

av2_metrics = pytest.importorskip("av2.datasets.motion_forecasting.eval.metrics")
pytest.importorskip("nuscenes")
from av2.datasets.motion_forecasting.eval.submission import ChallengeSubmission  # noqa: E402
from av2.datasets.motion_forecasting.scenario_serialization import (  # noqa: E402
    load_argoverse_scenario_parquet)
from nuscenes.eval.prediction import config as nus_config  # noqa: E402
from nuscenes.eval.prediction.compute_metrics import compute_metrics  # noqa: E402
from nuscenes.eval.prediction.data_classes import Prediction  # noqa: E402

from distill.data.readers import DataError  # noqa: E402
from distill.datasets import benchmark_model_fields  # noqa: E402
from distill.datasets.argoverse2 import Argoverse2Forecasting, scenario_files  # noqa: E402
from distill.datasets.leaderboard import (ModePredictions, leaderboard,  # noqa: E402
                                          leaderboard_line)
from distill.datasets.nuscenes import NuScenesPrediction  # noqa: E402

VAL_SAMPLES = 8  # nuScenes agents evaluated (--max-val-samples)


def _train_and_evaluate(benchmark: str, root, out) -> tuple[dict, object]:
    flags = {"nuscenes": ["--benchmark", "nuscenes", "--nuscenes-root", str(root),
                          "--input-type", "raster", "--resolution", "64",
                          "--multimodal-loss", "nll", "--max-train-samples", "16",
                          "--max-val-samples", str(VAL_SAMPLES)],
             "argoverse2": ["--benchmark", "argoverse2", "--argoverse2-root", str(root),
                            "--input-type", "vector", "--multimodal-loss", "wta"]}[benchmark]
    assert train_main(["--model", "baseline", "--model-size", "tiny", "--batch-size", "8",
                       "--num-workers", "0", "--max-epochs", "1", "--output-dir", str(out),
                       "--num-modes", "6", *flags]) == 0
    submission = out / {"nuscenes": "predictions.json", "argoverse2": "predictions.parquet"}[
        benchmark]
    assert evaluate_main(["--checkpoint", str(out / "baseline_seed42_best.pt"),
                          "--num-workers", "0", "--submission", str(submission)]) == 0
    return json.loads((out / "eval.json").read_text()), submission


@pytest.mark.parametrize("benchmark", ["nuscenes", "argoverse2"])
def test_one_epoch_then_evaluate_writes_a_submission_the_devkit_scores(benchmark, tiny_root,
                                                                        tmp_path):
    report, submission = _train_and_evaluate(benchmark, tiny_root / benchmark, tmp_path)
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert all(np.isfinite(v) for k, v in record.items()
               if k.startswith(("val_", "train_")) and isinstance(v, float))
    assert record["val_minADE_6"] <= record["val_minADE_1"]
    assert len(report["ade_by_step"]) == benchmark_model_fields(benchmark)["horizon"]
    for key in ("val_minADE_1", "val_minADE_6", "val_minFDE_6", "val_MR_6", "val_brier_minFDE_6"):
        assert np.isfinite(report[key])
    assert not (tmp_path / "eval_front.png").exists()  # no cameras to draw on
    entry = report["leaderboard"]
    assert (entry["benchmark"], entry["num_modes"], entry["submission"]) == \
        (benchmark, 6, str(submission))
    check = {"nuscenes": _nuscenes_round_trip, "argoverse2": _av2_round_trip}[benchmark]
    check(tiny_root / benchmark, submission, report)


def _nuscenes_round_trip(root, submission, report):
    """The devkit reads the file back (``Prediction.deserialize``) and its ``compute_metrics``
    scores it with the challenge config's displacement metrics (OffRoadRate, which rasterizes
    the four full-size maps, is checked on hand-made modes below); eval.json says the same. Its
    k = 10 (more than the 6 modes: all of them) equals our minADE_6 etc. in each agent's frame,
    so the predictions went back to global coordinates right."""
    records = json.loads(submission.read_text())
    predictions = [Prediction.deserialize(r) for r in records]
    dataset = NuScenesPrediction.open(root, "val", 64, limit=VAL_SAMPLES)
    assert [(p.instance, p.sample) for p in predictions] == dataset.pairs
    for p in predictions:
        assert p.prediction.shape == (6, 12, 2)
        assert p.probabilities.sum() == pytest.approx(1, abs=1e-9)
    challenge = json.loads((Path(nus_config.__file__).parent / "configs" /
                            "predict_2020_icra.json").read_text())
    challenge["metrics"] = [m for m in challenge["metrics"] if m["name"] != "OffRoadRate"]
    config = nus_config.PredictionConfig.deserialize(challenge, dataset.helper)
    devkit = compute_metrics(records, dataset.helper, config)
    ours = report["leaderboard"]["metrics"]
    at = {"minADE_5": ("MinADEK", 1), "minFDE_1": ("MinFDEK", 0), "minFDE_5": ("MinFDEK", 1),
          "MissRate_2_5": ("MissRateTopK_2", 1)}
    for name, (metric, j) in at.items():
        assert ours[name] == pytest.approx(devkit[metric]["RowMean"][j], abs=1e-12), name
    assert ours["minADE_10"] is ours["minFDE_10"] is ours["MissRate_2_10"] is None
    assert 0 <= ours["OffRoadRate"] <= 1
    for metric, key in (("MinADEK", "val_minADE_6"), ("MinFDEK", "val_minFDE_6"),
                        ("MissRateTopK_2", "val_MR_6")):
        assert devkit[metric]["RowMean"][2] == pytest.approx(report[key], abs=1e-4), metric


def _av2_round_trip(root, submission, report):
    """av2's reader loads the file; av2's metric functions score it against the focal tracks'
    futures read from the scenario files, as the challenge ranks modes (by probability) and
    picks the best of k (least final error)."""
    challenge = ChallengeSubmission.from_parquet(submission)
    folders = Argoverse2Forecasting.open(root, "val").folders
    assert sorted(challenge.predictions) == sorted(f.name for f in folders)
    rows = []
    for folder in folders:
        scenario = load_argoverse_scenario_parquet(scenario_files(folder)[0])
        focal = next(t for t in scenario.tracks if t.track_id == scenario.focal_track_id)
        gt = np.array([s.position for s in focal.object_states if s.timestep >= 50])
        probs, tracks = challenge.predictions[scenario.scenario_id]
        traj = tracks[scenario.focal_track_id]  # most probable first (the reader sorts)
        assert traj.shape == (6, 60, 2) and probs.sum() == pytest.approx(1)
        fde = av2_metrics.compute_fde(traj, gt)
        best = int(np.argmin(fde))
        rows.append({
            "minADE_1": av2_metrics.compute_ade(traj[:1], gt)[0],
            "minFDE_1": fde[0], "MR_1": av2_metrics.compute_is_missed_prediction(traj[:1], gt)[0],
            "minADE_6": av2_metrics.compute_ade(traj, gt)[best], "minFDE_6": fde[best],
            "MR_6": av2_metrics.compute_is_missed_prediction(traj, gt)[best],
            "brier_minFDE_6": av2_metrics.compute_brier_fde(traj, gt, probs, normalize=True)[best]})
    ours = report["leaderboard"]["metrics"]
    for name in rows[0]:
        assert ours[name] == pytest.approx(np.mean([r[name] for r in rows]), abs=1e-4), name
    # The same modes scored in the focal frame by distill.metrics: the city transform is right.
    assert ours["minFDE_6"] == pytest.approx(report["val_minFDE_6"], abs=1e-4)
    assert ours["minFDE_1"] == pytest.approx(report["val_minFDE_1"], abs=1e-4)


def _modes(truth: np.ndarray, k: int, shift: float = 0.0) -> ModePredictions:
    """k modes per sample: the truth moved ``shift`` m to the left, then copies 1, 2, ... m
    further to the left, less and less probable."""
    offsets = (shift + np.arange(k))[None, :, None, None] * np.array([0.0, 1.0])
    probs = np.tile(np.arange(k, 0, -1, dtype=np.float64), (len(truth), 1))
    return ModePredictions(truth[:, None] + offsets, probs / probs.sum(-1, keepdims=True))


def test_metrics_over_more_modes_than_the_model_has_are_not_applicable(tiny_root, tmp_path):
    """Argoverse 2 with 1 mode: the k = 6 metrics are n/a; nuScenes with 25 modes (the devkit's
    most): all apply. (nuScenes is scored once here: the devkit's OffRoadRate rasterizes the
    four full-size maps, seconds per call; its k > K case is in the test above.)"""
    av2 = Argoverse2Forecasting.open(tiny_root / "argoverse2", "val")
    truth = av2.data.labels["trajectory_xyz"][..., :2].astype(np.float64)
    one = leaderboard(av2, "argoverse2", _modes(truth, 1, shift=1.0))
    single = one["metrics"]
    assert single["minFDE_1"] == pytest.approx(1) and single["MR_1"] == 0
    assert single["minADE_6"] is single["MR_6"] is single["brier_minFDE_6"] is None
    assert "minADE_6 n/a" in leaderboard_line(one)
    ten = leaderboard(av2, "argoverse2", _modes(truth, 10, shift=2.5))["metrics"]
    assert ten["MR_6"] == 1 and ten["minFDE_6"] == pytest.approx(2.5)
    with pytest.raises(DataError, match=re.escape(str(tmp_path))):  # a folder is not a file to write
        leaderboard(av2, "argoverse2", _modes(truth, 1), submission=tmp_path)
    # nuScenes at 25 modes (the devkit's most), the most probable 3 m off the truth.
    nus = NuScenesPrediction.open(tiny_root / "nuscenes", "val", 64)
    truth = nus.data.labels["trajectory_xyz"][..., :2].astype(np.float64)
    many = leaderboard(nus, "nuscenes", _modes(truth, 25, shift=3.0))["metrics"]
    assert all(v is not None for v in many.values())
    assert many["minFDE_1"] == pytest.approx(3, abs=1e-4) and many["MissRate_2_10"] == 1
    assert 0 < many["OffRoadRate"] < 1  # the modes 20+ m to the side leave the road


def test_num_modes_takes_1_to_25(capsys):
    parser = build_parser()
    assert [parser.parse_args(["--num-modes", k]).num_modes for k in ("1", "3", "25")] == \
        [1, 3, 25]
    for bad in ("0", "26"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--num-modes", bad])
    assert "invalid choice" in capsys.readouterr().err


def test_submission_without_a_benchmark_is_refused_in_one_line(tmp_path, capsys):
    """A checkpoint of a run on the guide's data (here the tests' old benchmark checkpoint with
    its config's benchmark removed: what the refusal reads) has no challenge to submit to."""
    state = torch.load(Path(__file__).parent / "data" / "old_checkpoint_08b0f76_av2_vector_"
                       "epoch1.pt", weights_only=True)
    state["config"] = {**state["config"], "benchmark": None, "argoverse2_root": None}
    torch.save(state, tmp_path / "world.pt")
    code = evaluate_main(["--checkpoint", str(tmp_path / "world.pt"), "--submission",
                          str(tmp_path / "predictions.json"), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--submission" in err
    assert not (tmp_path / "predictions.json").exists()


def test_three_modes_train_select_and_score_with_k6_not_applicable(tiny_root, tmp_path):
    """Any K from 1 to 25 trains (model selection on minADE_6: here over all 3 modes),
    evaluates and submits; the leaderboard's k = 6 metrics are n/a."""
    root = tiny_root / "argoverse2"
    assert train_main(["--model", "baseline", "--model-size", "tiny", "--batch-size", "8",
                       "--num-workers", "0", "--max-epochs", "1", "--output-dir", str(tmp_path),
                       "--num-modes", "3", "--benchmark", "argoverse2", "--argoverse2-root",
                       str(root), "--input-type", "vector"]) == 0
    submission = tmp_path / "predictions.parquet"
    assert evaluate_main(["--checkpoint", str(tmp_path / "baseline_seed42_best.pt"),
                          "--num-workers", "0", "--submission", str(submission)]) == 0
    entry = json.loads((tmp_path / "eval.json").read_text())["leaderboard"]
    assert entry["num_modes"] == 3 and entry["metrics"]["minADE_6"] is None
    assert np.isfinite(entry["metrics"]["minFDE_1"])
    challenge = ChallengeSubmission.from_parquet(submission)
    assert {tracks["focal"].shape for _, tracks in challenge.predictions.values()} == {(3, 60, 2)}
