"""Fused InfoNCE in Triton (after Inf-CL, arXiv 2410.17243): the ops ``distill::info_nce_fwd`` and
``distill::info_nce_bwd``, registered with ``torch.library.triton_op`` so torch.compile sees the
kernels, and ``info_nce``, the differentiable function ``distill.ops.info_nce`` calls.

Semantics are those of ``distill.ops.info_nce_reference`` (the oracle): student (B, D) and teacher
(N >= B, D) rows L2-normalized, logits = s t^T / tau, row i's positive is teacher row i, columns
j != i with row i's teacher_id left out of its denominator, loss = mean_i(LSE_i - logit_ii);
symmetric averages in the teacher -> student direction over the first B teacher rows.

Memory: O(B + N) extra floats (an online softmax over tiles of columns, recomputed in the
backward; L2-normalization inside the kernels, as per-row inverse norms) where the reference
holds B x N logits; docs/reasoning.md gives the reasons and the measured memory.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch._subclasses.functional_tensor import FunctionalTensorMode
from torch.library import triton_op, wrap_triton
from triton.runtime.interpreter import InterpretedFunction

from .info_nce import check_inputs, interpreter_on, triton_unsupported

_LOG2E = tl.constexpr(1.4426950408889634)  # logits are kept in base 2: exp2 is the fast path
_LN2 = tl.constexpr(0.6931471805599453)
_NORM_EPS = 1e-12  # as F.normalize
_TYPICAL_BLOCK = 64  # rows or columns per tile, for sizing the grid before autotuning
_FINISH_BLOCK = 16  # rows per program of _finish_grad (memory-bound: D floats x splits each)


@triton.jit
def _column_range(n_cols, n_splits, BLOCK_N: tl.constexpr):
    """[start, end) of the columns of this program's split (grid axis 1): whole tiles, split
    as evenly as they go (a split past the last tile is empty)."""
    per_split = tl.cdiv(tl.cdiv(n_cols, BLOCK_N), n_splits) * BLOCK_N
    start = tl.program_id(1) * per_split
    return start, tl.minimum(start + per_split, n_cols)


@triton.jit
def _through_normalization(d_hat, x, x_inv):
    """d loss / d x (BLOCK_M, BLOCK_D) from d loss / d x_hat, x_hat = x x_inv (rows):
    (d_hat - (d_hat . x_hat) x_hat) x_inv."""
    along = tl.sum(d_hat * x, 1) * x_inv * x_inv * x_inv
    return d_hat * x_inv[:, None] - along[:, None] * x


@triton.jit
def _rows_and_inverse_norms(ptr, inv_ptr, rows, row_ok, stride, dims, dim_ok):
    """Rows ``rows`` of a row-major matrix (0 where masked) and their float32 inverse norms."""
    tile = tl.load(ptr + rows[:, None].to(tl.int64) * stride + dims[None, :],
                   mask=row_ok[:, None] & dim_ok[None, :], other=0.0)
    return tile, tl.load(inv_ptr + rows, mask=row_ok, other=0.0)


@triton.jit
def _scaled_logits(a, a_scale, b, b_inv, DOT_PRECISION: tl.constexpr):
    """Logits x log2(e) of row tiles a, b (a_scale: 1/|a| x scale x log2(e), b_inv: 1/|b|)."""
    return tl.dot(a, tl.trans(b), input_precision=DOT_PRECISION) * a_scale[:, None] * b_inv[None, :]


def _row_lse(q_ptr, k_ptr, q_inv_ptr, k_inv_ptr, ids_ptr, lse_ptr, pos_ptr, n_q, n_k, dim,
             n_splits, stride_q, stride_k, scale, HAS_IDS: tl.constexpr,
             DOT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
             BLOCK_D: tl.constexpr):
    """For this program's BLOCK_M query rows r and its split s of the key rows:
    lse[s, r] = logsumexp over the kept key rows c of the split of logit(r, c) (-inf if none)
    and pos[s, r] = logit(r, r) if r is in the split else 0, with
    logit(r, c) = scale q_r.k_c |q_r|^-1 |k_c|^-1. Key c is kept unless c != r and
    ids[c] == ids[r] (queries and keys both index ``ids``). q (n_q, dim), k (n_k, dim)
    row-major; q_inv (n_q,), k_inv (n_k,) float32 inverse norms; lse, pos (n_splits, n_q)."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < n_q
    dims = tl.arange(0, BLOCK_D)
    dim_ok = dims < dim
    q, q_inv = _rows_and_inverse_norms(q_ptr, q_inv_ptr, rows, row_ok, stride_q, dims, dim_ok)
    q_scale = q_inv * (scale * _LOG2E)
    if HAS_IDS:
        row_ids = tl.load(ids_ptr + rows, mask=row_ok, other=-1)
    run_max = tl.full([BLOCK_M], float("-inf"), tl.float32)
    run_sum = tl.zeros([BLOCK_M], tl.float32)
    pos = tl.zeros([BLOCK_M], tl.float32)
    col_start, col_end = _column_range(n_k, n_splits, BLOCK_N)
    for start in range(col_start, col_end, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        col_ok = cols < col_end
        k, k_inv = _rows_and_inverse_norms(k_ptr, k_inv_ptr, cols, col_ok, stride_k, dims,
                                           dim_ok)
        z = _scaled_logits(q, q_scale, k, k_inv, DOT_PRECISION)
        diag = rows[:, None] == cols[None, :]
        pos += tl.sum(tl.where(diag, z, 0.0), 1)
        keep = row_ok[:, None] & col_ok[None, :]
        if HAS_IDS:
            col_ids = tl.load(ids_ptr + cols, mask=col_ok, other=-1)
            keep = keep & ((row_ids[:, None] != col_ids[None, :]) | diag)
        z = tl.where(keep, z, float("-inf"))
        new_max = tl.maximum(run_max, tl.max(z, 1))
        shift = tl.where(new_max == float("-inf"), 0.0, new_max)  # rows with nothing kept yet
        run_sum = run_sum * tl.exp2(run_max - shift) + tl.sum(tl.exp2(z - shift[:, None]), 1)
        run_max = new_max
    kept_any = run_sum > 0  # a split may hold none of a row's kept columns
    lse = tl.where(kept_any, run_max + tl.log2(tl.where(kept_any, run_sum, 1.0)), float("-inf"))
    out = tl.program_id(1) * n_q + rows
    tl.store(lse_ptr + out, lse * _LN2, mask=row_ok)
    tl.store(pos_ptr + out, pos * _LN2, mask=row_ok)


def _grad(own_ptr, other_ptr, own_inv_ptr, other_inv_ptr, ids_ptr, lse_rows_ptr, lse_cols_ptr,
          grad_ptr, out_ptr, n_student, n_teacher, dim, n_splits, stride_own, stride_other,
          stride_out, stride_split, scale, weight, FOR_STUDENT: tl.constexpr,
          SYMMETRIC: tl.constexpr, HAS_IDS: tl.constexpr, FINISH: tl.constexpr,
          DOT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
          BLOCK_D: tl.constexpr):
    """d loss / d (own rows) for this program's BLOCK_M own rows: student rows (FOR_STUDENT,
    other = the N teacher rows) or teacher rows (other = the B student rows), from this
    program's split of the other rows. FINISH (one split): out (n_own, dim) = d loss / d own.
    Otherwise out (n_splits, n_own, dim) float32 = this split's d loss / d own_hat, summed and
    taken through the normalization by ``_finish_grad``.

    With G_ij = d loss / d logit_ij (i student, j teacher) = g w (P_ij - [i == j])
    + g w (Pc_ij - [i == j]) [symmetric, j < B], w = ``weight`` = 1 / (B x directions),
    P = exp(logit - lse_rows_i), Pc = exp(logit - lse_cols_j), both 0 where the ids rule drops
    the pair:
    d s_hat_i = sum_j G_ij t_hat_j / tau, then d s = (d s_hat - (d s_hat . s_hat) s_hat) / |s|;
    the same with i and j swapped for the teacher."""
    n_own = n_student if FOR_STUDENT else n_teacher
    n_other = n_teacher if FOR_STUDENT else n_student
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < n_own
    dims = tl.arange(0, BLOCK_D)
    dim_ok = dims < dim
    x, x_inv = _rows_and_inverse_norms(own_ptr, own_inv_ptr, rows, row_ok, stride_own, dims,
                                       dim_ok)
    x_scale = x_inv * (scale * _LOG2E)
    g = tl.load(grad_ptr).to(tl.float32) * weight
    if HAS_IDS:
        own_ids = tl.load(ids_ptr + rows, mask=row_ok, other=-1)
    if FOR_STUDENT:
        own_lse = tl.load(lse_rows_ptr + rows, mask=row_ok, other=0.0) * _LOG2E
    elif SYMMETRIC:
        own_lse = tl.load(lse_cols_ptr + rows, mask=rows < n_student, other=0.0) * _LOG2E
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    col_start, col_end = _column_range(n_other, n_splits, BLOCK_N)
    for start in range(col_start, col_end, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        col_ok = cols < col_end
        y, y_inv = _rows_and_inverse_norms(other_ptr, other_inv_ptr, cols, col_ok, stride_other,
                                           dims, dim_ok)
        z = _scaled_logits(x, x_scale, y, y_inv, DOT_PRECISION)
        if FOR_STUDENT:  # tile entry (r, c) is student r, teacher c
            teacher_idx = cols[None, :]
            lse_rows = own_lse[:, None]
            if SYMMETRIC:
                lse_cols = tl.load(lse_cols_ptr + cols, mask=cols < n_student,
                                   other=0.0)[None, :] * _LOG2E
        else:  # tile entry (r, c) is teacher r, student c
            teacher_idx = rows[:, None]
            lse_rows = tl.load(lse_rows_ptr + cols, mask=col_ok, other=0.0)[None, :] * _LOG2E
            if SYMMETRIC:
                lse_cols = own_lse[:, None]
        valid = row_ok[:, None] & col_ok[None, :]
        diag = valid & (rows[:, None] == cols[None, :])
        keep = valid
        if HAS_IDS:
            other_ids = tl.load(ids_ptr + cols, mask=col_ok, other=-1)
            keep = keep & ((own_ids[:, None] != other_ids[None, :]) | diag)
        positive = tl.where(diag, 1.0, 0.0)
        coef = g * (tl.exp2(tl.where(keep, z - lse_rows, float("-inf"))) - positive)
        if SYMMETRIC:
            in_square = keep & (teacher_idx < n_student)
            coef += g * (tl.exp2(tl.where(in_square, z - lse_cols, float("-inf"))) - positive)
        acc = tl.dot((coef * y_inv[None, :]).to(y.dtype), y, acc, input_precision=DOT_PRECISION)
    d_hat = acc * scale  # d loss / d (normalized own rows), from this split
    out = rows[:, None].to(tl.int64) * stride_out + dims[None, :]
    if FINISH:
        d_hat = _through_normalization(d_hat, x.to(tl.float32), x_inv)
    else:
        out += tl.program_id(1).to(tl.int64) * stride_split
    tl.store(out_ptr + out, d_hat.to(out_ptr.dtype.element_ty),
             mask=row_ok[:, None] & dim_ok[None, :])


@triton.jit
def _finish_grad(partial_ptr, x_ptr, x_inv_ptr, out_ptr, n_rows, dim, n_splits, stride_x,
                 BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """out (n_rows, dim) = d loss / d x from the splits' d loss / d x_hat,
    partial (n_splits, n_rows, dim) float32."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    dims = tl.arange(0, BLOCK_D)
    mask = (rows < n_rows)[:, None] & (dims < dim)[None, :]
    at = rows[:, None].to(tl.int64) * dim + dims[None, :]
    d_hat = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for split in range(n_splits):
        d_hat += tl.load(partial_ptr + split * n_rows * dim + at, mask=mask, other=0.0)
    x, x_inv = _rows_and_inverse_norms(x_ptr, x_inv_ptr, rows, rows < n_rows, stride_x, dims,
                                       dims < dim)
    tl.store(out_ptr + at, _through_normalization(d_hat, x.to(tl.float32), x_inv).to(
        out_ptr.dtype.element_ty), mask=mask)


def _tile_configs(float32: bool) -> list:
    if INTERPRETED:
        # The interpreter runs each tile as numpy arrays, so its time goes to Python-level
        # iterations: one config with big tiles (B=48, N=144, symmetric: 0.17 s fwd + bwd).
        return [triton.Config({"BLOCK_M": 64, "BLOCK_N": 64})]
    # Whole padded rows per tile (D=384 -> 512). Float32 64 x 64 tiles need 256-384 KB of shared
    # memory (> 227 KB, an H100's), so the autotuner compiled them (12-74 s each, IEEE dots) only
    # to skip them (docs/reasoning.md); bfloat16 fits them. It skips what else does not fit.
    tiles = [(32, 32, 4, 1), (32, 32, 4, 2), (32, 64, 4, 2), (64, 32, 4, 2)]
    if not float32:
        tiles += [(64, 64, 8, 2), (64, 64, 4, 3)]
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s)
            for m, n, w, s in tiles]


# This module is imported at the first call that selects the Triton backend (distill.ops), so
# the kernels are built for the interpreter exactly when TRITON_INTERPRET is set by then.
INTERPRETED = bool(triton.knobs.runtime.interpret)
if INTERPRETED and not isinstance(tl.sum, InterpretedFunction):
    raise RuntimeError("TRITON_INTERPRET=1 was set after Triton was imported (torchvision imports "
                       "it); set it in the environment the process starts with")
# A split walks at least this many tiles of columns, so that its block of rows is loaded for
# enough work (16: unmeasured on a GPU); 1 under the interpreter, so that the tests split.
MIN_SPLIT_TILES = 1 if INTERPRETED else 16
# {float32 inputs: autotuned kernel}; the two of each share one jitted function's binaries.
_row_lse_jit, _grad_jit = triton.jit(_row_lse), triton.jit(_grad)
_row_lse_kernels = {f32: triton.autotune(_tile_configs(f32), key=["n_q", "n_k", "dim"])(
    _row_lse_jit) for f32 in (True, False)}
_grad_kernels = {f32: triton.autotune(_tile_configs(f32), key=[
    "n_student", "n_teacher", "dim", "FOR_STUDENT"])(_grad_jit) for f32 in (True, False)}


def interpreting() -> bool:
    """Whether the kernels run on CPU tensors: built for Triton's interpreter, and
    TRITON_INTERPRET still set."""
    return INTERPRETED and interpreter_on()


def _inverse_norms(x: Tensor) -> Tensor:
    """(R, D) -> (R,) float32 1 / max(|x_r|, eps), as F.normalize divides."""
    return torch.linalg.vector_norm(x, dim=1, dtype=torch.float32).clamp_min(_NORM_EPS).reciprocal()


def _dot_precision(dtype: torch.dtype) -> str | None:
    """float32 dots as torch's matmuls: IEEE at the default "highest" precision, TF32 when the user
    allowed it (torch.set_float32_matmul_precision); half types use their own tensor cores."""
    if dtype != torch.float32:
        return None
    return "ieee" if torch.get_float32_matmul_precision() == "highest" else "tf32"


def _ids_or_placeholder(teacher_ids: Optional[Tensor], like: Tensor) -> Tensor:
    return teacher_ids if teacher_ids is not None else like.new_empty(0, dtype=torch.int64)


def device_programs(device: torch.device) -> int:
    """Programs that fill the device: its SM count on CUDA; 8 under the interpreter, so that
    the tests' small inputs (B <= 130) run split as well as whole."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 8


def column_splits(n_rows: int, n_cols: int, programs: int) -> int:
    """Splits of the columns per block of rows (grid axis 1). Programs own blocks of rows, so
    B = 48 student rows are one or two programs, each walking all N columns while the other
    SMs idle: split the columns until the grid fills the device (``programs``), each split
    keeping at least MIN_SPLIT_TILES tiles."""
    row_blocks = triton.cdiv(n_rows, _TYPICAL_BLOCK)
    max_splits = triton.cdiv(n_cols, MIN_SPLIT_TILES * _TYPICAL_BLOCK)
    return max(1, min(programs // row_blocks, max_splits))


def _launch_row_lse(q: Tensor, k: Tensor, q_inv: Tensor, k_inv: Tensor, ids: Tensor, n_q: int,
                    temperature: float, has_ids: bool) -> tuple[Tensor, Tensor]:
    """(lse (n_q,), pos (n_q,)) float32 of the first n_q rows of q against all rows of k."""
    n_k, dim = k.shape
    splits = column_splits(n_q, n_k, device_programs(q.device))
    lse = q_inv.new_empty(splits, n_q)
    pos = q_inv.new_empty(splits, n_q)
    kernel = _row_lse_kernels[q.dtype == torch.float32]
    wrap_triton(kernel)[lambda meta: (triton.cdiv(n_q, meta["BLOCK_M"]), splits)](
        q, k, q_inv, k_inv, ids, lse, pos, n_q, n_k, dim, splits, q.stride(0), k.stride(0),
        1.0 / temperature, HAS_IDS=has_ids, DOT_PRECISION=_dot_precision(q.dtype),
        BLOCK_D=triton.next_power_of_2(dim))
    return torch.logsumexp(lse, 0), pos.sum(0)  # the splits combined: (n_q,) each


@triton_op("distill::info_nce_fwd", mutates_args=())
def info_nce_fwd(student: Tensor, teacher: Tensor, teacher_ids: Optional[Tensor],
                 temperature: float, symmetric: bool) -> tuple[Tensor, Tensor, Tensor]:
    """student (B, D), teacher (N, D) contiguous, same float dtype; teacher_ids int64 (N,) or
    None -> (loss () float32, lse_rows (B,), lse_cols (B,) if symmetric else (0,))."""
    n_student = student.shape[0]
    s_inv, t_inv = _inverse_norms(student), _inverse_norms(teacher)
    ids = _ids_or_placeholder(teacher_ids, student)
    has_ids = teacher_ids is not None
    lse_rows, pos_rows = _launch_row_lse(student, teacher, s_inv, t_inv, ids, n_student,
                                         temperature, has_ids)
    loss = (lse_rows - pos_rows).mean()
    lse_cols = s_inv.new_empty(0)
    if symmetric:  # teacher rows 0..B-1 against the student rows
        lse_cols, pos_cols = _launch_row_lse(teacher, student, t_inv, s_inv, ids, n_student,
                                             temperature, has_ids)
        loss = (loss + (lse_cols - pos_cols).mean()) / 2
    return loss, lse_rows, lse_cols


@triton_op("distill::info_nce_bwd", mutates_args=())
def info_nce_bwd(grad: Tensor, student: Tensor, teacher: Tensor, teacher_ids: Optional[Tensor],
                 lse_rows: Tensor, lse_cols: Tensor, temperature: float, symmetric: bool,
                 for_student: bool) -> Tensor:
    """d loss / d student (B, D) if for_student else d loss / d teacher (N, D), from grad (), the
    inputs and the LSEs of ``info_nce_fwd``."""
    own, other = (student, teacher) if for_student else (teacher, student)
    own_inv, other_inv = _inverse_norms(own), _inverse_norms(other)
    n_own, dim = own.shape
    n_student = student.shape[0]
    splits = column_splits(n_own, other.shape[0], device_programs(own.device))
    out = torch.empty_like(own)
    # Several splits write their partial d own_hat (splits x n_own x dim float32: at most
    # programs x 64 rows, 13 MB on an H100) for _finish_grad to sum.
    partial = out if splits == 1 else own.new_empty(splits, n_own, dim, dtype=torch.float32)
    directions = 2 if symmetric else 1
    block_d = triton.next_power_of_2(dim)
    kernel = _grad_kernels[own.dtype == torch.float32]
    wrap_triton(kernel)[lambda meta: (triton.cdiv(n_own, meta["BLOCK_M"]), splits)](
        own, other, own_inv, other_inv, _ids_or_placeholder(teacher_ids, student), lse_rows,
        lse_cols, grad, partial, n_student, teacher.shape[0], dim, splits, own.stride(0),
        other.stride(0), dim, n_own * dim, 1.0 / temperature, 1.0 / (directions * n_student),
        FOR_STUDENT=for_student, SYMMETRIC=symmetric, HAS_IDS=teacher_ids is not None,
        FINISH=splits == 1, DOT_PRECISION=_dot_precision(own.dtype), BLOCK_D=block_d)
    if splits > 1:
        wrap_triton(_finish_grad)[(triton.cdiv(n_own, _FINISH_BLOCK),)](
            partial, own, own_inv, out, n_own, dim, splits, own.stride(0),
            BLOCK_M=_FINISH_BLOCK, BLOCK_D=block_d)
    return out


@info_nce_fwd.register_fake
def _(student, teacher, teacher_ids, temperature, symmetric):
    n = student.shape[0]
    return (student.new_empty((), dtype=torch.float32), student.new_empty(n, dtype=torch.float32),
            student.new_empty(n if symmetric else 0, dtype=torch.float32))


@info_nce_bwd.register_fake
def _(grad, student, teacher, teacher_ids, lse_rows, lse_cols, temperature, symmetric,
      for_student):
    return torch.empty_like(student if for_student else teacher)


def _setup_context(ctx, inputs, output):
    student, teacher, teacher_ids, temperature, symmetric = inputs
    _, lse_rows, lse_cols = output
    ctx.save_for_backward(student, teacher, teacher_ids, lse_rows, lse_cols)
    ctx.temperature, ctx.symmetric = temperature, symmetric


def _backward(ctx, grad_loss, _grad_lse_rows, _grad_lse_cols):
    student, teacher, teacher_ids, lse_rows, lse_cols = ctx.saved_tensors
    grads = [info_nce_bwd(grad_loss, student, teacher, teacher_ids, lse_rows, lse_cols,
                          ctx.temperature, ctx.symmetric, for_student)
             if ctx.needs_input_grad[i] else None  # teacher labels need no gradient
             for i, for_student in ((0, True), (1, False))]
    return grads[0], grads[1], None, None, None


info_nce_fwd.register_autograd(_backward, setup_context=_setup_context)


def _opaque(mode, op, types, args, kwargs):
    return mode.__torch_dispatch__(op, types, args, kwargs)


if INTERPRETED:
    # Interpreted kernels cannot be traced (they read data), so under torch.compile the ops stay
    # opaque calls (their fakes give the shapes) instead of being decomposed into the kernels.
    for _op in (info_nce_fwd, info_nce_bwd):
        _op.register_torch_dispatch(FunctionalTensorMode, _opaque)


def info_nce(student: Tensor, teacher: Tensor, temperature: float = 0.07, symmetric: bool = False,
             teacher_ids: Tensor | None = None) -> Tensor:
    """``info_nce_reference`` by the fused kernels (differentiable in student and teacher);
    inputs of different float dtypes are promoted to one, and the loss has that dtype."""
    check_inputs(student, teacher, temperature, teacher_ids)
    dtype = torch.promote_types(student.dtype, teacher.dtype)
    reason = triton_unsupported(student.device.type, dtype, student.shape[1], interpreting(),
                                installed=True)
    if reason is not None:
        raise ValueError(f"info_nce: the Triton kernels {reason}")
    ids = None if teacher_ids is None else teacher_ids.to(torch.int64).contiguous()
    loss, _, _ = info_nce_fwd(student.to(dtype).contiguous(), teacher.to(dtype).contiguous(),
                              ids, float(temperature), bool(symmetric))
    return loss.to(dtype)
