"""Per-scenario figures of a validation pass (built-in world data, whose labels name each
sample's scenario): what ``distill.evaluate`` reports beside the split's means, so a mean that
hides a scenario the student fails shows it (docs/learning.md)."""
from __future__ import annotations

import numpy as np
import torch

from ..metrics import lateral_errors, steps_within

LATERAL_AT_S = 3.0  # the lateral error is read 3 s ahead: past the first bend, before the noise


def lateral_toward_turn(pred_xy: np.ndarray, gt_xy: np.ndarray, gt_yaw: np.ndarray,
                        dt: float) -> np.ndarray:
    """(N,) lateral error at ``LATERAL_AT_S`` (the last step when the horizon is shorter), m,
    signed so that positive is toward the side the teacher's plan ends up on (its final
    lateral position; to the left when it ends straight ahead): a plan that drives straight
    where the teacher bends has a negative value there."""
    step = steps_within(LATERAL_AT_S, dt, gt_xy.shape[1]) - 1
    lat = lateral_errors(*(torch.from_numpy(np.asarray(a, np.float64)) for a in
                           (pred_xy[:, step], gt_xy[:, step], gt_yaw[:, step]))).numpy()
    side = np.where(gt_xy[:, -1, 1] < 0, -1.0, 1.0)
    return lat * side


def scenario_report(scenario: np.ndarray, per_sample: dict, cv_errors: np.ndarray,
                    lateral: np.ndarray) -> dict:
    """{scenario: samples, ade, fde, cv_ade, minADE_6, minFDE_6, MR_1, lateral_3s (mean
    |lateral error|), lateral_bias_3s (mean of ``lateral_toward_turn``: < 0 turns too little),
    lateral_std_3s (its spread)} over the samples of each scenario."""
    out = {}
    for s in np.unique(scenario):
        m = scenario == s
        out[str(s)] = {"samples": int(m.sum()), "ade": float(per_sample["ade"][m].mean()),
                       "fde": float(per_sample["fde"][m].mean()),
                       "cv_ade": float(cv_errors[m].mean()),
                       "minADE_6": float(per_sample["minADE_6"][m].mean()),
                       "minFDE_6": float(per_sample["minFDE_6"][m].mean()),
                       "MR_1": float(per_sample["MR_1"][m].mean()),
                       "lateral_3s": float(np.abs(lateral[m]).mean()),
                       "lateral_bias_3s": float(lateral[m].mean()),
                       "lateral_std_3s": float(lateral[m].std())}
    return out
