"""The camera student: ResNet tokens of 4 cameras + an ego-history token, read by a transformer
decoder with one learned query per (mode, future step).

    frames  (B, 4, 12, H, W) --trunk--> (B*4, C, h, w) --1x1 conv--> (B, 4*h*w, d)  camera tokens
    history (B, 16, 4), v0 (B,) --MLP--> (B, 1, d)                                  history token
    queries (K*T, d) = step embedding (T, d) + mode embedding (K, d)
    decoder(queries, memory=[history token; camera tokens]) -> (B, K, T, d) -> heads

No bird's-eye-view grid: camera tokens carry a learned camera embedding and a 2-D sine-cosine
position computed for (h, w) on the fly, so any input resolution the ResNet accepts works.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .backbone import ResNetTrunk
from .config import ModelConfig

DIRECT_SCALE = 10.0  # metres per unit of the direct head's x, y (and of the history input's x, y)
SPEED_SCALE = 10.0  # m/s per unit of the v0 input


def history_input(xyz: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """Batch ego history (B, S, 3), (B, S, 3, 3) -> the student's input (B, S, 4):
    (x, y, sin yaw, cos yaw) in metres, ego frame at t0; yaw = atan2(R[1, 0], R[0, 0])."""
    yaw = torch.atan2(rot[..., 1, 0], rot[..., 0, 0])
    return torch.stack([xyz[..., 0], xyz[..., 1], yaw.sin(), yaw.cos()], dim=-1)


def sincos_2d(h: int, w: int, dim: int, device=None) -> torch.Tensor:
    """(h*w, dim) position embedding, row-major over (h, w): [sin y, cos y, sin x, cos x]."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter)
    y, x = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                          torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    y = y.reshape(-1, 1) * omega  # (h*w, dim/4)
    x = x.reshape(-1, 1) * omega
    return torch.cat([y.sin(), y.cos(), x.sin(), x.cos()], dim=1)


