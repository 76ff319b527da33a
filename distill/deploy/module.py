"""The deployable student: one ``nn.Module`` from raw inputs to plans, what every format exports.

    frames (B, 4 cameras, 4 frames, R, R, 3) uint8 RGB --normalize_frames--> (B, 4, 12, R, R)
    history_xyz (B, S, 3), history_rot (B, S, 3, 3) float32 [, v0 (B,) float32]
        --student_plan (distill.models.plan)--> trajectories (B, K, T, 3), probs (B, K)
                                                [, embedding (B, E): the reasoning student]

Everything between the inputs and the outputs is the trainer's own code (``student_plan``, or
``plan_from_inputs`` when v0 is an input): the frames' normalisation, the history features, the
v0 estimate, the heads' decoding and the unicycle rollout run in the graph. Raster students take
their bird's-eye raster as uint8 (B, R, R, 3), normalised in the graph like a camera frame;
vector students take polylines and their point mask as the benchmark's dataset makes them.

``ops``: "fused" runs the compiled ops (``torch.ops.distill.normalize_frames`` and
``unicycle_rollout``, kept as custom ops in an AOTInductor package), "reference" their
plain-PyTorch references (ONNX and TensorRT: docs/deploy.md says why).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..constants import FRAME_OFFSETS_US, IMAGENET_MEAN, IMAGENET_STD
from ..datasets.vectors import MAX_POINTS, NUM_POLYLINES
from ..kinematics import ActionNormalization
from ..models.config import ModelConfig
from ..models.plan import plan_from_inputs, scene_input, student_plan
from ..models.student import history_input
from ..ops import normalize_frames, normalize_frames_reference, use_rollout

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DTYPE_NAMES = {torch.uint8: "uint8", torch.float32: "float32", torch.bool: "bool"}
EXAMPLE_BATCH = 2  # traced with B = 2: an example of 1 would fix B to 1 (torch.export)


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of an artefact: name, dtype name, shape ("B" the batch), meaning."""

    name: str
    dtype: str
    shape: tuple
    description: str

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape),
                "description": self.description}


def scene_specs(cfg: ModelConfig, resolution: int) -> list[TensorSpec]:
    """The scene inputs of a ``cfg.input_type`` student at ``resolution`` px."""
    if cfg.input_type == "camera":
        frames = cfg.frame_channels // 3
        times = ", ".join(f"{t / 1e6:+.1f}" for t in FRAME_OFFSETS_US[-frames:])
        return [TensorSpec("frames", "uint8", ("B", cfg.num_cameras, frames, resolution,
                                               resolution, 3),
                           f"RGB frames, cameras in the card's order, at t0 {times} s")]
    if cfg.input_type == "raster":
        return [TensorSpec("raster", "uint8", ("B", resolution, resolution, 3),
                           "the devkit's RGB bird's-eye raster of the target agent")]
    return [TensorSpec("polylines", "float32",
                       ("B", NUM_POLYLINES, MAX_POINTS, cfg.polyline_features),
                       "polyline points (distill/datasets/vectors.py)"),
            TensorSpec("polyline_mask", "bool", ("B", NUM_POLYLINES, MAX_POINTS),
                       "True where a point is valid")]


def input_specs(cfg: ModelConfig, resolution: int, v0_input: bool) -> list[TensorSpec]:
    """Every input, in the order the artefact takes them."""
    s = cfg.history_steps
    specs = [*scene_specs(cfg, resolution),
             TensorSpec("history_xyz", "float32", ("B", s, 3),
                        f"ego positions at t0 - {(s - 1) * cfg.dt:g} s ... t0, m, ego frame at t0"),
             TensorSpec("history_rot", "float32", ("B", s, 3, 3), "their rotation matrices")]
    if v0_input:
        specs.append(TensorSpec("v0", "float32", ("B",), "speed at t0, m/s (see the card's v0)"))
    return specs


def output_specs(cfg: ModelConfig, reasoning: bool) -> list[TensorSpec]:
    K, T = cfg.num_modes, cfg.horizon
    specs = [TensorSpec("trajectories", "float32", ("B", K, T, 3),
                        f"x, y (m), yaw (rad) at t0 + {cfg.dt:g} ... {T * cfg.dt:g} s, ego frame "
                        "at t0 (x forward, y left), per mode"),
             TensorSpec("probs", "float32", ("B", K), "mode probabilities (sum to 1)")]
    if reasoning:
        specs.append(TensorSpec("embedding", "float32", ("B", cfg.embed_dim),
                                "reasoning embedding (unnormalised; compare after L2 "
                                "normalisation with the teacher's chain-of-causation embedding)"))
    return specs


