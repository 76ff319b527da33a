"""The benchmarks' leaderboard metric sets, computed by the devkits' own code, and their
challenge submission files (docs/datasets.md, "Leaderboards and submissions").

    modes = predict_modes(model, loader, cfg, stats, device)    # every mode of every sample
    entry = leaderboard(dataset, "nuscenes", modes, submission=Path("predictions.json"))

- nuScenes prediction: each agent's K modes as the devkit's ``Prediction`` (12 global xy poses
  at 2 Hz over 6 s, the mode probabilities), serialised as the challenge takes them (a JSON
  list of ``Prediction.serialize()``), scored by ``nuscenes.eval.prediction.compute_metrics``
  with the challenge's config: minADE_5/10, minFDE_1/5/10, MissRate_2_5/10, OffRoadRate (the
  fraction of modes leaving the map's drivable area).
- Argoverse 2: av2's ``ChallengeSubmission`` (per scenario the focal track's K modes of 60 city
  xy poses at 10 Hz, probabilities summing to 1) written as its parquet, scored with
  ``av2.datasets.motion_forecasting.eval.metrics`` at k = 1 and 6 as the challenge scores:
  among the k most probable modes the best is the one of least final error; minADE_k is its
  ADE, MR_k its miss, brier_minFDE_6 its FDE plus (1 - its probability)^2.

A metric over k modes of a model with fewer than k modes is None ("n/a"), never the value over
the K modes it has.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data.readers import DataError
from ..models.plan import student_plan

NUSCENES_CONFIG = "predict_2020_icra.json"  # the prediction challenge's metric config
# The challenge's leaderboard names -> the devkit's (``flatten_metrics``) names.
NUSCENES_METRICS = {"minADE_5": "MinADEK_5", "minADE_10": "MinADEK_10",
                    "minFDE_1": "MinFDEK_1", "minFDE_5": "MinFDEK_5", "minFDE_10": "MinFDEK_10",
                    "MissRate_2_5": "MissRateTopK_2_5", "MissRate_2_10": "MissRateTopK_2_10",
                    "OffRoadRate": "OffRoadRate"}
AV2_METRICS = ("minADE_1", "minFDE_1", "MR_1", "minADE_6", "minFDE_6", "MR_6", "brier_minFDE_6")


@dataclass(frozen=True)
class ModePredictions:
    xy: np.ndarray  # (N, K, T, 2) float64, metres, each sample's target frame at t0
    probs: np.ndarray  # (N, K) float64, each row sums to 1

    @property
    def num_modes(self) -> int:
        return self.probs.shape[1]


@torch.no_grad()
def predict_modes(model, loader, cfg, stats, device) -> ModePredictions:
    """Every mode and its probability for each sample of ``loader`` (in its order)."""
    model.eval()
    xy, probs = [], []
    for batch in tqdm(loader, desc="leaderboard predictions", unit="batch", dynamic_ncols=True,
                      leave=False, disable=not sys.stderr.isatty()):
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        plan = student_plan(model, batch, cfg, stats)
        xy.append(plan.modes_xy.double().cpu())
        probs.append(plan.probs.double().cpu())
    p = torch.cat(probs).numpy()
    return ModePredictions(torch.cat(xy).numpy(), p / p.sum(-1, keepdims=True))


def modes_needed(name: str) -> int:
    """The k of a metric name ("minFDE_5" -> 5); 1 for a metric without one (OffRoadRate)."""
    last = name.rsplit("_", 1)[-1]
    return int(last) if last.isdigit() else 1


def nuscenes_records(dataset, modes: ModePredictions) -> list[dict]:
    """The challenge submission: one serialised devkit ``Prediction`` per agent, global xy."""
    from nuscenes.eval.prediction.data_classes import Prediction
    world = dataset.poses.to_world(modes.xy)
    return [Prediction(instance, sample, world[i], modes.probs[i]).serialize()
            for i, (instance, sample) in enumerate(dataset.pairs)]


def score_nuscenes(records: list[dict], helper) -> dict:
    """The challenge's metric set of a submission, by the devkit's ``compute_metrics`` (which
    reads the truth through ``helper``)."""
    from nuscenes.eval.prediction.compute_metrics import compute_metrics
    from nuscenes.eval.prediction.config import load_prediction_config
    from nuscenes.eval.prediction.metrics import flatten_metrics
    config = load_prediction_config(helper, NUSCENES_CONFIG)
    flat = flatten_metrics(compute_metrics(records, helper, config), config.metrics)
    num_modes = len(records[0]["probabilities"])
    return {name: float(np.ravel(flat[key])[0]) if modes_needed(name) <= num_modes else None
            for name, key in NUSCENES_METRICS.items()}


def av2_submission(dataset, modes: ModePredictions):
    """av2's ``ChallengeSubmission`` of the focal tracks' modes, in city coordinates."""
    from av2.datasets.motion_forecasting.eval.submission import ChallengeSubmission
    world = dataset.poses.to_world(modes.xy)
    return ChallengeSubmission({scenario: (modes.probs[i], {dataset.track_ids[i]: world[i]})
                                for i, (scenario, _) in enumerate(dataset.data.keys)})


def av2_truth(dataset) -> dict:
    """scenario id -> (focal track id, its (60, 2) city future)."""
    future = dataset.future_world()
    return {scenario: (dataset.track_ids[i], future[i])
            for i, (scenario, _) in enumerate(dataset.data.keys)}


def score_av2(submission, truth: dict) -> dict:
    """The challenge's metric set of a ``ChallengeSubmission`` against ``av2_truth``, by av2's
    metric functions; the k most probable modes of each scenario are ranked as av2's reader
    ranks them (by probability, descending)."""
    from av2.datasets.motion_forecasting.eval import metrics as av2m
    sums: dict[str, float] = {}
    for scenario, (probs, tracks) in submission.predictions.items():
        track_id, gt = truth[scenario]
        order = np.argsort(-np.asarray(probs), kind="stable")
        traj, p = np.asarray(tracks[track_id])[order], np.asarray(probs)[order]
        for k in (1, 6):
            if k > len(p):
                continue
            top = traj[:k]
            fde = av2m.compute_fde(top, gt)
            best = int(np.argmin(fde))
            row = {f"minADE_{k}": av2m.compute_ade(top, gt)[best], f"minFDE_{k}": fde[best],
                   f"MR_{k}": av2m.compute_is_missed_prediction(top, gt)[best]}
            if k == 6:
                row["brier_minFDE_6"] = av2m.compute_brier_fde(top, gt, p[:k], normalize=True)[best]
            for name, value in row.items():
                sums[name] = sums.get(name, 0.0) + float(value)
    n = len(submission.predictions)
    return {name: sums[name] / n if name in sums else None for name in AV2_METRICS}


def write_atomic(path: Path, write) -> None:
    """``write(temp path)`` in ``path``'s folder (a new file, with the user's umask), then
    renamed onto ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise DataError(f"{path}: cannot write the submission ({e.strerror or e})") from None
    finally:
        tmp.unlink(missing_ok=True)


