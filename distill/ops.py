"""Typed wrappers of the compiled ops ``torch.ops.distill.*`` (csrc/, schemas in csrc/library.cpp).

Each op has its own section with: the wrapper users call, a plain-torch ``*_reference`` (the
test oracle and the fallback where there is no compiled kernel), and its ``register_fake``
(shapes for torch.compile / meta tensors). Importing this module loads ``distill._C``.
"""
from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from contextlib import contextmanager

import torch
from torch import Tensor

from . import _ext  # noqa: F401  (registers torch.ops.distill.*)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "info_nce",
    "info_nce_reference",
    "normalize_frames",
    "normalize_frames_reference",
    "unicycle_cpu_dispatch",
    "unicycle_rollout",
    "unicycle_rollout_reference",
    "use_rollout",
]

# --------------------------------------------------------------------------------------------
# normalize_frames
# --------------------------------------------------------------------------------------------

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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


# --------------------------------------------------------------------------------------------
# unicycle_rollout
# --------------------------------------------------------------------------------------------

from .kinematics import unicycle_rollout_reference  # noqa: E402  (the test oracle, pure torch)

ROLLOUTS = ("fused", "reference")
_rollout = "fused"  # what unicycle_rollout runs (use_rollout)
# Device types with a kernel in distill._C (CUDA only when it was built with CUDA); meta tensors
# get their shapes from the fake kernel below.
_FUSED_DEVICES = frozenset({"meta"} | {
    key.lower() for key in ("CPU", "CUDA")
    if torch._C._dispatch_has_kernel_for_dispatch_key("distill::unicycle_rollout", key)})
_warned_devices: set[str] = set()


@contextmanager
def use_rollout(name: str):
    """Within the block, ``unicycle_rollout`` runs ``name``: "fused" (the compiled op, the
    default) or "reference" (``unicycle_rollout_reference``, plain PyTorch, for A/B runs: the
    trainer's and evaluator's ``--rollout``). Process-wide; restored on exit."""
    global _rollout
    if name not in ROLLOUTS:
        raise ValueError(f"rollout must be one of {', '.join(ROLLOUTS)}, got {name!r}")
    previous, _rollout = _rollout, name
    try:
        yield
    finally:
        _rollout = previous


def unicycle_rollout(accel: Tensor, curvature: Tensor, v0: Tensor, dt: float) -> tuple[
        Tensor, Tensor, Tensor]:
    """Poses (x, y, yaw), each (..., T), at t1..tT of the discrete unicycle model driven by
    acceleration (..., T) and curvature (..., T) from speed v0 (...); see
    ``distill.kinematics.unicycle_rollout_reference`` for the equations.

    Differentiable in accel, curvature and v0 (dt is a constant). float32/float64, and
    float16/bfloat16 computed in float32. Runs ``torch.ops.distill.unicycle_rollout`` (one fused
    kernel per direction, CPU SIMD or CUDA; docs/compiled_ops.md) unless
    ``use_rollout("reference")`` is active; on a device without a compiled kernel it warns once
    and runs the reference.
    """
    if _rollout == "reference":
        return unicycle_rollout_reference(accel, curvature, v0, dt)
    if accel.device.type not in _FUSED_DEVICES:
        _warn_no_kernel(accel.device.type)
        return unicycle_rollout_reference(accel, curvature, v0, dt)
    return torch.ops.distill.unicycle_rollout(accel, curvature, v0, float(dt))


def unicycle_cpu_dispatch() -> dict:
    """Which CPU kernel set ``unicycle_rollout`` runs in this process, and why:
    ``{"kernel_set": "avx2", "how": "measured", "probe_seconds": {"scalar": 0.0016, "avx2":
    0.00053}}``. ``how`` is "measured" (the fastest on a small fixed problem timed at the first
    call in the process; ``probe_seconds`` has each set's best forward + backward time),
    "only" (the CPU offers one set) or "forced" (``DISTILL_CPU_CAPABILITY``)."""
    return json.loads(torch.ops.distill.unicycle_cpu_dispatch())


def _warn_no_kernel(device: str) -> None:
    if device not in _warned_devices:
        _warned_devices.add(device)
        hint = " (rebuild with DISTILL_BUILD_CUDA=1, see setup.py)" if device == "cuda" else ""
        warnings.warn(f"distill._C has no {device} kernel for unicycle_rollout{hint}; running "
                      "the PyTorch reference instead", stacklevel=3)


