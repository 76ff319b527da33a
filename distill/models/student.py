"""The student: scene tokens + an ego-history token, read by a transformer decoder with one
learned query per (mode, future step).

    frames  (B, 4, 12, H, W) --trunk--> (B*4, C, h, w) --1x1 conv--> (B, 4*h*w, d)  camera tokens
    history (B, S, 4), v0 (B,) --MLP--> (B, 1, d)                                   history token
    queries (K*T, d) = step embedding (T, d) + mode embedding (K, d)
    decoder(queries, memory=[history token; scene tokens]) -> (B, K, T, d) -> heads

The scene tokens depend on ``cfg.input_type``: the cameras above (the default), or for the
benchmarks a bird's-eye raster (``RasterEncoder``) or polylines (``VectorEncoder``).
No bird's-eye-view grid for the cameras: camera tokens carry a learned camera embedding and a
2-D sine-cosine position computed for (h, w) on the fly, so any input resolution the ResNet
accepts works.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .backbone import ResNetTrunk
from .config import ModelConfig
from .positions import sincos_2d
from .raster_encoder import RasterEncoder
from .vector_encoder import VectorEncoder

DIRECT_SCALE = 10.0  # metres per unit of the direct head's x, y (and of the history input's x, y)
SPEED_SCALE = 10.0  # m/s per unit of the v0 input
SCALE_MIN = 0.01  # m, floor of the predicted Laplace scale: keeps the NLL finite on exact fits
# Mode anchors of the continuous unicycle head (K > 1): a learned normalized (acceleration,
# curvature) offset per mode and step. Mode k starts at the same curvature offset at every step,
# evenly spread over +-MODE_SPREAD std of the training labels' curvature, and learns from there.
# With the zero-initialized action head the K modes would otherwise start as one trajectory: on
# the built-in world after an epoch both losses left 6 such modes within 1% of the single mode's
# ADE (minADE_6 5.30 and 5.37 m vs ADE 5.35 m). Per step, not one offset per mode, so that a
# mode can learn a shape (straight, then a junction's turn): over three seeds on the held-out
# world, intersection minADE_6 22.9% below one mode's ADE instead of 18.1% (docs/learning.md).
MODE_SPREAD = 1.0
SCENE_ENCODERS = {"raster": RasterEncoder, "vector": VectorEncoder}


def history_input(xyz: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """Batch ego history (B, S, 3), (B, S, 3, 3) -> the student's input (B, S, 4):
    (x, y, sin yaw, cos yaw) in metres, ego frame at t0; yaw = atan2(R[1, 0], R[0, 0])."""
    yaw = torch.atan2(rot[..., 1, 0], rot[..., 0, 0])
    return torch.stack([xyz[..., 0], xyz[..., 1], yaw.sin(), yaw.cos()], dim=-1)


def per_step(anchor: torch.Tensor, horizon: int) -> torch.Tensor:
    """One anchor per mode (K, 2) -> the same anchor at each of ``horizon`` steps (K, T, 2)."""
    return anchor[:, None].expand(-1, horizon, -1).clone()


class Student(nn.Module):
    """forward(scene, history (B, S, 4), v0 (B,)) -> dict of
        "actions"        (B, K, T, 2)        unicycle: normalized (acceleration, curvature)
                                             (plus each mode's anchor when K > 1), or
        "action_logits"  (B, K, T, 2, bins)  unicycle with discrete_actions, or
        "direct"         (B, K, T, 4)        direct: (x, y, sin yaw, cos yaw), raw
        "mode_logits"    (B, K)              always
        "scale"          (B, K, T, 2)        with predict_scale: Laplace scale of x, y, metres
        "aux_xy"         (B, K, T, 2)        with aux_xy, in training: (x, y), raw
    with K = cfg.num_modes, T = cfg.horizon, S = cfg.history_steps; x, y of "direct" and
    "aux_xy" are in units of DIRECT_SCALE m. ``scene`` by cfg.input_type: "camera" frames
    (B, 4, 12, H, W); "raster" (B, 3, H, W); "vector" a tuple (polylines (B, P, L, F),
    point_mask (B, P, L)).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d, K, T = cfg.d_model, cfg.num_modes, cfg.horizon

        if cfg.input_type == "camera":  # camera tokens
            self.trunk = ResNetTrunk(cfg.backbone, cfg.frame_channels, cfg.grad_checkpointing)
            self.camera_proj = nn.Conv2d(self.trunk.out_channels, d, kernel_size=1)
            self.camera_embed = nn.Parameter(torch.randn(cfg.num_cameras, d) * 0.02)
        else:  # raster or polyline tokens
            self.scene_encoder = SCENE_ENCODERS[cfg.input_type](cfg)
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
        if cfg.output == "unicycle" and not cfg.discrete_actions and K > 1:
            curvature = torch.linspace(-MODE_SPREAD, MODE_SPREAD, K)
            self.mode_anchor = nn.Parameter(  # (K, T, 2)
                per_step(torch.stack([torch.zeros(K), curvature], -1), T))
        if cfg.aux_xy:
            self.aux_xy_head = nn.Linear(d, 2)
        # One mode has probability 1: no score head (DDP also needs every parameter used).
        self.mode_head = nn.Linear(d, 1) if K > 1 else None
        if cfg.predict_scale:
            self.scale_head = nn.Linear(d, 2)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Checkpoints written before the anchors were per step hold one (K, 2) anchor per
        mode: the same anchor at every step."""
        key = prefix + "mode_anchor"
        if key in state_dict and state_dict[key].dim() == 2:
            state_dict[key] = per_step(state_dict[key], self.cfg.horizon)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def per_step_optimizer_state(self, optimizer: torch.optim.Optimizer) -> None:
        """The same for an optimizer's moments of the anchors (resuming such a checkpoint)."""
        if not hasattr(self, "mode_anchor"):
            return
        state = optimizer.state.get(self.mode_anchor, {})
        for name, value in state.items():  # values replaced, keys kept: safe to iterate
            if torch.is_tensor(value) and value.dim() == 2:
                state[name] = per_step(value, self.cfg.horizon)

    @classmethod
    def from_model_config(cls, cfg: ModelConfig) -> "Student":
        return cls(cfg)

    @property
    def image_trunk(self) -> ResNetTrunk | None:
        """The ResNet that --backbone-weights loads into (cameras or raster; None for vectors)."""
        if self.cfg.input_type == "camera":
            return self.trunk
        return getattr(self.scene_encoder, "trunk", None)

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
        speeds = (history[:, 1:, :2] - history[:, :-1, :2]).norm(dim=-1) / self.cfg.dt
        poses = torch.cat([history[..., :2] * (1 / DIRECT_SCALE), history[..., 2:]], dim=-1)
        x = torch.cat([poses.flatten(1), speeds / SPEED_SCALE, v0[:, None] / SPEED_SCALE], dim=1)
        return self.history_mlp(x)

    def scene_tokens(self, scene) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> tokens (B, N, d) and a padding mask (B, N) (True = ignore) or None."""
        if self.cfg.input_type == "camera":
            return self.camera_tokens(scene), None
        return self.scene_encoder(scene)

    def features(self, scene, history, v0) -> tuple[torch.Tensor, torch.Tensor]:
        """-> decoder outputs (B, K, T, d) and the history token (B, d)."""
        B, K, T = history.shape[0], self.cfg.num_modes, self.cfg.horizon
        hist = self.history_token(history, v0)
        tokens, padding = self.scene_tokens(scene)
        memory = self.memory_norm(torch.cat([hist[:, None], tokens], dim=1))
        if padding is not None:  # the history token is never padding
            padding = torch.cat([padding.new_zeros(B, 1), padding], dim=1)
        queries = (self.mode_embed[:, None] + self.step_embed[None]).flatten(0, 1)  # (K*T, d)
        # Every query starts from the ego's state: no attention search needed to find it.
        x = queries[None] + hist[:, None]  # (B, K*T, d)
        for layer in self.decoder.layers:
            if self.cfg.grad_checkpointing and self.training:
                x = checkpoint(layer, x, memory, memory_key_padding_mask=padding,
                               use_reentrant=False)
            else:
                x = layer(x, memory, memory_key_padding_mask=padding)
        return self.decoder.norm(x).view(B, K, T, -1), hist

    def predict(self, x: torch.Tensor, hist: torch.Tensor) -> dict[str, torch.Tensor]:
        """Heads on the decoder outputs x (B, K, T, d) (and the history token, for subclasses)."""
        out = {"mode_logits": (self.mode_head(x.mean(2)).squeeze(-1) if self.mode_head else
                               x.new_zeros(x.shape[:2]))}  # (B, K)
        if self.cfg.output == "direct":
            out["direct"] = self.direct_head(x)  # (B, K, T, 4)
        elif self.cfg.discrete_actions:
            out["action_logits"] = self.action_head(x).unflatten(-1, (2, -1))  # (B, K, T, 2, bins)
        else:
            out["actions"] = self.action_head(x)  # (B, K, T, 2)
            if self.cfg.num_modes > 1:
                out["actions"] = out["actions"] + self.mode_anchor  # (K, T, 2)
        if self.cfg.predict_scale:
            out["scale"] = F.softplus(self.scale_head(x)) + SCALE_MIN  # (B, K, T, 2) metres
        if self.cfg.aux_xy and self.training:
            out["aux_xy"] = self.aux_xy_head(x)  # (B, K, T, 2), units of DIRECT_SCALE m
        return out

    def forward(self, scene, history: torch.Tensor, v0: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.predict(*self.features(scene, history, v0))
