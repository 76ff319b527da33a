"""distill.metrics.min_ade_fde_mr against the official devkits' own metric functions on random
inputs: nuscenes-devkit's MinADEK / MinFDEK / MissRateTopK and av2's compute_ade / compute_fde /
compute_is_missed_prediction / compute_brier_fde (scored as the Argoverse 2 challenge does)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from distill.metrics import min_ade_fde_mr

av2_metrics = pytest.importorskip("av2.datasets.motion_forecasting.eval.metrics")
nus_metrics = pytest.importorskip("nuscenes.eval.prediction.metrics")
from nuscenes.eval.prediction.data_classes import Prediction  # noqa: E402

N, K = 200, 6


def random_case(T: int, seed: int):
    """Each mode offset from the truth by ~1.5 m plus 0.3 m noise per step, so both sides of
    the 2 m miss threshold occur; random probabilities (no ties)."""
    rng = np.random.default_rng(seed)
    gt = np.cumsum(rng.normal(0, 1, (N, T, 2)), axis=1)
    pred = (gt[:, None] + rng.normal(0, 1.5, (N, K, 1, 2))
            + rng.normal(0, 0.3, (N, K, T, 2)))
    probs = rng.dirichlet(np.ones(K), N)
    return pred, gt, probs


@pytest.mark.parametrize("T", [12, 60])
def test_matches_nuscenes_devkit(T):
    pred, gt, probs = random_case(T, seed=T)
    ks = [1, 3, 5, 6, 10]  # 10 > K: all modes, as desired_number_of_modes does
    aggregate = [nus_metrics.RowMean()]
    devkit = {"minADE": nus_metrics.MinADEK(ks, aggregate),
              "minFDE": nus_metrics.MinFDEK(ks, aggregate),
              "MR": nus_metrics.MissRateTopK(ks, aggregate, tolerance=2.0)}
    want = {name: np.concatenate([metric(gt[i], Prediction("i", "s", pred[i], probs[i]))
                                  for i in range(N)]) for name, metric in devkit.items()}
    for j, k in enumerate(ks):
        ours = min_ade_fde_mr(pred, gt, probs, k=k, miss="max", reduce=False)
        for name in devkit:
            np.testing.assert_allclose(ours[name], want[name][:, j], rtol=1e-12, atol=1e-12,
                                       err_msg=f"{name} k={k}")
    assert 0.1 < want["MR"][:, 0].mean() < 0.9  # both outcomes occur


def av2_challenge_row(pred: np.ndarray, gt: np.ndarray, probs: np.ndarray, k: int) -> dict:
    """One sample scored with av2's functions over its top-k modes by probability, the way
    the Argoverse 2 challenge combines them (min ADE, min FDE; miss and Brier of the min-FDE
    mode; probabilities normalized)."""
    top = np.argsort(-probs, kind="stable")[:k]
    ade = av2_metrics.compute_ade(pred[top], gt)
    fde = av2_metrics.compute_fde(pred[top], gt)
    missed = av2_metrics.compute_is_missed_prediction(pred[top], gt, miss_threshold_m=2.0)
    brier = av2_metrics.compute_brier_fde(pred, gt, probs, normalize=True)[top]
    best = np.argmin(fde)
    return {"minADE": ade.min(), "minFDE": fde[best], "MR": float(missed[best]),
            "brier_minFDE": brier[best]}


@pytest.mark.parametrize("k", [1, 6])
def test_matches_av2_devkit(k):
    pred, gt, probs = random_case(60, seed=7)
    rows = [av2_challenge_row(pred[i], gt[i], probs[i], k) for i in range(N)]
    ours = min_ade_fde_mr(pred, gt, probs, k=k, miss="final", reduce=False)
    for name in ("minADE", "minFDE", "MR", "brier_minFDE"):
        np.testing.assert_allclose(ours[name], [r[name] for r in rows], rtol=1e-12, atol=1e-12,
                                   err_msg=name)
    reduced = min_ade_fde_mr(pred, gt, probs, k=k)
    assert reduced["MR"].shape == () and np.isclose(reduced["MR"], np.mean([r["MR"] for r in rows]))


def test_torch_input_matches_numpy_and_keeps_dtype():
    pred, gt, probs = random_case(12, seed=1)
    ours_np = min_ade_fde_mr(pred, gt, probs, k=6)
    ours_t = min_ade_fde_mr(torch.from_numpy(pred).float(), torch.from_numpy(gt).float(),
                            torch.from_numpy(probs).float(), k=6)
    for name, value in ours_np.items():
        assert torch.is_tensor(ours_t[name]) and ours_t[name].dtype == torch.float32
        np.testing.assert_allclose(ours_t[name].item(), value, rtol=1e-5)


def test_without_probs_the_first_k_modes_count_and_no_brier():
    pred, gt, _ = random_case(12, seed=2)
    out = min_ade_fde_mr(pred, gt, k=2, reduce=False)
    assert "brier_minFDE" not in out
    ade = np.linalg.norm(pred[:, :2] - gt[:, None], axis=-1).mean(-1)
    np.testing.assert_allclose(out["minADE"], ade.min(1), rtol=1e-12)


def test_hand_made_miss_rules():
    """One mode, 3 m off at step 0 only: its final error is 0 (no AV2 miss) but its max
    pointwise error is 3 m (a nuScenes miss)."""
    gt = np.zeros((1, 4, 2))
    pred = np.zeros((1, 1, 4, 2))
    pred[0, 0, 0] = [3.0, 0.0]
    assert min_ade_fde_mr(pred, gt, miss="final")["MR"] == 0.0
    assert min_ade_fde_mr(pred, gt, miss="max")["MR"] == 1.0
    np.testing.assert_allclose(min_ade_fde_mr(pred, gt)["minADE"], 0.75)


def test_bad_input_is_refused_in_one_line():
    pred, gt, probs = random_case(12, seed=3)
    with pytest.raises(ValueError, match="pred \\(N, K, T, 2\\)"):
        min_ade_fde_mr(pred[:, 0], gt)
    with pytest.raises(ValueError, match="miss must be one of"):
        min_ade_fde_mr(pred, gt, miss="endpoint")
    with pytest.raises(ValueError, match="probs must be \\(N, K\\)"):
        min_ade_fde_mr(pred, gt, probs[:, :3])
    with pytest.raises(ValueError, match=">= 0"):
        min_ade_fde_mr(pred, gt, -probs)
