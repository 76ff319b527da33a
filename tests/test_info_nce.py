"""The fused Triton InfoNCE (distill.ops.info_nce_triton) against the reference
(distill.ops.info_nce_reference), on CUDA tensors where there is a GPU, and otherwise on CPU
tensors through Triton's interpreter in a worker process; the torch.library contracts of its ops
(opcheck); the backend rule and the one input check; the negative queue; the validation
retrieval metric."""
from __future__ import annotations

import multiprocessing

import pytest
import torch

from distill import losses, ops
from distill.ops.info_nce import TRITON_INSTALLED, select_backend
from distill.training.negatives import NegativeQueue
from distill.training.validate import coc_retrieval

F32, F64 = torch.float32, torch.float64
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
needs_triton = pytest.mark.skipif(not TRITON_INSTALLED, reason="triton is not installed")


@pytest.fixture(scope="module")
def run_triton():
    """run_triton(fn, *args): fn(*args) where the Triton kernels run. With a GPU, here; without,
    in a worker process started with TRITON_INTERPRET=1: the interpreter needs the variable set
    before Triton is first imported (Triton wraps tl.sum and the like for it at import), and in
    this process torchvision (through distill.models) has already imported Triton."""
    if DEVICE == "cuda":
        yield lambda fn, *args: fn(*args)
        return
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRITON_INTERPRET", "1")  # inherited by the worker, which starts right here
        pool = multiprocessing.get_context("spawn").Pool(1)
    with pool:
        yield lambda fn, *args: pool.apply(fn, args)


