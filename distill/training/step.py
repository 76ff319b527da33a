"""One forward pass of a student on a batch: model inputs, decoding its heads into K trajectory
modes (unicycle rollout of its actions, or its direct poses), the loss terms and the metrics."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .. import losses
from ..kinematics import ActionStats, estimate_v0
from ..metrics import min_ade_fde_mr, trajectory_metrics
from ..models import ModelConfig
from ..models.student import DIRECT_SCALE, history_input
from ..multimodal import (best_mode, laplace_mixture_nll, mode_cross_entropy, most_probable,
                          take_mode)
from ..ops import info_nce, unicycle_rollout


@dataclass
class LossWeights:
    yaw: float
    action: float  # continuous: MSE on normalized actions; discrete: cross-entropy
    reasoning: float  # lambda of the current epoch (warmed up by the trainer)
    temperature: float
    label_smoothing: float
    multimodal: str = "wta"  # "wta" or "nll" (distill.multimodal)


@dataclass
class Prediction:
    modes_xy: Tensor  # (B, K, T, 2) metres, ego frame at t0
    modes_yaw: Tensor  # (B, K, T) radians
    actions: Tensor | None  # (B, K, T, 2) acceleration, curvature (unicycle modes)
    heads: dict  # the model's raw outputs, "mode_logits" (B, K) among them

    @property
    def probs(self) -> Tensor:
        """(B, K) mode probabilities."""
        return self.heads["mode_logits"].softmax(-1)

    @property
    def xy(self) -> Tensor:
        """(B, T, 2) the most probable mode (the only one when K = 1)."""
        return take_mode(self.modes_xy, most_probable(self.heads["mode_logits"]))

    @property
    def yaw(self) -> Tensor:
        """(B, T) heading of the most probable mode."""
        return take_mode(self.modes_yaw, most_probable(self.heads["mode_logits"]))


def scene_input(batch: dict, cfg: ModelConfig):
    """The batch's scene input for ``cfg.input_type`` (see ``distill.models.student.Student``)."""
    if cfg.input_type == "camera":
        return batch["frames"]
    if cfg.input_type == "raster":
        return batch["raster"]
    return batch["polylines"], batch["polyline_mask"]


def predict(model, batch: dict, cfg: ModelConfig, stats: ActionStats) -> Prediction:
    v0 = estimate_v0(batch["ego_history_xyz"], cfg.dt)
    heads = model(scene_input(batch, cfg), history_input(batch["ego_history_xyz"],
                                                         batch["ego_history_rot"]), v0)
    if cfg.output == "direct":
        d = heads["direct"]  # (B, K, T, 4)
        return Prediction(d[..., :2] * DIRECT_SCALE, torch.atan2(d[..., 2], d[..., 3]), None,
                          heads)
    if cfg.discrete_actions:
        probs = heads["action_logits"].softmax(-1)  # (B, K, T, 2, bins)
        centers = stats.bin_centers(cfg.num_action_bins).to(probs)  # (bins, 2)
        actions = (probs * centers.T).sum(-1)  # expected action per dimension (B, K, T, 2)
    else:
        actions = stats.denormalize(heads["actions"])  # (B, K, T, 2)
    per_mode, K = actions, actions.shape[1]
    # Modes folded into the batch for the rollout: actions (B*K, T, 2), v0 (B*K,).
    actions, v0 = per_mode.flatten(0, 1), v0.repeat_interleave(K)
    x, y, yaw = unicycle_rollout(actions[..., 0], actions[..., 1], v0, cfg.dt)
    return Prediction(torch.stack([x, y], -1).unflatten(0, (-1, K)), yaw.unflatten(0, (-1, K)),
                      per_mode, heads)


