"""A batch through a student: the student's inputs from the batch (scene, ego-history features,
speed at t0), and its heads decoded into a ``Plan`` of K trajectory modes (the unicycle rollout
of its actions, or its direct poses). The training step, validation and evaluation all go
through ``student_plan``."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..kinematics import ActionNormalization, speed_at_t0
from ..multimodal import most_probable, take_mode
from ..ops import unicycle_rollout
from .config import ModelConfig
from .student import DIRECT_SCALE, history_input


@dataclass
class Plan:
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

    @property
    def aux_xy(self) -> Tensor | None:
        """(B, K, T, 2) metres: the auxiliary direct head's positions (``--aux-xy-weight``, in
        training only); None without it."""
        raw = self.heads.get("aux_xy")
        return None if raw is None else raw * DIRECT_SCALE


def scene_input(batch: dict, cfg: ModelConfig):
    """The batch's scene input for ``cfg.input_type`` (see ``distill.models.student.Student``)."""
    if cfg.input_type == "camera":
        return batch["frames"]
    if cfg.input_type == "raster":
        return batch["raster"]
    return batch["polylines"], batch["polyline_mask"]


def student_inputs(batch: dict, cfg: ModelConfig) -> tuple:
    """(scene, history (B, S, 4), v0 (B,)): what ``Student.forward`` takes, from a batch; v0 is
    estimated from the history by ``cfg.kinematics``' estimator, in the batch's dtype."""
    xyz, rot = batch["ego_history_xyz"], batch["ego_history_rot"]
    return (scene_input(batch, cfg), history_input(xyz, rot),
            speed_at_t0(cfg.kinematics, xyz, rot, cfg.dt))


def student_plan(model, batch: dict, cfg: ModelConfig, stats: ActionNormalization) -> Plan:
    """The model's plan for the batch: its heads, decoded into K trajectory modes."""
    return plan_from_inputs(model, *student_inputs(batch, cfg), cfg, stats)


def plan_from_inputs(model, scene, history: Tensor, v0: Tensor, cfg: ModelConfig,
                     stats: ActionNormalization) -> Plan:
    """``student_plan`` from the student's inputs (``student_inputs``' three), for a caller
    whose v0 comes from elsewhere: an exported student whose graph cannot hold the estimator
    (``distill.deploy``)."""
    heads = model(scene, history, v0)
    if cfg.output == "direct":
        d = heads["direct"]  # (B, K, T, 4)
        return Plan(d[..., :2] * DIRECT_SCALE, torch.atan2(d[..., 2], d[..., 3]), None, heads)
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
    return Plan(torch.stack([x, y], -1).unflatten(0, (-1, K)), yaw.unflatten(0, (-1, K)),
                per_mode, heads)