def _inputs(n_student, n_teacher, with_ids, seed=0, dim=384):
    """float64 student (B, dim), teacher (N, dim) and ids (N,) or None, on DEVICE."""
    g = torch.Generator().manual_seed(seed)

    def rows(n):  # norms from 0.5x to 1.5x, so the L2-normalization's Jacobian matters
        scale = torch.rand(n, 1, generator=g, dtype=F64) + 0.5
        return torch.randn(n, dim, generator=g, dtype=F64) * scale

    student, teacher = rows(n_student), rows(n_teacher)
    # ids drawn from few values, so same-sentence pairs (excluded negatives) are common
    ids = torch.randint(0, max(2, n_teacher // 3), (n_teacher,), generator=g) if with_ids else None
    return student.to(DEVICE), teacher.to(DEVICE), None if ids is None else ids.to(DEVICE)


def _loss_and_grads(student, teacher, ids, dtype, temperature, symmetric, backend):
    """[loss, d student, d teacher] as float64 CPU tensors."""
    s = student.to(dtype, copy=True).requires_grad_()
    t = teacher.to(dtype, copy=True).requires_grad_()
    loss = ops.info_nce(s, t, temperature, symmetric, ids, backend=backend)
    loss.backward()
    return [x.detach().double().cpu() for x in (loss, s.grad, t.grad)]


def _three_ways(n_student, n_teacher, with_ids, seed, dtype, temperature, symmetric):
    """(exact: float64 reference, reference at dtype, ours at dtype), each [loss, dS, dT]."""
    inputs = _inputs(n_student, n_teacher, with_ids, seed)
    return (_loss_and_grads(*inputs, F64, temperature, symmetric, "torch"),
            _loss_and_grads(*inputs, dtype, temperature, symmetric, "torch"),
            _loss_and_grads(*inputs, dtype, temperature, symmetric, "triton"))


def _max_error(got, want):
    return float((got - want).abs().max())


def _rounding_units(n_student, n_teacher, with_ids, seed, dtype, temperature):
    """One ulp at each quantity's natural scale: logits reach 1/tau, so the loss rounds at
    eps / tau; d s_i sums rows weighted by probabilities / (B tau |s_i|), so it rounds at
    eps / (B tau min|s_i|); d teacher likewise."""
    student, teacher, _ = _inputs(n_student, n_teacher, with_ids, seed)
    eps = torch.finfo(dtype).eps
    return (eps / temperature,
            eps / (n_student * temperature * float(student.norm(dim=1).min())),
            eps / (n_student * temperature * float(teacher.norm(dim=1).min())))


def _assert_as_close_as_the_reference(results, units):
    """Loss, d student and d teacher of ours are within 4x the error of the reference at the
    same dtype (both against the float64 reference), or 4 units of rounding where the reference
    happens to be exact (e.g. every other row excluded: loss and gradients exactly 0)."""
    for name, want, ref, got, unit in zip(("loss", "d student", "d teacher"), *results, units):
        tolerance = 4 * max(_max_error(ref, want), unit)
        assert _max_error(got, want) <= tolerance, (name, _max_error(got, want),
                                                    _max_error(ref, want), unit)


@needs_triton
@pytest.mark.parametrize("n_student", [1, 7, 48, 130])
@pytest.mark.parametrize("teacher_factor", [1, 3])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("temperature", [0.07, 1.0])
@pytest.mark.parametrize("with_ids", [False, True])
def test_matches_the_reference_in_float32(run_triton, n_student, teacher_factor, symmetric,
                                          temperature, with_ids):
    """Loss, d student and d teacher in float32 are as close to the float64 reference as the
    float32 reference is (measured over these 64 cases and another seed: at most 1.9x the
    reference's error or rounding unit for the loss, 1.0x for the gradients)."""
    case = (n_student, n_student * teacher_factor, with_ids, n_student * 10 + teacher_factor, F32)
    results = run_triton(_three_ways, *case, temperature, symmetric)
    _assert_as_close_as_the_reference(results, _rounding_units(*case, temperature))


@needs_triton
def test_half_precision_matches_the_reference(run_triton):
    """float16 in, float32 accumulation inside: within the float16 reference's own error."""
    case = (48, 144, True, 0, torch.float16)
    results = run_triton(_three_ways, *case, 0.07, True)
    _assert_as_close_as_the_reference(results, _rounding_units(*case, 0.07))


def _student_grads_without_teacher_grad():
    """d student by (triton, torch) when the teacher rows need no gradient (labels)."""
    student, teacher, ids = _inputs(7, 21, with_ids=True)
    grads = []
    for backend in ("triton", "torch"):
        s = student.float().requires_grad_()
        ops.info_nce(s, teacher.float(), teacher_ids=ids, backend=backend).backward()
        grads.append(s.grad.cpu())
    return grads


@needs_triton
def test_teacher_labels_get_no_gradient(run_triton):
    ours, reference = run_triton(_student_grads_without_teacher_grad)
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-7)


def _compiled_and_eager():
    """(loss, d student, d teacher) of a function calling ops.info_nce, eager then compiled
    (fullgraph: one graph, the ops visible to torch.compile)."""
    student, teacher, ids = _inputs(20, 60, with_ids=True)

    def loss_fn(s, t):
        return ops.info_nce(s * 2, t, 0.1, True, ids) + 1

    results = []
    for fn in (loss_fn, torch.compile(loss_fn, fullgraph=True, backend="aot_eager")):
        s, t = student.float().requires_grad_(), teacher.float().requires_grad_()
        loss = fn(s, t)
        loss.backward()
        results.append([x.detach().cpu() for x in (loss, s.grad, t.grad)])
    return results


@needs_triton
def test_torch_compile_fullgraph(run_triton):
    eager, compiled = run_triton(_compiled_and_eager)
    for want, got in zip(eager, compiled):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@needs_triton
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_takes_the_triton_path_on_cuda(monkeypatch):
    from distill.ops import info_nce_triton
    calls = []
    fused = info_nce_triton.info_nce
    monkeypatch.setattr(info_nce_triton, "info_nce", lambda *a: calls.append(a) or fused(*a))
    student, teacher, ids = _inputs(1024, 4096, with_ids=True)
    got = ops.info_nce(student.float(), teacher.float(), teacher_ids=ids)
    assert len(calls) == 1
    want = ops.info_nce_reference(student, teacher, teacher_ids=ids)
    assert abs(float(got) - float(want)) <= 1e-4 * abs(float(want))


def _opcheck_the_ops():
    """torch.library.opcheck of distill::info_nce_fwd (its schema, fake kernel, autograd
    registration, and AOT dispatch with the backward through the op) and distill::info_nce_bwd,
    symmetric with ids; {op: {check: result}}."""
    from distill.ops import info_nce_triton  # registers the ops (imports Triton)
    student, teacher, ids = _inputs(7, 21, with_ids=True)
    s, t = student.float().requires_grad_(), teacher.float().requires_grad_()
    forward = torch.library.opcheck(torch.ops.distill.info_nce_fwd, (s, t, ids, 0.1, True))
    _, lse_rows, lse_cols = info_nce_triton.info_nce_fwd(s.detach(), t.detach(), ids, 0.1, True)
    grad = torch.ones((), device=s.device)
    backward = {for_student: torch.library.opcheck(
        torch.ops.distill.info_nce_bwd,
        (grad, s.detach(), t.detach(), ids, lse_rows, lse_cols, 0.1, True, for_student))
        for for_student in (True, False)}
    return {"info_nce_fwd": forward, "info_nce_bwd (student)": backward[True],
            "info_nce_bwd (teacher)": backward[False]}


@needs_triton
def test_opcheck(run_triton):
    """The Triton ops keep torch.library's contracts (on CPU under TRITON_INTERPRET=1)."""
    results = run_triton(_opcheck_the_ops)
    assert "test_autograd_registration" in results["info_nce_fwd"]
    for op, checks in results.items():
        assert checks and all(result == "SUCCESS" for result in checks.values()), (op, checks)


@pytest.mark.parametrize("requested,device,dtype,dim,interpreter,installed,want", [
    ("auto", "cuda", F32, 384, False, True, "triton"),
    ("auto", "cuda", torch.bfloat16, 384, False, True, "triton"),
    ("auto", "cpu", F32, 384, True, True, "triton"),
    ("auto", "cpu", F32, 384, False, True, "torch"),
    ("auto", "cuda", F32, 384, False, False, "torch"),  # no triton package
    ("auto", "cuda", F64, 384, False, True, "torch"),  # the kernels accumulate in float32
    ("auto", "cuda", F32, 4096, False, True, "torch"),  # rows too wide for a tile
    ("auto", "cpu", torch.bfloat16, 384, True, True, "torch"),  # interpreter's bf16 dots
    ("auto", "mps", F32, 384, False, True, "torch"),
    ("torch", "cuda", F32, 384, False, True, "torch"),
    ("triton", "cuda", torch.float16, 384, False, True, "triton"),
    ("triton", "cpu", F32, 384, True, True, "triton"),
])
def test_backend_rule(requested, device, dtype, dim, interpreter, installed, want):
    assert select_backend(requested, device, dtype, dim, interpreter, installed) == want


@pytest.mark.parametrize("device,dtype,dim,interpreter,installed,message", [
    ("cpu", F32, 384, False, True, "TRITON_INTERPRET=1"),
    ("cuda", F64, 384, False, True, "float32, float16 and bfloat16, got torch.float64"),
    ("cuda", F32, 2048, False, True, "D <= 1024, got D=2048"),
    ("cuda", F32, 384, False, False, "triton package"),
])
def test_explicit_triton_that_cannot_run_is_an_error(device, dtype, dim, interpreter, installed,
                                                     message):
    with pytest.raises(ValueError, match=f"backend='triton' .*{message}"):
        select_backend("triton", device, dtype, dim, interpreter, installed)


def test_unknown_backend_is_an_error():
    with pytest.raises(ValueError, match="backend must be one of auto, triton, torch, got 'cuda'"):
        ops.info_nce(torch.zeros(2, 4), torch.zeros(3, 4), backend="cuda")


@pytest.mark.parametrize("args,message", [
    ((torch.zeros(2, 4), torch.zeros(3, 5)), "same D"),
    ((torch.zeros(2, 3, 4), torch.zeros(3, 4)), "same D"),
    ((torch.zeros(3, 4), torch.zeros(2, 4)), "N=2 < B=3"),
    ((torch.zeros(2, 4), torch.zeros(3, 4), 0.07, False, torch.zeros(2, dtype=torch.long)),
     "teacher_ids"),
    ((torch.zeros(2, 4), torch.zeros(3, 4), 0.07, False, torch.zeros(3)), "teacher_ids"),
    ((torch.zeros(2, 4), torch.zeros(3, 4), 0.0), "temperature"),
])
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_bad_inputs_get_the_reference_errors(args, message, backend):
    with pytest.raises(ValueError, match=message):
        ops.info_nce(*args, backend=backend)
    with pytest.raises(ValueError, match=message):
        ops.info_nce_reference(*args)


def test_inputs_on_two_devices_are_refused():
    student, teacher = torch.zeros(2, 4), torch.zeros(3, 4, device="meta")
    for fn in (ops.info_nce, ops.info_nce_reference):
        with pytest.raises(ValueError, match="one device"):
            fn(student, teacher)


def test_losses_info_nce_is_the_reference():
    assert losses.info_nce is ops.info_nce_reference


def test_queue_is_a_fifo_of_the_last_rows():
    queue = NegativeQueue(size=5, dim=2, device="cpu")
    teacher, ids = queue.rows()  # empty queue: no rows
    assert teacher.shape == (0, 2) and ids.tolist() == []
    for start in (0, 3, 6):  # rows 0..8 pushed 3 at a time; the last 5 remain
        rows = torch.arange(start, start + 3, dtype=F32)
        queue.push(rows[:, None].repeat(1, 2), rows.long() + 100)
    teacher, ids = queue.rows()
    assert teacher.shape == (5, 2)
    assert sorted(ids.tolist()) == [104, 105, 106, 107, 108]
    assert sorted(teacher[:, 0].tolist()) == [4.0, 5.0, 6.0, 7.0, 8.0]
    queue.push(torch.arange(12, dtype=F32)[:, None].repeat(1, 2), torch.arange(12))  # B > size
    assert sorted(queue.rows()[1].tolist()) == [7, 8, 9, 10, 11]


def test_queue_state_round_trips():
    queue = NegativeQueue(size=4, dim=3, device="cpu")
    queue.push(torch.randn(3, 3), torch.tensor([1, 2, 3]))
    copy = NegativeQueue(size=4, dim=3, device="cpu")
    copy.load_state_dict(queue.state_dict())
    queue.push(torch.ones(2, 3), torch.tensor([9, 9]))
    copy.push(torch.ones(2, 3), torch.tensor([9, 9]))
    for a, b in zip(queue.rows(), copy.rows()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="does not match"):
        NegativeQueue(size=8, dim=3, device="cpu").load_state_dict(queue.state_dict())


def test_coc_retrieval_by_hand():
    # Three sentences (ids 0, 1, 2) along the axes; sample 3 repeats sentence 0.
    teacher = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 0, 0]])
    ids = torch.tensor([0, 1, 2, 0])
    student = torch.tensor([
        [2.0, 0.1, 0.0],  # nearest sentence 0: its own -> top-1 hit
        [1.0, 0.5, 0.0],  # nearest 0, then 1 (its own): top-1 miss, top-2 hit
        [0.0, 1.0, 0.1],  # nearest 1, then 2 (its own)
        [-1.0, 0.0, 0.0],  # farthest from its own (0): last of the 3 candidates
    ])
    top1, top2, top3, top5 = coc_retrieval(student, teacher, ids, ks=(1, 2, 3, 5)).tolist()
    assert (top1, top2, top3, top5) == (0.25, 0.75, 1.0, 1.0)  # k capped at 3 candidates
