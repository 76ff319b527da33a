"""The op ``unicycle_rollout``: the poses of the students' unicycle model from its actions, one
fused kernel per direction (``torch.ops.distill.unicycle_rollout`` and its backward, CPU SIMD or
CUDA: csrc/, docs/compiled_ops.md), with its fake kernels and autograd registration. The
plain-PyTorch reference, the test oracle and the fallback where there is no compiled kernel,
is ``distill.kinematics.unicycle_rollout_reference``."""
from __future__ import annotations

import json
import warnings
from contextlib import contextmanager

import torch
from torch import Tensor

from ..constants import ROLLOUTS  # the names --rollout offers
from ..kinematics import unicycle_rollout_reference
from . import _ext  # noqa: F401  (registers torch.ops.distill.*)

__all__ = ["ROLLOUTS", "unicycle_cpu_dispatch", "unicycle_rollout", "unicycle_rollout_reference",
           "use_rollout"]

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
    float16/bfloat16 computed in float32; under autocast, float32 in and out. Runs
    ``torch.ops.distill.unicycle_rollout`` (one fused kernel per direction, CPU SIMD or CUDA;
    docs/compiled_ops.md) unless ``use_rollout("reference")`` is active; on a device without a
    compiled kernel it warns once and runs the reference.
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

# Under autocast (bf16 training on a GPU) a head's actions arrive in bfloat16 and v0 in float32:
# the rollout then runs in float32, as autocast runs torch's own precision-sensitive ops (cumsum,
# exp): its positions sum 64 steps, and bfloat16 would round x = 100 m to a 0.5 m grid.
for _device_type in ("cpu", "cuda"):
    torch.library.register_autocast("distill::unicycle_rollout", _device_type, torch.float32)