class CastStudent(nn.Module):
    """A student whose weights are in ``dtype`` (fp16 / bf16): its float inputs are cast to it
    and its heads cast back to float32, so the v0 estimate, the heads' decoding and the rollout
    stay in float32."""

    def __init__(self, model: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.model, self.dtype = model.to(dtype), dtype

    def cast(self, x):
        if isinstance(x, tuple):
            return tuple(self.cast(t) for t in x)
        return x.to(self.dtype) if x.is_floating_point() else x

    def forward(self, scene, history: Tensor, v0: Tensor) -> dict[str, Tensor]:
        heads = self.model(self.cast(scene), self.cast(history), self.cast(v0))
        return {k: v.float() for k, v in heads.items()}


class DeployedStudent(nn.Module):
    """forward(*inputs in ``inputs``' order) -> (trajectories, probs[, embedding])."""

    def __init__(self, model: nn.Module, cfg: ModelConfig, stats: ActionNormalization,
                 inputs: list[TensorSpec], reasoning: bool, ops: str = "fused",
                 precision: str = "fp32"):
        super().__init__()
        if precision != "fp32":
            model = CastStudent(model, PRECISIONS[precision])
        self.model, self.cfg, self.stats = model, cfg, stats
        self.names = [spec.name for spec in inputs]
        self.reasoning, self.ops = reasoning, ops
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD), persistent=False)

    def normalize(self, images: Tensor) -> Tensor:
        if self.ops == "reference":
            return normalize_frames_reference(images, self.pixel_mean, self.pixel_std)
        return normalize_frames(images, self.pixel_mean, self.pixel_std)

    def batch(self, named: dict[str, Tensor]) -> dict[str, Tensor]:
        """The inputs as the trainer's batch (the scene normalised as its loaders do)."""
        batch = {"ego_history_xyz": named["history_xyz"], "ego_history_rot": named["history_rot"]}
        if "frames" in named:
            batch["frames"] = self.normalize(named["frames"])
        elif "raster" in named:
            batch["raster"] = self.normalize(named["raster"][:, None])  # one frame of 3 channels
        else:
            batch["polylines"], batch["polyline_mask"] = (named["polylines"],
                                                          named["polyline_mask"])
        return batch

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        named = dict(zip(self.names, inputs))
        batch = self.batch(named)
        with use_rollout(self.ops):
            if "v0" in named:
                plan = plan_from_inputs(
                    self.model, scene_input(batch, self.cfg),
                    history_input(named["history_xyz"], named["history_rot"]), named["v0"],
                    self.cfg, self.stats)
            else:
                plan = student_plan(self.model, batch, self.cfg, self.stats)
        trajectories = torch.cat([plan.modes_xy, plan.modes_yaw[..., None]], -1)
        if self.reasoning:
            return trajectories, plan.probs, plan.heads["embedding"]
        return trajectories, plan.probs


def dynamic_batch(specs: list[TensorSpec]) -> dict:
    """torch.export's ``dynamic_shapes`` for ``DeployedStudent.forward(*inputs)``: dimension 0
    of every input is the batch, any size from 1."""
    batch = torch.export.Dim("batch", min=1)
    return {"inputs": tuple({0: batch} for _ in specs)}


def example_inputs(specs: list[TensorSpec], batch: int = EXAMPLE_BATCH,
                   seed: int = 0) -> tuple[Tensor, ...]:
    """Inputs of the specs' shapes and dtypes with plausible values: random frames and
    polylines (every point valid), an ego that drove straight at 2..12 m/s, its v0."""
    g = torch.Generator().manual_seed(seed)
    speed = 2 + 10 * torch.rand(batch, generator=g)
    out = []
    for spec in specs:
        shape = (batch, *spec.shape[1:])
        if spec.dtype == "uint8":
            out.append(torch.randint(0, 256, shape, dtype=torch.uint8, generator=g))
        elif spec.name == "polyline_mask":
            out.append(torch.ones(shape, dtype=torch.bool))
        elif spec.name == "history_xyz":
            t = torch.arange(-(shape[1] - 1), 1, dtype=torch.float32) * 0.1
            xyz = torch.zeros(shape)
            xyz[..., 0] = speed[:, None] * t
            out.append(xyz)
        elif spec.name == "history_rot":
            out.append(torch.eye(3).expand(shape).contiguous())
        elif spec.name == "v0":
            out.append(speed)
        else:
            out.append(torch.randn(shape, generator=g))
    return tuple(out)
