"""The op ``info_nce``: the InfoNCE loss between student and teacher embeddings, with its input
check, its plain-PyTorch reference (``info_nce_reference``) and the rule that picks a backend:
the reference, or the fused Triton kernels of ``info_nce_triton``.

Importing this module does not import Triton: ``distill.ops.info_nce_triton`` does, at the first
call that selects the Triton backend. That matters twice: CPU-only torch wheels ship without
Triton, and TRITON_INTERPRET=1 only works when set before Triton is imported (Triton wraps its own
library functions, tl.sum and the like, for the interpreter or for the compiler at import).
"""
from __future__ import annotations

import importlib.util
import os

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["check_inputs", "info_nce", "info_nce_reference", "select_backend"]

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
    """The inputs' contract, the one check of every InfoNCE path (the wrapper, the reference and
    the Triton function): 2-D student (B, D) and teacher (N >= B, D), temperature > 0, integer
    teacher_ids (N,) or None, all on one device. Raises ValueError saying which is wrong."""
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


def _nce_direction(logits: Tensor, excluded: Tensor | None) -> Tensor:
    """mean_i (logsumexp_j over the non-excluded logits_ij - logits_ii) for logits (B, M >= B)."""
    positive = logits.diagonal()
    if excluded is not None:
        logits = logits.masked_fill(excluded, float("-inf"))
    return (torch.logsumexp(logits, -1) - positive).mean()


def info_nce_reference(
    student: Tensor,
    teacher: Tensor,
    temperature: float = 0.07,
    symmetric: bool = False,
    teacher_ids: Tensor | None = None,
) -> Tensor:
    """InfoNCE between student and teacher embeddings; row i of each is the same sample: the
    plain-PyTorch reference (the test oracle, and what ``info_nce`` runs without Triton).

    Args:
        student: ``(B, D)``.
        teacher: ``(N, D)``, N >= B: rows 0..B-1 pair with the student rows, rows B..N-1 are extra
            negatives (e.g. a memory bank).
        temperature: > 0.
        symmetric: also the teacher -> student direction (below) and average the two.
        teacher_ids: optional integer ``(N,)``, e.g. one id per distinct sentence: a column j != i
            with ``teacher_ids[j] == teacher_ids[i]`` is left out of row i's denominator (the same
            sentence is not a negative).

    Returns:
        Both inputs are L2-normalized, logits = s t^T / temperature ``(B, N)``, and
            loss = mean_i [logsumexp_{j kept for i} logits_ij - logits_ii].
        With ``symmetric``, the teacher -> student loss is the same over the square logits
        L_ij = logits_ji (i, j < B: teacher row i against student row j, student rows whose
        id equals teacher_ids[i] left out), and the result is the mean of the two directions.
    """
    check_inputs(student, teacher, temperature, teacher_ids)
    B = student.shape[0]
    excluded = None
    if teacher_ids is not None:
        excluded = teacher_ids[:B, None] == teacher_ids[None, :]  # (B, N)
        excluded.fill_diagonal_(False)
    logits = F.normalize(student, dim=-1) @ F.normalize(teacher, dim=-1).T / temperature  # (B, N)
    loss = _nce_direction(logits, excluded)
    if symmetric:
        back = _nce_direction(logits[:, :B].T, None if excluded is None else excluded[:, :B].T)
        loss = (loss + back) / 2
    return loss


def info_nce(student: Tensor, teacher: Tensor, temperature: float = 0.07, symmetric: bool = False,
             teacher_ids: Tensor | None = None, backend: str = "auto") -> Tensor:
    """InfoNCE of student (B, D) against teacher (N >= B, D) rows, exactly as
    ``info_nce_reference`` (rows B..N-1 are extra negatives, a column sharing row i's
    ``teacher_ids`` is not one of its negatives).

    backend: "triton" (the fused kernels, torch.ops.distill.info_nce_fwd / _bwd: O(B + N) extra
    memory instead of the (B, N) logits), "torch" (the reference) or "auto": Triton for CUDA
    tensors, and for CPU tensors under TRITON_INTERPRET=1; the reference otherwise (see
    ``select_backend``).
    """
    check_inputs(student, teacher, temperature, teacher_ids)
    chosen = select_backend(backend, student.device.type,
                            torch.promote_types(student.dtype, teacher.dtype), student.shape[1],
                            interpreter_on(), TRITON_INSTALLED)
    if chosen == "triton":
        from . import info_nce_triton  # imports Triton at the first use (module docstring)
        return info_nce_triton.info_nce(student, teacher, temperature, symmetric, teacher_ids)
    return info_nce_reference(student, teacher, temperature, symmetric, teacher_ids)