def _check_rollout_inputs(op: str, accel: Tensor, curvature: Tensor, v0: Tensor) -> None:
    floating = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
    torch._check(accel.dtype in floating, lambda: f"{op}: accel must be a floating tensor "
                 f"(float32, float64, float16 or bfloat16), got {accel.dtype}")
    for name, t in (("curvature", curvature), ("v0", v0)):
        torch._check(t.dtype == accel.dtype,
                     lambda: f"{op}: {name} must be {accel.dtype}, got {t.dtype}")
    torch._check(accel.dim() >= 1,
                 lambda: f"{op}: accel must have shape (..., T), got {tuple(accel.shape)}")
    torch._check(curvature.shape == accel.shape, lambda: f"{op}: curvature must have shape "
                 f"{tuple(accel.shape)}, got {tuple(curvature.shape)}")
    torch._check(v0.shape == accel.shape[:-1], lambda: f"{op}: v0 must have shape "
                 f"{tuple(accel.shape[:-1])}, got {tuple(v0.shape)}")


@torch.library.register_fake("distill::unicycle_rollout")
def _(accel: Tensor, curvature: Tensor, v0: Tensor, dt: float) -> tuple[Tensor, Tensor, Tensor]:
    _check_rollout_inputs("distill::unicycle_rollout", accel, curvature, v0)
    return accel.new_empty(accel.shape), accel.new_empty(accel.shape), accel.new_empty(accel.shape)


@torch.library.register_fake("distill::unicycle_rollout_backward")
def _(grad_x: Tensor, grad_y: Tensor, grad_yaw: Tensor, accel: Tensor, curvature: Tensor,
      v0: Tensor, dt: float) -> tuple[Tensor, Tensor, Tensor]:
    op = "distill::unicycle_rollout_backward"
    _check_rollout_inputs(op, accel, curvature, v0)
    for name, g in (("grad_x", grad_x), ("grad_y", grad_y), ("grad_yaw", grad_yaw)):
        torch._check(g.dtype == accel.dtype and g.shape == accel.shape,
                     lambda: f"{op}: {name} must be {accel.dtype} of shape {tuple(accel.shape)}, "
                     f"got {g.dtype} of shape {tuple(g.shape)}")
    return accel.new_empty(accel.shape), accel.new_empty(accel.shape), v0.new_empty(v0.shape)


def _rollout_setup_context(ctx, inputs, output) -> None:
    accel, curvature, v0, dt = inputs
    ctx.save_for_backward(accel, curvature, v0)  # the backward recomputes the states from these
    ctx.dt = dt


def _rollout_backward(ctx, grad_x: Tensor, grad_y: Tensor, grad_yaw: Tensor):
    accel, curvature, v0 = ctx.saved_tensors
    grads = torch.ops.distill.unicycle_rollout_backward(grad_x, grad_y, grad_yaw, accel, curvature,
                                                        v0, ctx.dt)
    return (*grads, None)


torch.library.register_autograd("distill::unicycle_rollout", _rollout_backward,
                                setup_context=_rollout_setup_context)


# --------------------------------------------------------------------------------------------
# info_nce
# --------------------------------------------------------------------------------------------

from . import kernels  # noqa: E402  (the backend rule; imports no Triton)
from .losses import info_nce as info_nce_reference  # noqa: E402  (the oracle and the CPU path)


def info_nce(student: Tensor, teacher: Tensor, temperature: float = 0.07, symmetric: bool = False,
             teacher_ids: Tensor | None = None, backend: str = "auto") -> Tensor:
    """InfoNCE of student (B, D) against teacher (N >= B, D) rows, exactly as
    ``info_nce_reference`` (``distill.losses.info_nce``: rows B..N-1 are extra negatives, a
    column sharing row i's ``teacher_ids`` is not one of its negatives).

    backend: "triton" (the fused kernels, torch.ops.distill.info_nce_fwd / _bwd: O(B + N) extra
    memory instead of the (B, N) logits), "torch" (the reference) or "auto": Triton for CUDA
    tensors, and for CPU tensors under TRITON_INTERPRET=1; the reference otherwise (see
    ``distill.kernels.select_backend``).
    """
    kernels.check_inputs(student, teacher, temperature, teacher_ids)
    chosen = kernels.select_backend(backend, student.device.type,
                                    torch.promote_types(student.dtype, teacher.dtype),
                                    student.shape[1], kernels.interpreter_on(),
                                    kernels.TRITON_INSTALLED)
    if chosen == "triton":
        from .kernels import contrastive  # imports Triton at the first use (see distill.kernels)
        return contrastive.info_nce(student, teacher, temperature, symmetric, teacher_ids)
    return info_nce_reference(student, teacher, temperature, symmetric, teacher_ids)
