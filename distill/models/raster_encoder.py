"""Bird's-eye raster encoder (nuScenes): a torchvision ResNet over the devkit's RGB raster, its
last feature map flattened into memory tokens with 2-D sine-cosine positions.

    raster (B, 3, H, W) --trunk--> (B, C, H/32, W/32) --1x1 conv--> (B, h*w, d)
"""
from __future__ import annotations

import torch
from torch import nn

from .backbone import ResNetTrunk
from .config import ModelConfig
from .positions import sincos_2d


class RasterEncoder(nn.Module):
    """forward(raster (B, C, H, W)) -> tokens (B, h*w, d), no padding (mask None)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        # The same trunk as the cameras' with a 3-channel stem, so --backbone-weights loads
        # 2-D ImageNet weights into it as they are.
        self.trunk = ResNetTrunk(cfg.backbone, cfg.raster_channels, cfg.grad_checkpointing)
        self.proj = nn.Conv2d(self.trunk.out_channels, cfg.d_model, kernel_size=1)

    def forward(self, raster: torch.Tensor) -> tuple[torch.Tensor, None]:
        x = self.proj(self.trunk(raster))  # (B, d, h, w)
        h, w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)  # (B, h*w, d)
        return x + sincos_2d(h, w, x.shape[-1], x.device).to(x.dtype), None