def leaderboard(dataset, benchmark: str, modes: ModePredictions,
                submission: Path | None = None) -> dict:
    """The benchmark's leaderboard entry of ``modes`` on ``dataset`` (eval.json's
    ``leaderboard``); with ``submission``, the challenge file written there first."""
    if benchmark == "nuscenes":
        records = nuscenes_records(dataset, modes)
        if submission is not None:
            write_atomic(submission, lambda tmp: tmp.write_text(json.dumps(records)))
        metrics = score_nuscenes(records, dataset.helper)
        scored_by = (f"nuscenes-devkit {metadata.version('nuscenes-devkit')}: "
                     f"nuscenes.eval.prediction.compute_metrics ({NUSCENES_CONFIG})")
    else:
        challenge = av2_submission(dataset, modes)
        if submission is not None:
            write_atomic(submission, challenge.to_parquet)
        metrics = score_av2(challenge, av2_truth(dataset))
        scored_by = (f"av2 {metadata.version('av2')}: "
                     "av2.datasets.motion_forecasting.eval.metrics")
    return {"benchmark": benchmark, "scored_by": scored_by, "samples": len(dataset),
            "num_modes": modes.num_modes, "metrics": metrics,
            "submission": str(submission) if submission is not None else None}


def leaderboard_line(entry: dict) -> str:
    """One line of the entry's metrics; "n/a" for those over more modes than the model has."""
    values = ", ".join(f"{name} {'n/a' if v is None else f'{v:.3f}'}"
                       for name, v in entry["metrics"].items())
    return f"leaderboard ({entry['num_modes']} modes, {entry['scored_by']}): {values}"
