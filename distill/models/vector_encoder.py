"""Polyline encoder (Argoverse 2), VectorNet-style: each polyline's points go through a shared
MLP and are max-pooled into one token, then self-attention across the polylines of a sample.

    polylines (B, P, L, F), point_mask (B, P, L) --point MLP, max over L--> (B, P, d)
    --transformer encoder over P (padded polylines masked)--> tokens (B, P, d), padding (B, P)
"""
from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig


class VectorEncoder(nn.Module):
    """forward((polylines (B, P, L, F), point_mask (B, P, L) bool)) -> tokens (B, P, d) and
    the padding mask (B, P), True where a polyline has no valid point."""

    def __init__(self, cfg: ModelConfig, attention_layers: int = 2):
        super().__init__()
        d = cfg.d_model
        self.point_mlp = nn.Sequential(
            nn.Linear(cfg.polyline_features, d), nn.LayerNorm(d), nn.ReLU(),
            nn.Linear(d, d), nn.LayerNorm(d), nn.ReLU())
        self.polyline_mlp = nn.Sequential(nn.Linear(d, d), nn.LayerNorm(d))
        layer = nn.TransformerEncoderLayer(d, cfg.num_heads, cfg.ffn_dim, cfg.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.attention = nn.TransformerEncoder(layer, attention_layers,
                                               enable_nested_tensor=False)

    def forward(self, scene: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor,
                                                                          torch.Tensor]:
        polylines, point_mask = scene
        x = self.point_mlp(polylines)  # (B, P, L, d)
        x = x.masked_fill(~point_mask[..., None], float("-inf")).amax(2)  # (B, P, d)
        padding = ~point_mask.any(-1)  # (B, P)
        x = self.polyline_mlp(x.masked_fill(padding[..., None], 0.0))
        return self.attention(x, src_key_padding_mask=padding), padding
