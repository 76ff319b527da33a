"""Fixed 2-D sine-cosine position embeddings of feature-map tokens (camera and raster)."""
from __future__ import annotations

import torch


def sincos_2d(h: int, w: int, dim: int, device=None) -> torch.Tensor:
    """(h*w, dim) position embedding, row-major over (h, w): [sin y, cos y, sin x, cos x]."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter)
    y, x = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                          torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    y = y.reshape(-1, 1) * omega  # (h*w, dim/4)
    x = x.reshape(-1, 1) * omega
    return torch.cat([y.sin(), y.cos(), x.sin(), x.cos()], dim=1)
