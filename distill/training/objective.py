"""The training objective: the weighted loss terms of a student's plan against the teacher's
labels and actions, and the loss weights of a point in the run (the reasoning weight warms up)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .. import losses
from ..kinematics import ActionNormalization
from ..models import ModelConfig
from ..models.plan import Plan
from ..multimodal import best_mode, laplace_mixture_nll, mode_cross_entropy, take_mode
from ..ops import info_nce
from .config import RunConfig

SUM_KEYS = ("loss", "pos", "yaw", "action", "reasoning")  # train_* / val_* means in the logs


@dataclass
class LossWeights:
    yaw: float
    action: float  # continuous: MSE on normalized actions; discrete: cross-entropy
    reasoning: float  # lambda of the current epoch (warmed up by the trainer)
    temperature: float
    label_smoothing: float
    multimodal: str = "wta"  # "wta" or "nll" (distill.multimodal)
    aux_xy: float = 0.0  # the auxiliary direct (x, y) head's position loss (--aux-xy-weight)


def loss_weights(config: RunConfig, epoch: float) -> LossWeights:
    """The weights at ``epoch`` (fractional) of a run."""
    return LossWeights(yaw=config.yaw_weight, action=config.action_weight,
                       reasoning=losses.reasoning_weight(epoch, config.reasoning_weight,
                                                         config.reasoning_warmup_epochs),
                       temperature=config.temperature, label_smoothing=config.label_smoothing,
                       multimodal=config.multimodal_loss, aux_xy=config.aux_xy_weight)


def loss_terms(plan: Plan, batch: dict, cfg: ModelConfig, stats: ActionNormalization, w: LossWeights,
               extra_teacher: tuple[Tensor, Tensor] | None = None) -> dict[str, Tensor]:
    """Scalar terms ``pos``, ``yaw``, ``action``, ``mode``, ``reasoning`` and their weighted
    ``loss``. ``yaw`` and ``action`` supervise the best mode (least ADE; the only one when
    K = 1); the action target is ``batch["action_target"]`` (B, T, 2). ``pos`` and ``mode`` by
    ``w.multimodal``: "wta" regresses the best mode's positions and trains the mode logits to
    name it (cross-entropy, 0 when K = 1); "nll" is the Laplace mixture negative
    log-likelihood of the truth (which trains the logits itself; mode = 0). ``extra_teacher``:
    more reasoning negatives, teacher rows (M, D) and sentence ids (M,) appended after the
    batch's own (other ranks' rows, the --reasoning-negatives queue)."""
    gt_xy = batch["trajectory_xyz"][..., :2]
    best = best_mode(plan.modes_xy, gt_xy)  # (B,)
    zero = plan.modes_xy.new_zeros(())
    if w.multimodal == "nll":
        pos = laplace_mixture_nll(plan.modes_xy, plan.heads["scale"], plan.heads["mode_logits"],
                                  gt_xy)
        mode = zero
    else:
        pos = losses.position_loss(take_mode(plan.modes_xy, best), gt_xy)
        mode = mode_cross_entropy(plan.heads["mode_logits"], best)
    terms = {"pos": pos, "yaw": losses.yaw_loss(take_mode(plan.modes_yaw, best),
                                                 batch["trajectory_yaw"]),
             "action": zero, "mode": mode, "reasoning": zero}
    action_weight = w.action
    target_actions = batch["action_target"]
    if cfg.output == "unicycle" and cfg.discrete_actions:
        bins = stats.to_bins(target_actions, cfg.num_action_bins)
        terms["action"] = losses.discrete_action_loss(
            take_mode(plan.heads["action_logits"], best), bins, w.label_smoothing)
        action_weight = w.action or 1.0
    elif cfg.output == "unicycle":
        terms["action"] = losses.action_loss(take_mode(plan.heads["actions"], best),
                                             stats.normalize(target_actions))
    if "embedding" in plan.heads:
        teacher, ids = batch["coc_embedding"], batch["coc_id"]
        if extra_teacher is not None:
            teacher = torch.cat([teacher, extra_teacher[0].to(teacher.dtype)])
            ids = torch.cat([ids, extra_teacher[1]])
        terms["reasoning"] = info_nce(plan.heads["embedding"], teacher, w.temperature,
                                      teacher_ids=ids)
    terms["loss"] = (terms["pos"] + w.yaw * terms["yaw"] + action_weight * terms["action"]
                     + terms["mode"] + w.reasoning * terms["reasoning"])
    aux_xy = plan.aux_xy
    if aux_xy is not None:  # the best mode's direct (x, y), training only
        terms["loss"] = terms["loss"] + w.aux_xy * losses.position_loss(take_mode(aux_xy, best),
                                                                        gt_xy)
    return terms
