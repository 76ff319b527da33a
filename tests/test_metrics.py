"""distill.metrics on hand-made trajectories."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from distill.metrics import constant_velocity, displacement_errors, trajectory_metrics

F64 = torch.float64


def hand_made(T: int = 40):
    """Sample 0: error 5 (i + 1) m at step i (offsets 3 (i+1), 4 (i+1)); sample 1: exact."""
    gt = torch.randn(2, T, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    steps = torch.arange(1, T + 1, dtype=F64)
    pred = gt.clone()
    pred[0] += torch.stack([3 * steps, 4 * steps], -1)
    return pred, gt


def test_displacement_errors():
    pred, gt = hand_made()
    err = displacement_errors(pred, gt)
    assert err.shape == (2, 40)
    torch.testing.assert_close(err[0], 5 * torch.arange(1, 41, dtype=F64))
    assert (err[1] == 0).all()
    with pytest.raises(ValueError, match="one shape"):
        displacement_errors(pred, gt[:, :10])


def test_trajectory_metrics_by_hand():
    pred, gt = hand_made()  # 4 s at dt = 0.1
    gt_yaw = torch.zeros(2, 40, dtype=F64)
    pred_yaw = torch.zeros(2, 40, dtype=F64)
    pred_yaw[0, :20] = 0.1
    pred_yaw[0, 20:] = -0.1
    # sample 1: pi - 0.05 against -pi + 0.05 is 0.1 rad apart once wrapped
    pred_yaw[1] = math.pi - 0.05
    gt_yaw[1] = -math.pi + 0.05
    m = trajectory_metrics(pred, gt, pred_yaw, gt_yaw, dt=0.1)
    assert set(m) == {"ade", "fde", "ade_1s", "ade_2s", "ade_3s", "yaw_err_deg"}
    assert all(v.shape == (2,) for v in m.values())
    # sample 0: errors 5, 10, ..., 200: mean of 5 k over k = 1..n is 5 (n + 1) / 2
    want = {"ade": 5 * 41 / 2, "fde": 200.0, "ade_1s": 5 * 11 / 2, "ade_2s": 5 * 21 / 2, "ade_3s": 5 * 31 / 2}
    for name, value in want.items():
        torch.testing.assert_close(m[name], torch.tensor([value, 0.0], dtype=F64), rtol=1e-12, atol=1e-12)
    deg = math.degrees(0.1)
    torch.testing.assert_close(m["yaw_err_deg"], torch.tensor([deg, deg], dtype=F64), rtol=1e-9, atol=0)


def test_trajectory_metrics_short_horizon_and_float32():
    pred, gt = hand_made(T=15)  # 1.5 s: ade_2s and ade_3s cover all steps
    m = trajectory_metrics(pred.float(), gt.float(), torch.zeros(2, 15), torch.zeros(2, 15), 0.1)
    assert m["ade"].dtype == torch.float32
    torch.testing.assert_close(m["ade_1s"], torch.tensor([5 * 11 / 2, 0.0]))
    torch.testing.assert_close(m["ade_2s"], m["ade"])
    torch.testing.assert_close(m["ade_3s"], m["ade"])
    with pytest.raises(ValueError, match="yaws"):
        trajectory_metrics(pred, gt, torch.zeros(2, 14), torch.zeros(2, 15), 0.1)


def test_constant_velocity():
    xy = constant_velocity(torch.tensor([0.0, 2.0], dtype=F64), horizon=3, dt=0.5)
    want = torch.tensor([[[0, 0], [0, 0], [0, 0]], [[1, 0], [2, 0], [3, 0]]], dtype=F64)
    assert xy.shape == (2, 3, 2) and xy.dtype == F64
    torch.testing.assert_close(xy, want)
    assert constant_velocity(torch.ones(4), 64, 0.1).shape == (4, 64, 2)
    torch.testing.assert_close(constant_velocity(torch.ones(1), 64, 0.1)[0, -1], torch.tensor([6.4, 0.0]))
    # nuScenes: 12 steps of 0.5 s
    torch.testing.assert_close(constant_velocity(torch.ones(1), 12, 0.5)[0, -1], torch.tensor([6.0, 0.0]))


def test_dt_has_no_default():
    """The step is the data's (0.1 s here, 0.5 s on nuScenes): never a silent default."""
    pred, gt = hand_made(T=4)
    yaw = torch.zeros(2, 4, dtype=F64)
    with pytest.raises(TypeError, match="dt"):
        trajectory_metrics(pred, gt, yaw, yaw)
    with pytest.raises(TypeError, match="dt"):
        constant_velocity(torch.ones(2), 4)


def test_lateral_errors_across_the_teachers_heading():
    from distill.metrics import lateral_errors
    from distill.training.report import lateral_toward_turn
    gt = torch.tensor([[[10.0, 0.0], [10.0, 5.0]]])  # heading east, then north
    yaw = torch.tensor([[0.0, math.pi / 2]])
    pred = torch.tensor([[[11.0, 1.0], [9.0, 6.0]]])  # 1 m left of east; 1 m left of north
    assert torch.allclose(lateral_errors(pred, gt, yaw), torch.tensor([[1.0, 1.0]]))
    # Toward the turn: a teacher ending on the right makes "1 m to the left" -1 m.
    gt_right = np.array([[[10.0, 0.0]] * 30 + [[10.0, -4.0]]])
    pred_right = gt_right + np.array([0.0, 1.0])
    assert lateral_toward_turn(pred_right, gt_right, np.zeros((1, 31)), 0.1) == pytest.approx(-1)
