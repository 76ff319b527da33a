"""Trajectory metrics, per sample (so the caller can average over a validation set and per
scenario), and the constant-velocity baseline. Plain PyTorch, any float dtype; differentiable,
though evaluation normally runs them under ``torch.no_grad()``."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .kinematics import wrap_angle

__all__ = ["ADE_HORIZONS_S", "MISS_THRESHOLD_M", "constant_velocity", "displacement_errors",
           "lateral_errors", "min_ade_fde_mr", "steps_within", "trajectory_metrics"]

ADE_HORIZONS_S = (1, 2, 3)  # ade_{n}s: mean error over the steps at t <= n s


def displacement_errors(pred_xy: Tensor, gt_xy: Tensor) -> Tensor:
    """Euclidean error per step: ``(B, T, 2)`` x2 -> ``(B, T)`` metres (any leading dims)."""
    if pred_xy.shape != gt_xy.shape or pred_xy.shape[-1] != 2:
        raise ValueError(f"displacement_errors: expected two (..., T, 2) tensors of one shape, got "
                         f"{tuple(pred_xy.shape)} and {tuple(gt_xy.shape)}")
    return torch.linalg.vector_norm(pred_xy - gt_xy, dim=-1)


def steps_within(seconds: float, dt: float, horizon: int) -> int:
    """How many steps (at t = dt, 2 dt, ...) lie within ``seconds``: at least 1, at most
    ``horizon``."""
    return max(1, min(horizon, math.floor(seconds / dt + 1e-6)))


def lateral_errors(pred_xy: Tensor, gt_xy: Tensor, gt_yaw: Tensor) -> Tensor:
    """Signed lateral offset of each predicted position from the teacher's, across the
    teacher's heading at that step (positive: to its left), m: ``(B, T, 2)`` x2 and
    ``(B, T)`` -> ``(B, T)``. Its mean over samples that bend the same way is the plans' bias
    (under- or over-turning), its spread their variance."""
    d = pred_xy - gt_xy
    return d[..., 1] * gt_yaw.cos() - d[..., 0] * gt_yaw.sin()


def trajectory_metrics(
    pred_xy: Tensor, gt_xy: Tensor, pred_yaw: Tensor, gt_yaw: Tensor, dt: float
) -> dict[str, Tensor]:
    """Per-sample trajectory metrics; step i (0-based) is at t = (i + 1) dt.

    Args:
        pred_xy, gt_xy: ``(B, T, 2)`` metres.
        pred_yaw, gt_yaw: ``(B, T)`` radians.
        dt: step, s.

    Returns:
        dict of ``(B,)`` tensors:
        ``ade``: mean displacement error over the T steps, m;
        ``fde``: displacement error at the last step, m;
        ``ade_1s``, ``ade_2s``, ``ade_3s``: mean displacement error over the steps with t <= 1, 2,
        3 s (all T steps when the horizon is shorter, the first step when dt is longer), m;
        ``yaw_err_deg``: mean over the steps of |pred_yaw - gt_yaw| wrapped to (-pi, pi], degrees.
    """
    err = displacement_errors(pred_xy, gt_xy)  # (B, T)
    if pred_yaw.shape != err.shape or gt_yaw.shape != err.shape:
        raise ValueError(f"trajectory_metrics: yaws must be (B, T) = {tuple(err.shape)}, got "
                         f"{tuple(pred_yaw.shape)} and {tuple(gt_yaw.shape)}")
    out = {"ade": err.mean(-1), "fde": err[..., -1]}
    for seconds in ADE_HORIZONS_S:
        out[f"ade_{seconds}s"] = err[..., :steps_within(seconds, dt, err.shape[-1])].mean(-1)
    out["yaw_err_deg"] = torch.rad2deg(wrap_angle(pred_yaw - gt_yaw).abs()).mean(-1)
    return out


def constant_velocity(v0: Tensor, horizon: int, dt: float) -> Tensor:
    """The constant-velocity baseline: straight ahead at v0.

    Args:
        v0: ``(B,)`` m/s (any leading dims).
        horizon: number of steps T.
        dt: step, s.

    Returns:
        ``(B, T, 2)``: x = v0 t, y = 0 at t = dt, 2 dt, ..., T dt.
    """
    t = torch.arange(1, horizon + 1, dtype=v0.dtype, device=v0.device) * dt  # (T,)
    x = v0.unsqueeze(-1) * t
    return torch.stack([x, torch.zeros_like(x)], -1)


# --------------------------------------------------------------------------------------------
# Multimodal benchmark metrics (nuScenes prediction challenge, Argoverse 2 motion forecasting)
# --------------------------------------------------------------------------------------------

MISS_THRESHOLD_M = 2.0  # both devkits' default
MISS_RULES = ("final", "max")


def min_ade_fde_mr(pred, gt, probs=None, k: int = 6, miss: str = "final",
                   threshold: float = MISS_THRESHOLD_M, reduce: bool = True) -> dict:
    """minADE_k, minFDE_k and miss rate over the top-k modes, as the official devkits compute
    them (tests/test_datasets_metrics.py checks both on random inputs).

    Args:
        pred: ``(N, K, T, 2)`` K predicted trajectories per sample, metres; numpy or torch.
        gt: ``(N, T, 2)``.
        probs: optional ``(N, K)`` mode probabilities (or any non-negative scores: they are
            normalized over the K modes for the Brier term). The top-k modes are the k most
            probable (ties: the lower mode index first); without probs, the first k.
            k > K uses all K, as nuScenes' ``desired_number_of_modes`` does.
        k: modes considered.
        miss: ``"final"`` (Argoverse 2, ``compute_is_missed_prediction``): a sample is missed
            when the final displacement of every top-k mode is > threshold, i.e. minFDE_k >
            threshold; ``"max"`` (nuScenes ``MissRateTopK``): when every top-k mode has a
            maximum pointwise displacement >= threshold.
        threshold: metres.
        reduce: mean over the N samples (default) or per-sample ``(N,)`` values.

    Returns:
        dict with ``minADE`` (min over the top-k of the mean displacement: nuScenes
        ``MinADEK``, av2 ``compute_ade``), ``minFDE`` (min of the final displacement:
        ``MinFDEK``, ``compute_fde``), ``MR`` (0/1 per sample, mean when reduced) and, with
        probs, ``brier_minFDE``: the minFDE mode's FDE + (1 - p)^2 with p its normalized
        probability (av2 ``compute_brier_fde(normalize=True)`` at the argmin of FDE, as the
        Argoverse 2 challenge scores it). Values are torch tensors for torch input (on its
        device, in its float dtype), numpy for numpy input.
    """
    as_numpy = not torch.is_tensor(pred)
    pred_t = torch.as_tensor(pred)
    gt_t = torch.as_tensor(gt, device=pred_t.device)
    if pred_t.dim() != 4 or pred_t.shape[-1] != 2 or gt_t.shape != (pred_t.shape[0], *pred_t.shape[2:]):
        raise ValueError(f"min_ade_fde_mr: expected pred (N, K, T, 2) and gt (N, T, 2), got "
                         f"{tuple(pred_t.shape)} and {tuple(gt_t.shape)}")
    if miss not in MISS_RULES:
        raise ValueError(f"min_ade_fde_mr: miss must be one of {MISS_RULES}, got {miss!r}")
    if k < 1:
        raise ValueError(f"min_ade_fde_mr: k must be >= 1, got {k}")
    N, K = pred_t.shape[:2]
    if not pred_t.is_floating_point():
        pred_t = pred_t.double()
    gt_t = gt_t.to(pred_t.dtype)
    err = displacement_errors(pred_t, gt_t[:, None].expand_as(pred_t))  # (N, K, T)
    ade, fde, worst = err.mean(-1), err[..., -1], err.amax(-1)  # (N, K) each
    k = min(k, K)
    p = None
    if probs is not None:
        p = torch.as_tensor(probs, device=pred_t.device).to(pred_t.dtype)
        if p.shape != (N, K):
            raise ValueError(f"min_ade_fde_mr: probs must be (N, K) = ({N}, {K}), got "
                             f"{tuple(p.shape)}")
        # Value check on the host only: on a GPU it would cost a sync per call (validation).
        if p.device.type == "cpu" and not bool(((p >= 0) & torch.isfinite(p)).all()):
            raise ValueError("min_ade_fde_mr: probs must be finite and >= 0")
        rank = torch.sort(p, dim=-1, descending=True, stable=True).indices  # (N, K)
        top = torch.zeros_like(p, dtype=torch.bool).scatter_(1, rank[:, :k], True)
    else:
        top = torch.zeros(N, K, dtype=torch.bool, device=pred_t.device)
        top[:, :k] = True
    inf = torch.tensor(float("inf"), dtype=pred_t.dtype, device=pred_t.device)
    fde_top = torch.where(top, fde, inf)
    out = {"minADE": torch.where(top, ade, inf).amin(-1), "minFDE": fde_top.amin(-1)}
    if miss == "final":
        out["MR"] = (out["minFDE"] > threshold).to(pred_t.dtype)
    else:
        out["MR"] = (torch.where(top, worst, inf).amin(-1) >= threshold).to(pred_t.dtype)
    if p is not None:
        best = fde_top.argmin(-1, keepdim=True)  # the first minimum, in mode order
        p_best = (p / p.sum(-1, keepdim=True)).gather(1, best).squeeze(1)
        out["brier_minFDE"] = out["minFDE"] + (1 - p_best) ** 2
    if reduce:
        out = {name: v.mean() for name, v in out.items()}
    return {name: v.cpu().numpy() for name, v in out.items()} if as_numpy else out
