"""Triton kernels (``contrastive``: the fused InfoNCE) and the rule that picks a backend.

Importing this package does not import Triton: ``distill.kernels.contrastive`` does, at the first
call that selects the Triton backend. That matters twice: CPU-only torch wheels ship without
Triton, and TRITON_INTERPRET=1 only works when set before Triton is imported (Triton wraps its own
library functions, tl.sum and the like, for the interpreter or for the compiler at import).
"""
from __future__ import annotations

import importlib.util
import os

import torch
from torch import Tensor

BACKENDS = ("auto", "triton", "torch")
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# A program holds whole (BLOCK, D) rows, D padded to a power of two: past 1024 the tiles of even
# the smallest config (32 rows) overflow shared memory.
MAX_TRITON_DIM = 1024


TRITON_INSTALLED = importlib.util.find_spec("triton") is not None


def interpreter_on() -> bool:
    """TRITON_INTERPRET is set (as Triton reads it): kernels run on CPU tensors, interpreted.
    (torch.compile reads it once, while tracing.)"""
    return os.environ.get("TRITON_INTERPRET", "").lower() in ("1", "true", "on")


def triton_unsupported(device_type: str, dtype: torch.dtype, dim: int, interpreter: bool,
                       installed: bool) -> str | None:
    """Why the Triton kernels cannot take these inputs, or None when they can."""
    if not installed:
        return "needs the triton package, which is not installed"
    if device_type == "cpu" and not interpreter:
        return "runs CPU tensors only under Triton's interpreter (TRITON_INTERPRET=1)"
    if device_type not in ("cpu", "cuda"):
        return f"runs CUDA tensors (or CPU ones under TRITON_INTERPRET=1), got {device_type}"
    if dtype not in TRITON_DTYPES:
        return f"supports float32, float16 and bfloat16, got {dtype}"
    if device_type == "cpu" and dtype == torch.bfloat16:
        # Triton 3.8's interpreter gets bfloat16 dots wrong (a 16x16 product off by 2e10).
        return "runs bfloat16 only on CUDA: Triton's interpreter computes bfloat16 dots wrongly"
    if dim > MAX_TRITON_DIM:
        return f"supports D <= {MAX_TRITON_DIM}, got D={dim}"
    return None


def select_backend(requested: str, device_type: str, dtype: torch.dtype, dim: int,
                   interpreter: bool, installed: bool) -> str:
    """"triton" or "torch" for ``requested`` ("auto", "triton" or "torch") on these inputs.

    auto: Triton for CUDA tensors, and for CPU tensors when Triton's interpreter is on
    (TRITON_INTERPRET=1); plain PyTorch otherwise (and for float64, which the kernels would
    accumulate in float32). An explicit "triton" the kernels cannot run is an error.
    """
    if requested not in BACKENDS:
        raise ValueError(f"info_nce: backend must be one of {', '.join(BACKENDS)}, "
                         f"got {requested!r}")
    if requested == "torch":
        return "torch"
    reason = triton_unsupported(device_type, dtype, dim, interpreter, installed)
    if reason is None:
        return "triton"
    if requested == "triton":
        raise ValueError(f"info_nce: backend='triton' {reason}")
    return "torch"


def check_inputs(student: Tensor, teacher: Tensor, temperature: float,
                 teacher_ids: Tensor | None) -> None:
    """The contract of distill.losses.info_nce (same messages), plus one device for all."""
    if student.dim() != 2 or teacher.dim() != 2 or student.shape[1] != teacher.shape[1]:
        raise ValueError(
            f"info_nce: student (B, D) and teacher (N, D) must be 2-D with the same D, got "
            f"{tuple(student.shape)} and {tuple(teacher.shape)}")
    n_student, n_teacher = student.shape[0], teacher.shape[0]
    if n_teacher < n_student:
        raise ValueError(f"info_nce: need at least as many teacher rows as student rows, got "
                         f"N={n_teacher} < B={n_student}")
    if temperature <= 0:
        raise ValueError(f"info_nce: temperature must be > 0, got {temperature}")
    if teacher_ids is not None and (teacher_ids.shape != (n_teacher,)
                                    or teacher_ids.is_floating_point()
                                    or teacher_ids.is_complex()):
        raise ValueError(f"info_nce: teacher_ids must be an integer (N,) = ({n_teacher},) tensor, "
                         f"got {teacher_ids.dtype} {tuple(teacher_ids.shape)}")
    devices = {t.device for t in (student, teacher, teacher_ids) if t is not None}
    if len(devices) > 1:
        raise ValueError(f"info_nce: student, teacher and teacher_ids must be on one device, got "
                         f"{sorted(map(str, devices))}")
