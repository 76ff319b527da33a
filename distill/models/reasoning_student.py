"""The reasoning student: the shared Student plus an embedding aligned with the teacher's
chain-of-causation sentence embedding (all-MiniLM-L6-v2, 384-d)."""
from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .student import Student


class ReasoningStudent(Student):
    """Adds "embedding" (B, embed_dim): mean of all decoder outputs plus the history token
    -> LayerNorm -> Linear. Not normalized: the loss normalizes it."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.embed_head = nn.Sequential(nn.LayerNorm(cfg.d_model),
                                        nn.Linear(cfg.d_model, cfg.embed_dim))

    def predict(self, x: torch.Tensor, hist: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().predict(x, hist)
        out["embedding"] = self.embed_head(x.mean((1, 2)) + hist)  # (B, embed_dim)
        return out
