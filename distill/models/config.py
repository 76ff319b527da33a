"""Student model configuration: one dataclass and the named size presets.

Horizon, history length and dt live here (not in the data formats) because benchmarks train the
same students at other rates, e.g. 12 future steps at 2 Hz.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..constants import KINEMATICS, MODEL_SIZES

BACKBONES = ("resnet18", "resnet50", "resnet101")
OUTPUTS = ("unicycle", "direct")
# What the student sees: the 4 cameras, a bird's-eye raster (nuScenes) or polylines (Argoverse 2).
INPUT_TYPES = ("camera", "raster", "vector")


@dataclass
class ModelConfig:
    name: str  # preset name ("tiny", "110m", "500m")
    backbone: str  # one of BACKBONES
    d_model: int  # transformer width
    num_layers: int  # transformer decoder layers
    num_heads: int
    ffn_dim: int
    dropout: float = 0.1
    grad_checkpointing: bool = False  # recompute ResNet stages and decoder layers in backward
    num_cameras: int = 4
    frame_channels: int = 12  # 4 frames x RGB, frame-major
    history_steps: int = 16  # past ego poses, the last at t0
    horizon: int = 64  # future steps predicted
    dt: float = 0.1  # seconds between steps, history and future
    embed_dim: int = 384  # reasoning embedding (all-MiniLM-L6-v2)
    output: str = "unicycle"  # "unicycle": (acceleration, curvature) per step; "direct": poses
    discrete_actions: bool = False  # unicycle only: logits over num_action_bins per action
    num_action_bins: int = 256
    num_modes: int = 1  # trajectory hypotheses, each with a mode logit
    predict_scale: bool = False  # a Laplace scale per step and mode (the "nll" loss needs it)
    # unicycle only, training only: a linear head regressing each step's (x, y) directly from
    # the decoder outputs (--aux-xy-weight; docs/learning.md, "The lateral gradient")
    aux_xy: bool = False
    input_type: str = "camera"  # one of INPUT_TYPES
    raster_channels: int = 3  # raster input: RGB of the devkit's rasterizer
    polyline_features: int = 10  # vector input: features per point (benchmarks/vectors.py)
    # Estimators of the speed at t0 (the rollout's start) and of the action targets: ours or
    # the teacher's (distill.kinematics.choice); checkpoints without it used ours.
    kinematics: str = "distill"

    def __post_init__(self):
        def check(ok: bool, message: str):
            if not ok:
                raise ValueError(f"ModelConfig {self.name!r}: {message}")

        check(self.backbone in BACKBONES, f"backbone {self.backbone!r} is not one of {BACKBONES}")
        check(self.output in OUTPUTS, f"output {self.output!r} is not one of {OUTPUTS}")
        check(self.kinematics in KINEMATICS,
              f"kinematics {self.kinematics!r} is not one of {KINEMATICS}")
        check(self.input_type in INPUT_TYPES,
              f"input_type {self.input_type!r} is not one of {INPUT_TYPES}")
        check(not self.aux_xy or self.output == "unicycle",
              f"aux_xy needs output 'unicycle', not {self.output!r}")
        check(not self.discrete_actions or self.output == "unicycle",
              f"discrete_actions needs output 'unicycle', not {self.output!r}")
        check(not self.discrete_actions or self.num_action_bins >= 2,
              f"discrete_actions needs num_action_bins >= 2, got {self.num_action_bins}")
        for field in ("d_model", "num_layers", "num_heads", "ffn_dim", "num_cameras",
                      "history_steps", "horizon", "embed_dim", "num_modes", "raster_channels",
                      "polyline_features"):
            check(getattr(self, field) >= 1, f"{field} must be >= 1, got {getattr(self, field)}")
        check(self.d_model % self.num_heads == 0,
              f"d_model {self.d_model} is not divisible by num_heads {self.num_heads}")
        check(self.d_model % 4 == 0,
              f"d_model {self.d_model} must be divisible by 4 (2-D sine-cosine positions)")
        check(self.frame_channels >= 3 and self.frame_channels % 3 == 0,
              f"frame_channels {self.frame_channels} must be a positive multiple of 3 (RGB frames)")
        check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        check(self.dt > 0, f"dt must be > 0, got {self.dt}")


# Parameter totals are of the ReasoningStudent with default heads (`python -m distill.models`).
_PRESETS = {
    # CPU-sized: trains in minutes on the built-in world.
    "tiny": dict(backbone="resnet18", d_model=128, num_layers=2, num_heads=4, ffn_dim=256,
                 dropout=0.0),
    # ~107M: ResNet-50 trunk (23.5M) + 8 decoder layers at width 768.
    "110m": dict(backbone="resnet50", d_model=768, num_layers=8, num_heads=12, ffn_dim=3520),
    # ~485M: ResNet-101 trunk (42.5M) + 17 decoder layers at width 1280.
    "500m": dict(backbone="resnet101", d_model=1280, num_layers=17, num_heads=16, ffn_dim=4928,
                 grad_checkpointing=True),
}
assert tuple(_PRESETS) == MODEL_SIZES, "distill.constants.MODEL_SIZES names the presets"


def get_model_config(size: str, **overrides) -> ModelConfig:
    """The preset `size` (one of MODEL_SIZES) with fields replaced by `overrides`."""
    if size not in _PRESETS:
        raise ValueError(f"unknown model size {size!r}; valid sizes: {', '.join(MODEL_SIZES)}")
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown ModelConfig field(s) {unknown}; fields: {sorted(fields)}")
    return ModelConfig(**{"name": size, **_PRESETS[size], **overrides})
