"""Run-time choices of the trainer: device, seeds, the model config from flags, the optimizer,
frozen BatchNorm."""
from __future__ import annotations

import random

import numpy as np
import torch
from torch import nn

from ..datasets import benchmark_model_fields
from ..models import get_model_config
from .config import ConfigError, RunConfig


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available (use --device cpu/auto)")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def model_config(config: RunConfig):
    return get_model_config(
        config.model_size,
        output="direct" if config.no_unicycle else "unicycle",
        discrete_actions=config.discrete_actions,
        num_action_bins=config.num_action_bins,
        num_modes=config.num_modes,
        predict_scale=config.multimodal_loss == "nll",
        aux_xy=config.aux_xy_weight > 0,
        input_type=config.input_type,
        **benchmark_model_fields(config.benchmark),
    )


def optimizer_for(model: nn.Module, lr: float, weight_decay: float, device: torch.device,
                  lr_on_device: bool = False):
    """Fused AdamW (one kernel per group, CPU and CUDA; its ``found_inf`` gates non-finite
    steps, see guard.py); no weight decay on biases and normalization weights (1-D tensors).
    ``lr_on_device``: the learning rate is a device tensor, updated in place (CUDA graphs)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    if lr_on_device:
        lr = torch.tensor(lr, device=device)
    return torch.optim.AdamW(groups, lr=lr, fused=True)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        if torch.is_tensor(g["lr"]):
            g["lr"].fill_(lr)  # in place: a captured graph reads this tensor
        else:
            g["lr"] = lr


def freeze_batchnorm(model: nn.Module) -> None:
    """BatchNorm layers in eval mode: running statistics stay as they are."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