class Student(nn.Module):
    """forward(frames (B, 4, 12, H, W), history (B, 16, 4), v0 (B,)) -> dict of
        "actions"        (B, K, T, 2)        unicycle: normalized (acceleration, curvature), or
        "action_logits"  (B, K, T, 2, bins)  unicycle with discrete_actions, or
        "direct"         (B, K, T, 4)        direct: (x, y, sin yaw, cos yaw), raw
        "mode_logits"    (B, K)              always
    with K = cfg.num_modes and T = cfg.horizon; x, y of "direct" are in units of DIRECT_SCALE m.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d, K, T = cfg.d_model, cfg.num_modes, cfg.horizon

        # Camera tokens.
        self.trunk = ResNetTrunk(cfg.backbone, cfg.frame_channels, cfg.grad_checkpointing)
        self.camera_proj = nn.Conv2d(self.trunk.out_channels, d, kernel_size=1)
        self.camera_embed = nn.Parameter(torch.randn(cfg.num_cameras, d) * 0.02)
        # History token: flattened (x, y, sin, cos) per past pose, plus v0.
        # Inputs: the poses, the speed of each step between them and v0 (see history_token).
        self.history_mlp = nn.Sequential(
            nn.Linear(cfg.history_steps * 5, d), nn.GELU(), nn.Linear(d, d))
        self.memory_norm = nn.LayerNorm(d)  # norm_first layers do not normalize the memory

        # Queries and decoder.
        self.step_embed = nn.Parameter(torch.randn(T, d) * 0.02)
        self.mode_embed = nn.Parameter(torch.randn(K, d) * 0.02)
        layer = nn.TransformerDecoderLayer(d, cfg.num_heads, cfg.ffn_dim, cfg.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, cfg.num_layers, norm=nn.LayerNorm(d))

        # Heads: only the configured trajectory output, plus the mode logits.
        if cfg.output == "direct":
            self.direct_head = nn.Linear(d, 4)
        elif cfg.discrete_actions:
            self.action_head = nn.Linear(d, 2 * cfg.num_action_bins)
        else:
            self.action_head = nn.Linear(d, 2)
        if cfg.output == "unicycle":
            # Start at the mean action of the training labels (zero normalized actions, or
            # uniform token logits whose expectation is the middle of the bins): the first
            # rollouts are the average manoeuvre from the ego's own speed instead of noise.
            nn.init.zeros_(self.action_head.weight)
            nn.init.zeros_(self.action_head.bias)
        self.mode_head = nn.Linear(d, 1)

    @classmethod
    def from_model_config(cls, cfg: ModelConfig) -> "Student":
        return cls(cfg)

    def camera_tokens(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, N, 12, H, W) -> (B, N*h*w, d), cameras folded into the batch for the trunk."""
        B, N = frames.shape[:2]
        x = self.camera_proj(self.trunk(frames.flatten(0, 1)))  # (B*N, d, h, w)
        h, w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)  # (B*N, h*w, d)
        x = x + sincos_2d(h, w, x.shape[-1], x.device).to(x.dtype)
        x = x.view(B, N, h * w, -1) + self.camera_embed[:, None]
        return x.flatten(1, 2)

    def history_token(self, history: torch.Tensor, v0: torch.Tensor) -> torch.Tensor:
        """(B, S, 4), (B,) -> (B, d). Besides the poses (x, y scaled by 1/DIRECT_SCALE), the
        speed over each of the S-1 steps and v0 (scaled by 1/SPEED_SCALE): speed changes are
        the clearest sign of what the ego is already doing, and as second differences of the
        poses a network finds them slowly (a linear fit on them alone beats the mean manoeuvre
        by half on the built-in world)."""
        scale = history.new_tensor([1 / DIRECT_SCALE, 1 / DIRECT_SCALE, 1.0, 1.0])
        speeds = (history[:, 1:, :2] - history[:, :-1, :2]).norm(dim=-1) / self.cfg.dt
        x = torch.cat([(history * scale).flatten(1), speeds / SPEED_SCALE,
                       v0[:, None] / SPEED_SCALE], dim=1)
        return self.history_mlp(x)

    def features(self, frames, history, v0) -> tuple[torch.Tensor, torch.Tensor]:
        """-> decoder outputs (B, K, T, d) and the history token (B, d)."""
        B, K, T = frames.shape[0], self.cfg.num_modes, self.cfg.horizon
        hist = self.history_token(history, v0)
        memory = self.memory_norm(torch.cat([hist[:, None], self.camera_tokens(frames)], dim=1))
        queries = (self.mode_embed[:, None] + self.step_embed[None]).flatten(0, 1)  # (K*T, d)
        # Every query starts from the ego's state: no attention search needed to find it.
        x = queries[None] + hist[:, None]  # (B, K*T, d)
        for layer in self.decoder.layers:
            if self.cfg.grad_checkpointing and self.training:
                x = checkpoint(layer, x, memory, use_reentrant=False)
            else:
                x = layer(x, memory)
        return self.decoder.norm(x).view(B, K, T, -1), hist

    def predict(self, x: torch.Tensor, hist: torch.Tensor) -> dict[str, torch.Tensor]:
        """Heads on the decoder outputs x (B, K, T, d) (and the history token, for subclasses)."""
        out = {"mode_logits": self.mode_head(x.mean(2)).squeeze(-1)}  # (B, K)
        if self.cfg.output == "direct":
            out["direct"] = self.direct_head(x)  # (B, K, T, 4)
        elif self.cfg.discrete_actions:
            out["action_logits"] = self.action_head(x).unflatten(-1, (2, -1))  # (B, K, T, 2, bins)
        else:
            out["actions"] = self.action_head(x)  # (B, K, T, 2)
        return out

    def forward(self, frames: torch.Tensor, history: torch.Tensor,
                v0: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.predict(*self.features(frames, history, v0))
