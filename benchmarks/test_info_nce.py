"""The fused Triton InfoNCE against the eager reference (distill.losses.info_nce), one forward and
backward, for B in {48, 1024, 8192} student rows and up to N = 65536 teacher rows, D = 384,
teacher ids on (the training configuration).

- Any machine: peak extra memory (bytes), accounted on meta tensors, so B x N sizes cost nothing:
  every tensor the step allocates (the input gradients included, for both) counted while alive,
  by a dispatch mode that sees each allocation and its release. The fused ops' fakes allocate
  only their outputs, so their internal buffers are added (``_fused_internal_bytes``), as on an
  H100 (its SM count sets how the columns are split).
- GPU: wall time and measured peak CUDA memory (skipped without one).
"""
from __future__ import annotations

import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from distill import ops
from distill.ops.info_nce import TRITON_INSTALLED

from .conftest import timeit  # benchmarks/conftest.py, the suite's shared timer

DIM = 384
SIZES = [(48, 48), (48, 65536), (1024, 1024), (1024, 65536), (8192, 8192), (8192, 65536)]
needs_triton = pytest.mark.skipif(not TRITON_INSTALLED, reason="triton is not installed")


class PeakBytes(TorchDispatchMode):
    """Peak bytes of the tensor storages allocated while active (``peak``)."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self.storages: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.untyped_storage()._cdata not in self.storages:
                storage = t.untyped_storage()
                self.storages.add(storage._cdata)
                self.live += storage.nbytes()
                self.peak = max(self.peak, self.live)
                weakref.finalize(storage, self._release, storage._cdata, storage.nbytes())
        return out

    def _release(self, key: int, nbytes: int) -> None:
        self.live -= nbytes
        self.storages.discard(key)


def _meta_peak(loss_fn, n_student: int, n_teacher: int) -> int:
    student = torch.empty(n_student, DIM, device="meta", requires_grad=True)
    teacher = torch.empty(n_teacher, DIM, device="meta", requires_grad=True)
    ids = torch.empty(n_teacher, dtype=torch.int64, device="meta")
    with PeakBytes() as tracker:
        loss_fn(student, teacher, ids).backward()
    return tracker.peak


def _fused_on_meta(student, teacher, ids):
    return torch.ops.distill.info_nce_fwd(student, teacher, ids, 0.07, False)[0]


H100_SMS = 132


def _fused_internal_bytes(n_student: int, n_teacher: int) -> int:
    """An upper bound (their sum; they are not all alive at once) of the float32 buffers the
    fused ops allocate inside: inverse norms (B + N, forward and backward), per-split LSEs and
    positives (forward), per-split partial gradients (backward, when the columns are split)."""
    from distill.ops.info_nce_triton import column_splits
    student_splits = column_splits(n_student, n_teacher, H100_SMS)  # forward and d student
    teacher_splits = column_splits(n_teacher, n_student, H100_SMS)
    floats = 2 * (n_student + n_teacher) + 2 * student_splits * n_student + 2 * n_student
    for splits, rows in ((student_splits, n_student), (teacher_splits, n_teacher)):
        floats += splits * rows * DIM if splits > 1 else 0
    return 4 * floats


@needs_triton
@pytest.mark.parametrize("n_student,n_teacher", SIZES)
def test_peak_extra_memory(record, n_student, n_teacher):
    from distill.ops import info_nce_triton  # noqa: F401  (registers the fused ops)
    reference = _meta_peak(lambda s, t, ids: ops.info_nce_reference(s, t, teacher_ids=ids),
                           n_student, n_teacher)
    ours = (_meta_peak(_fused_on_meta, n_student, n_teacher)
            + _fused_internal_bytes(n_student, n_teacher))
    record("info_nce_peak_extra_memory", {"B": n_student, "N": n_teacher, "D": DIM}, ours,
           "bytes", reference, floor=1.0)


@needs_triton
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("n_student,n_teacher", SIZES)
def test_cuda_time_and_peak_memory(record, n_student, n_teacher):
    g = torch.Generator(device="cuda").manual_seed(0)
    student = torch.randn(n_student, DIM, device="cuda", generator=g, requires_grad=True)
    teacher = torch.randn(n_teacher, DIM, device="cuda", generator=g)
    ids = torch.randint(0, max(2, n_teacher // 4), (n_teacher,), device="cuda", generator=g)

    def step(backend):
        def run():
            student.grad = None
            ops.info_nce(student, teacher, teacher_ids=ids, backend=backend).backward()
            torch.cuda.synchronize()
        return run

    results = {}
    for backend in ("triton", "torch"):
        run = step(backend)
        run()  # compile / autotune outside the measurements
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run()
        peak = torch.cuda.max_memory_allocated() - base
        results[backend] = (timeit(run, warmup=1, repeat=5), peak)
    params = {"B": n_student, "N": n_teacher, "D": DIM}
    record("info_nce_cuda_fwd_bwd_time", params, results["triton"][0], "s", results["torch"][0])
    record("info_nce_cuda_peak_memory", params, results["triton"][1], "bytes",
           results["torch"][1], floor=1.0)
