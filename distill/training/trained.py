"""A trained student read back from a checkpoint, ready to plan: the weights the run selected
(the EMA's when it kept one), its model config, action normalisation and run config. What
``distill.evaluate`` and the served policy (``distill.serving``) load."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..kinematics import ActionNormalization
from ..models import build_student, get_model_config
from ..models.config import ModelConfig
from . import checkpoint
from .args import parser_defaults
from .config import RunConfig


@dataclass
class TrainedStudent:
    model: torch.nn.Module  # in eval mode, on the device it was loaded to
    cfg: ModelConfig
    stats: ActionNormalization  # on the same device
    config: RunConfig  # the run that trained it
    state: dict  # the whole checkpoint

    @property
    def weights(self) -> str:
        """Which weights were loaded: "ema" or "model"."""
        return "ema" if self.state["ema"] is not None else "model"


def load_student(path, device: torch.device) -> TrainedStudent:
    """The student of checkpoint ``path`` on ``device``; ``checkpoint.CheckpointError`` (one
    line naming the file) for a file that is not a distill checkpoint or whose weights do not
    fit its own model config."""
    state = checkpoint.load(path)
    config = RunConfig.from_dict(state["config"], parser_defaults())
    try:
        cfg = get_model_config(config.model_size, **{
            k: v for k, v in state["model_config"].items() if k != "name"})
        model = build_student(config.model, cfg)
        model.load_state_dict(state["ema"] if state["ema"] is not None else state["model"])
    except (ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0]
        raise checkpoint.CheckpointError(
            f"{path}: its weights do not build a {config.model} {config.model_size} student "
            f"({first})") from None
    stats = ActionNormalization.from_dict(state["action_stats"]).to(device)
    return TrainedStudent(model.to(device).eval(), cfg, stats, config, state)
