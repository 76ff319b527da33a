"""K trajectory hypotheses per sample: mode selection and the two multimodal losses.

Shapes: predicted positions ``(B, K, T, 2)`` metres, mode logits ``(B, K)``, truth ``(B, T, 2)``.

- ``wta`` (winner takes all): only the mode closest to the truth (least ADE) is regressed, and
  the mode logits learn to name it (cross-entropy). The other modes are free to cover other
  futures.
- ``nll``: the negative log-likelihood of the truth under a mixture of K Laplace distributions,
  one per mode, with the softmax of the mode logits as mixture weights and a learned scale per
  mode, step and axis (the student's ``scale`` head). Every mode gets gradient, weighted by its
  posterior responsibility for the truth.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["LOSSES", "best_mode", "laplace_mixture_nll", "mode_cross_entropy", "most_probable",
           "take_mode"]

LOSSES = ("wta", "nll")


def _check(pred_xy: Tensor, gt_xy: Tensor) -> None:
    if pred_xy.dim() != 4 or pred_xy.shape[-1] != 2 or gt_xy.shape != (
            pred_xy.shape[0], *pred_xy.shape[2:]):
        raise ValueError(f"expected pred_xy (B, K, T, 2) and gt_xy (B, T, 2), got "
                         f"{tuple(pred_xy.shape)} and {tuple(gt_xy.shape)}")


def best_mode(pred_xy: Tensor, gt_xy: Tensor) -> Tensor:
    """long ``(B,)``: the mode of least ADE (mean displacement over the T steps) per sample;
    the first on ties. No gradient flows through the choice."""
    _check(pred_xy, gt_xy)
    with torch.no_grad():
        return torch.linalg.vector_norm(pred_xy - gt_xy[:, None], dim=-1).mean(-1).argmin(-1)


def most_probable(mode_logits: Tensor) -> Tensor:
    """long ``(B,)``: the mode of largest logit (the first on ties)."""
    return mode_logits.argmax(-1)


def take_mode(x: Tensor, mode: Tensor) -> Tensor:
    """``x[b, mode[b]]`` for x ``(B, K, ...)`` and mode ``(B,)`` -> ``(B, ...)``."""
    index = mode.view(-1, *([1] * (x.dim() - 1))).expand(-1, 1, *x.shape[2:])
    return x.gather(1, index).squeeze(1)


def mode_cross_entropy(mode_logits: Tensor, target: Tensor) -> Tensor:
    """Mean cross-entropy of the mode logits ``(B, K)`` against the target mode ``(B,)``;
    0 when K = 1 (nothing to choose)."""
    if mode_logits.shape[-1] == 1:
        return mode_logits.new_zeros(())
    return F.cross_entropy(mode_logits, target)


def laplace_mixture_nll(pred_xy: Tensor, scale: Tensor, mode_logits: Tensor,
                        gt_xy: Tensor) -> Tensor:
    """Negative log-likelihood of the truth under the mixture, per coordinate.

    Args:
        pred_xy: ``(B, K, T, 2)`` the location mu of each mode's Laplace distributions.
        scale: ``(B, K, T, 2)`` their scales b > 0, metres.
        mode_logits: ``(B, K)``; mixture weights pi = softmax(mode_logits).
        gt_xy: ``(B, T, 2)``.

    Returns:
        mean over the batch of -log sum_k pi_k prod_{t, axis} Laplace(gt | mu_k, b_k), divided
        by the 2T coordinates (so its scale does not grow with the horizon), with
        log Laplace(g | mu, b) = -log(2 b) - |g - mu| / b. Computed with logsumexp.
    """
    _check(pred_xy, gt_xy)
    if scale.shape != pred_xy.shape or mode_logits.shape != pred_xy.shape[:2]:
        raise ValueError(f"laplace_mixture_nll: scale {tuple(scale.shape)} must be "
                         f"{tuple(pred_xy.shape)} and mode_logits {tuple(mode_logits.shape)} "
                         f"{tuple(pred_xy.shape[:2])}")
    log_density = -torch.log(2 * scale) - (gt_xy[:, None] - pred_xy).abs() / scale
    log_mode = log_density.sum((-1, -2))  # (B, K)
    log_mix = torch.logsumexp(F.log_softmax(mode_logits, -1) + log_mode, dim=-1)  # (B,)
    return -log_mix.mean() / (2 * pred_xy.shape[2])