def loss_terms(pred: Prediction, batch: dict, target_actions: Tensor, cfg: ModelConfig,
               stats: ActionStats, w: LossWeights,
               extra_teacher: tuple[Tensor, Tensor] | None = None) -> dict[str, Tensor]:
    """Scalar terms ``pos``, ``yaw``, ``action``, ``mode``, ``reasoning`` and their weighted
    ``loss``. ``yaw`` and ``action`` supervise the best mode (least ADE; the only one when
    K = 1). ``pos`` and ``mode`` by ``w.multimodal``: "wta" regresses the best mode's positions
    and trains the mode logits to name it (cross-entropy, 0 when K = 1); "nll" is the Laplace
    mixture negative log-likelihood of the truth (which trains the logits itself; mode = 0).
    ``extra_teacher``: more reasoning negatives, teacher rows (M, D) and sentence ids (M,)
    appended after the batch's own (other ranks' rows, the --reasoning-negatives queue)."""
    gt_xy = batch["trajectory_xyz"][..., :2]
    best = best_mode(pred.modes_xy, gt_xy)  # (B,)
    zero = pred.modes_xy.new_zeros(())
    if w.multimodal == "nll":
        pos = laplace_mixture_nll(pred.modes_xy, pred.heads["scale"], pred.heads["mode_logits"],
                                  gt_xy)
        mode = zero
    else:
        pos = losses.position_loss(take_mode(pred.modes_xy, best), gt_xy)
        mode = mode_cross_entropy(pred.heads["mode_logits"], best)
    terms = {
        "pos": pos,
        "yaw": losses.yaw_loss(take_mode(pred.modes_yaw, best), batch["trajectory_yaw"]),
        "action": zero,
        "mode": mode,
        "reasoning": zero,
    }
    action_weight = w.action
    if cfg.output == "unicycle" and cfg.discrete_actions:
        bins = stats.to_bins(target_actions, cfg.num_action_bins)
        terms["action"] = losses.discrete_action_loss(
            take_mode(pred.heads["action_logits"], best), bins, w.label_smoothing)
        action_weight = w.action or 1.0
    elif cfg.output == "unicycle":
        terms["action"] = losses.action_loss(take_mode(pred.heads["actions"], best),
                                             stats.normalize(target_actions))
    if "embedding" in pred.heads:
        teacher, ids = batch["coc_embedding"], batch["coc_id"]
        if extra_teacher is not None:
            teacher = torch.cat([teacher, extra_teacher[0].to(teacher.dtype)])
            ids = torch.cat([ids, extra_teacher[1]])
        terms["reasoning"] = info_nce(pred.heads["embedding"], teacher, w.temperature,
                                      teacher_ids=ids)
    terms["loss"] = (terms["pos"] + w.yaw * terms["yaw"] + action_weight * terms["action"]
                     + terms["mode"] + w.reasoning * terms["reasoning"])
    return terms


MODE_KS = (1, 6)  # minADE_k, minFDE_k, MR_k reported for these k (the benchmarks' k)


def sample_metrics(pred: Prediction, batch: dict, dt: float,
                   miss: str = "final") -> dict[str, Tensor]:
    """Per-sample (B,) ade, fde, ade_1s/2s/3s, yaw_err_deg of the most probable mode, then
    minADE_k, minFDE_k, MR_k for k in MODE_KS over the top-k modes by probability (``miss``:
    the miss rule of ``distill.metrics.min_ade_fde_mr``) and brier_minFDE_6."""
    gt_xy = batch["trajectory_xyz"][..., :2]
    out = trajectory_metrics(pred.xy, gt_xy, pred.yaw, batch["trajectory_yaw"], dt)
    probs = pred.probs.detach()
    for k in MODE_KS:
        multi = min_ade_fde_mr(pred.modes_xy.detach(), gt_xy, probs, k=k, miss=miss,
                               reduce=False)
        out.update({f"{name}_{k}": multi[name] for name in ("minADE", "minFDE", "MR")})
    out[f"brier_minFDE_{MODE_KS[-1]}"] = multi["brier_minFDE"]
    return out
