"""One forward pass of a student on a batch: model inputs, decoding its heads into a trajectory
(unicycle rollout of its actions, or its direct poses), the loss terms and the metrics."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .. import losses
from ..kinematics import ActionStats, estimate_v0
from ..metrics import trajectory_metrics
from ..models import ModelConfig
from ..models.student import DIRECT_SCALE, history_input
from ..ops import info_nce, unicycle_rollout
from .negatives import NegativeQueue


@dataclass
class LossWeights:
    yaw: float
    action: float  # continuous: MSE on normalized actions; discrete: cross-entropy
    reasoning: float  # lambda of the current epoch (warmed up by the trainer)
    temperature: float
    label_smoothing: float


@dataclass
class Prediction:
    xy: Tensor  # (B, T, 2) metres, ego frame at t0
    yaw: Tensor  # (B, T) radians
    actions: Tensor | None  # (B, T, 2) acceleration, curvature (unicycle modes)
    heads: dict  # the model's raw outputs


def predict(model, batch: dict, cfg: ModelConfig, stats: ActionStats) -> Prediction:
    v0 = estimate_v0(batch["ego_history_xyz"], cfg.dt)
    heads = model(batch["frames"], history_input(batch["ego_history_xyz"],
                                                 batch["ego_history_rot"]), v0)
    if cfg.output == "direct":
        d = heads["direct"][:, 0]  # (B, T, 4), the single mode
        return Prediction(d[..., :2] * DIRECT_SCALE, torch.atan2(d[..., 2], d[..., 3]), None,
                          heads)
    if cfg.discrete_actions:
        probs = heads["action_logits"][:, 0].softmax(-1)  # (B, T, 2, bins)
        centers = stats.bin_centers(cfg.num_action_bins).to(probs)  # (bins, 2)
        actions = (probs * centers.T).sum(-1)  # expected action per dimension (B, T, 2)
    else:
        actions = stats.denormalize(heads["actions"][:, 0])
    x, y, yaw = unicycle_rollout(actions[..., 0], actions[..., 1], v0, cfg.dt)
    return Prediction(torch.stack([x, y], -1), yaw, actions, heads)


def loss_terms(pred: Prediction, batch: dict, target_actions: Tensor, cfg: ModelConfig,
               stats: ActionStats, w: LossWeights,
               negatives: NegativeQueue | None = None) -> dict[str, Tensor]:
    """Scalar terms ``pos``, ``yaw``, ``action``, ``reasoning`` and their weighted ``loss``."""
    zero = pred.xy.new_zeros(())
    terms = {
        "pos": losses.position_loss(pred.xy, batch["trajectory_xyz"][..., :2]),
        "yaw": losses.yaw_loss(pred.yaw, batch["trajectory_yaw"]),
        "action": zero,
        "reasoning": zero,
    }
    action_weight = w.action
    if cfg.output == "unicycle" and cfg.discrete_actions:
        bins = stats.to_bins(target_actions, cfg.num_action_bins)
        terms["action"] = losses.discrete_action_loss(pred.heads["action_logits"][:, 0], bins,
                                                      w.label_smoothing)
        action_weight = w.action or 1.0
    elif cfg.output == "unicycle":
        terms["action"] = losses.action_loss(pred.heads["actions"][:, 0],
                                             stats.normalize(target_actions))
    if "embedding" in pred.heads:
        teacher, ids = batch["coc_embedding"], batch["coc_id"]
        if negatives is not None:  # --reasoning-negatives queue: past rows after the batch's
            teacher, ids = negatives.extend(teacher, ids)
        terms["reasoning"] = info_nce(pred.heads["embedding"], teacher, w.temperature,
                                      teacher_ids=ids)
    terms["loss"] = (terms["pos"] + w.yaw * terms["yaw"] + action_weight * terms["action"]
                     + w.reasoning * terms["reasoning"])
    return terms


def sample_metrics(pred: Prediction, batch: dict, dt: float) -> dict[str, Tensor]:
    """Per-sample (B,) ade, fde, ade_1s/2s/3s, yaw_err_deg."""
    return trajectory_metrics(pred.xy, batch["trajectory_xyz"][..., :2], pred.yaw,
                              batch["trajectory_yaw"], dt)
