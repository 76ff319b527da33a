"""The op ``normalize_frames``: uint8 RGB frames -> the model's normalised, channel-stacked float
input. ``torch.ops.distill.normalize_frames`` (csrc/normalize_frames.cpp) on CPU tensors, its
plain-PyTorch reference elsewhere (and as the test oracle), and its fake kernel (shapes for
torch.compile and meta tensors)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..constants import IMAGENET_MEAN, IMAGENET_STD
from . import _ext  # noqa: F401  (registers torch.ops.distill.*)

__all__ = ["normalize_frames", "normalize_frames_reference"]


def normalize_frames(
    frames: Tensor,
    mean: Sequence[float] | Tensor = IMAGENET_MEAN,
    std: Sequence[float] | Tensor = IMAGENET_STD,
) -> Tensor:
    """Turns uint8 RGB frames into the model's normalised, channel-stacked float input.

    Args:
        frames: uint8 ``(..., F, H, W, 3)``, any strides; e.g. a sample's 4 cameras x 4 frames
            ``(4, 4, H, W, 3)``.
        mean, std: per RGB channel, 3 values each (in [0, 1] pixel units).

    Returns:
        float32 contiguous ``(..., F*3, H, W)`` with
        ``out[..., f*3 + c, h, w] = (frames[..., f, h, w, c] / 255 - mean[c]) / std[c]``;
        e.g. ``(4, 12, H, W)``.

    CPU tensors use the compiled kernel (one pass); other devices use the torch reference.
    """
    mean = torch.as_tensor(mean, dtype=torch.float32, device=frames.device)
    std = torch.as_tensor(std, dtype=torch.float32, device=frames.device)
    if frames.device.type == "cpu":
        return torch.ops.distill.normalize_frames(frames, mean, std)
    return normalize_frames_reference(frames, mean, std)


def normalize_frames_reference(frames: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Plain-torch ``normalize_frames`` (any device): the test oracle and the non-CPU path."""
    x = (frames.float() / 255 - mean) / std  # (..., F, H, W, 3)
    return x.movedim(-1, -3).flatten(-4, -3).contiguous()  # (..., F, 3, H, W) -> (..., F*3, H, W)


@torch.library.register_fake("distill::normalize_frames")
def _(frames: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    torch._check(frames.dtype == torch.uint8, lambda: f"distill::normalize_frames: frames must be torch.uint8, got {frames.dtype}")
    torch._check(
        frames.dim() >= 4 and frames.shape[-1] == 3,
        lambda: f"distill::normalize_frames: frames must have shape (..., F, H, W, 3), got {tuple(frames.shape)}",
    )
    for name, t in (("mean", mean), ("std", std)):
        torch._check(t.dtype == torch.float32, lambda: f"distill::normalize_frames: {name} must be torch.float32, got {t.dtype}")
        torch._check(t.shape == (3,), lambda: f"distill::normalize_frames: {name} must have shape (3,), got {tuple(t.shape)}")
    *batch, f, h, w, _c = frames.shape
    return frames.new_empty((*batch, f * 3, h, w), dtype=torch.float32)
