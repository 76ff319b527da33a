"""The compiled unicycle rollout (torch.ops.distill.unicycle_rollout and its hand-written backward)
against the PyTorch reference: accuracy in float64/float32, gradients, the torch.library
contracts (opcheck, torch.compile), edge cases, dtypes, each CPU SIMD kernel set, the wrapper's
choice of implementation, and the CUDA kernels (skipped without a GPU)."""
from __future__ import annotations

import importlib
import json
import warnings
from pathlib import Path

import pytest
import torch

from distill import ops
from distill.ops import unicycle_rollout, unicycle_rollout_reference, use_rollout

# The op's module (``distill.ops.unicycle_rollout`` as an attribute is the function it exports).
rollout_module = importlib.import_module("distill.ops.unicycle_rollout")

F64, F32 = torch.float64, torch.float32
DT = 0.1
OP = torch.ops.distill.unicycle_rollout
BACKWARD_OP = torch.ops.distill.unicycle_rollout_backward


def actions(shape, dtype=F64, seed=0, device="cpu"):
    """Driving-like inputs: accel (*shape) ~ 1 m/s^2, curvature ~ 0.03 1/m, v0 (*shape[:-1]) in
    [0, 20) m/s, so the 6.4 s horizon turns up to a few radians and covers up to ~200 m."""
    g = torch.Generator().manual_seed(seed)
    accel = torch.randn(shape, generator=g, dtype=F64)
    curvature = 0.03 * torch.randn(shape, generator=g, dtype=F64)
    v0 = 20 * torch.rand(shape[:-1], generator=g, dtype=F64)
    return tuple(t.to(device=device, dtype=dtype) for t in (accel, curvature, v0))


def max_error(got, want) -> float:
    return max(float((g.double() - w.double()).abs().max()) for g, w in zip(got, want))


def grads(fn, inputs, seed=1):
    """d(sum of random projections of x, y, yaw) / d(accel, curvature, v0)."""
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*inputs, DT)
    g = torch.Generator().manual_seed(seed)
    weights = [torch.randn(o.shape, generator=g, dtype=F64).to(o) for o in out]
    return torch.autograd.grad(out, inputs, weights)


# ---- accuracy ----------------------------------------------------------------------------------

def test_float64_matches_the_reference_to_1e_12_relative():
    inputs = actions((3, 50, 64))  # leading dims (batch, modes) and a partial SIMD tile
    want, got = unicycle_rollout_reference(*inputs, DT), unicycle_rollout(*inputs, DT)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == F64
        assert float((g - w).abs().max()) <= 1e-12 * float(w.abs().max())
    grad_want, grad_got = grads(unicycle_rollout_reference, inputs), grads(unicycle_rollout, inputs)
    for g, w in zip(grad_got, grad_want):
        assert float((g - w).abs().max()) <= 1e-12 * float(w.abs().max())


def assert_float32_within_twice_the_reference_error(device: str) -> None:
    exact = actions((4096, 64), device=device)
    inputs32 = [t.float() for t in exact]
    truth = unicycle_rollout_reference(*exact, DT)
    ref_err = max_error(unicycle_rollout_reference(*inputs32, DT), truth)
    ours_err = max_error(unicycle_rollout(*inputs32, DT), truth)
    assert ours_err <= 2 * ref_err, (ours_err, ref_err)
    grad_truth = grads(unicycle_rollout_reference, exact)
    ref_grad_err = max_error(grads(unicycle_rollout_reference, inputs32), grad_truth)
    ours_grad_err = max_error(grads(unicycle_rollout, inputs32), grad_truth)
    assert ours_grad_err <= 2 * ref_grad_err, (ours_grad_err, ref_grad_err)


def test_float32_error_within_twice_the_reference_float32_error():
    assert_float32_within_twice_the_reference_error("cpu")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_dtypes_compute_in_float32_and_return_their_dtype(dtype):
    inputs = actions((37, 64), dtype=dtype)
    got = unicycle_rollout(*inputs, DT)
    want = unicycle_rollout(*[t.float() for t in inputs], DT)
    for g, w in zip(got, want):
        assert g.dtype == dtype
        assert torch.equal(g, w.to(dtype))  # float32 results rounded once
    grad_got = grads(unicycle_rollout, inputs)
    assert [g.dtype for g in grad_got] == [dtype] * 3
    assert all(torch.isfinite(g).all() for g in grad_got)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_bf16_autocast_runs_in_float32(compiled):
    """Under bf16 autocast (the trainer's GPU default) a head's actions come in bfloat16 and v0 in
    float32: the op runs in float32 like torch's other precision-sensitive ops, and the gradients
    reach the bfloat16 actions. (Found on an H200: before, this refused the mixed dtypes.)"""
    a, k, v = actions((6, 64), dtype=F32)
    a16, k16 = (t.bfloat16().requires_grad_() for t in (a, k))
    v = v.requires_grad_()
    fn = torch.compile(unicycle_rollout, fullgraph=True, backend="aot_eager") if compiled \
        else unicycle_rollout
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = fn(a16, k16, v, DT)
    want = unicycle_rollout(a16.detach().float(), k16.detach().float(), v.detach(), DT)
    for g, w in zip(got, want):
        assert g.dtype == F32
        torch.testing.assert_close(g, w, rtol=0, atol=0)
    sum(t.sum() for t in got).backward()
    assert (a16.grad.dtype, k16.grad.dtype, v.grad.dtype) == (torch.bfloat16, torch.bfloat16, F32)
    assert all(torch.isfinite(t).all() for t in (a16.grad, k16.grad, v.grad))


def test_gradcheck_float64():
    inputs = [t.requires_grad_() for t in actions((2, 3, 9))]
    assert torch.autograd.gradcheck(lambda a, k, v: unicycle_rollout(a, k, v, DT), inputs)


# ---- torch.library contracts -------------------------------------------------------------------

def test_opcheck_forward_and_backward():
    a, k, v = (t.requires_grad_() for t in actions((5, 2, 17)))
    torch.library.opcheck(OP, (a, k, v, DT))
    g = actions((5, 2, 17), seed=3)[0]
    torch.library.opcheck(BACKWARD_OP, (g, 2 * g, 3 * g, a.detach(), k.detach(), v.detach(), DT))


def test_compiled_training_step_has_no_graph_break():
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 2 * 64)
    features, v0 = torch.randn(6, 8), 10 * torch.rand(6)
    target = unicycle_rollout_reference(*actions((6, 64), dtype=F32), DT)

    def loss_fn(head, features, v0):
        act = head(features).view(-1, 64, 2)
        x, y, yaw = unicycle_rollout(act[..., 0], 0.01 * act[..., 1], v0, DT)
        return (x - target[0]).square().mean() + (y - target[1]).square().mean() + yaw.square().mean()

    compiled = torch.compile(loss_fn, fullgraph=True, backend="aot_eager")  # raises on a break
    eager_loss = loss_fn(head, features, v0)
    eager_grads = torch.autograd.grad(eager_loss, list(head.parameters()))
    loss = compiled(head, features, v0)
    compiled_grads = torch.autograd.grad(loss, list(head.parameters()))
    torch.testing.assert_close(loss, eager_loss)
    for g, w in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(g, w)


# ---- edge cases --------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(0, 64), (5, 0), (5, 1), (1, 1), (64,), (2, 0, 3)])
def test_empty_and_tiny_shapes(shape):
    inputs = [t.requires_grad_() for t in actions(shape)]
    want, got = unicycle_rollout_reference(*inputs, DT), unicycle_rollout(*inputs, DT)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)
    for g, w in zip(grads(unicycle_rollout, inputs), grads(unicycle_rollout_reference, inputs)):
        assert g.shape == w.shape
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)


def test_non_contiguous_inputs():
    a, k, v = actions((40, 64))
    packed = torch.stack([a, k], -1)  # (B, T, 2): the trainer's action head layout
    transposed = a.t().contiguous().t()  # column-major
    v_strided = torch.stack([v, v], -1)[:, 0]
    got = unicycle_rollout(packed[..., 0], packed[..., 1], v_strided, DT)
    want = unicycle_rollout_reference(a, k, v, DT)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(unicycle_rollout(transposed, k, v, DT), want, rtol=1e-12, atol=1e-12)
    weights = [torch.ones(40, 64).double().expand(40, 64) for _ in range(3)]
    expanded_grads = BACKWARD_OP(*[w.t().contiguous().t() for w in weights], packed[..., 0],
                                 packed[..., 1], v_strided, DT)
    torch.testing.assert_close(expanded_grads, BACKWARD_OP(*[w.contiguous() for w in weights], a, k, v, DT))


def test_nan_propagates_within_its_trajectory_only():
    a, k, v = actions((33, 64))  # 33 rows: NaNs in lanes of a full tile and of the tail tile
    a[3, 10] = float("nan")
    k[32, 0] = float("nan")
    x, y, yaw = unicycle_rollout(a, k, v, DT)
    assert torch.isnan(x[3, 10:]).all() and torch.isfinite(x[3, :10]).all()
    assert torch.isnan(yaw[32]).all()
    clean = torch.ones(33, dtype=torch.bool)
    clean[[3, 32]] = False
    assert torch.isfinite(torch.stack([x, y, yaw])[:, clean]).all()
    g = BACKWARD_OP(torch.ones_like(x), torch.ones_like(x), torch.ones_like(x), a, k, v, DT)
    assert torch.isnan(g[0][3, :11]).any() and torch.isfinite(g[0][clean]).all()


def test_very_large_batch_matches_the_reference():
    inputs = actions((300_007, 3), dtype=F32)  # many SIMD tiles over every thread, a tail tile
    want, got = unicycle_rollout_reference(*inputs, DT), unicycle_rollout(*inputs, DT)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


def test_bad_inputs_get_one_line_errors():
    a, k, v = actions((4, 8))
    for args, match in [
        ((a, k[:, :7], v), r"curvature must have shape \(4, 8\), got \(4, 7\)"),
        ((a, k, v[:3]), r"v0 must have shape \(4,\), got \(3,\)"),
        ((a, k.float(), v), r"curvature must be torch.float64, got torch.float32"),
        ((a.long(), k.long(), v.long()), r"accel must be a floating tensor"),
        ((a[0, 0], k[0, 0], v[0]), r"accel must have shape \(\.\.\., T\)"),
    ]:
        with pytest.raises(RuntimeError, match=match) as error:
            OP(*args, DT)
        assert "\n" not in str(error.value).split("\nException raised from")[0].strip()
    with pytest.raises(RuntimeError, match="dt must be finite"):
        OP(a, k, v, float("nan"))


# ---- CPU kernel sets ---------------------------------------------------------------------------

def cpu_flags() -> set[str]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return set(next((line.split(":")[1].split() for line in text.splitlines()
                     if line.startswith("flags")), []))


def available_capabilities() -> list[str]:
    flags = cpu_flags()
    out = ["scalar"]
    if {"avx2", "fma"} <= flags:
        out.append("avx2")
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq", "fma"} <= flags:
        out.append("avx512")
    return out


def kernel_that_ran(fn) -> list[str]:
    """The CPU kernel sets fn ran, by their profiler names."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return sorted({e.name for e in prof.events() if "_cpu_" in e.name})


@pytest.mark.parametrize("capability", available_capabilities())
@pytest.mark.parametrize("dtype", [F64, F32])
def test_each_available_simd_kernel_set(capability, dtype, monkeypatch):
    monkeypatch.setenv("DISTILL_CPU_CAPABILITY", capability)
    exact = actions((45, 70))  # tails in both the rows and the steps of the transposes
    inputs = [t.to(dtype) for t in exact]
    tol = 1e-12 if dtype == F64 else 2e-4
    truth = unicycle_rollout_reference(*exact, DT)
    ran = kernel_that_ran(lambda: grads(unicycle_rollout, inputs))
    assert ran == [f"distill::unicycle_rollout_backward_cpu_{capability}",
                   f"distill::unicycle_rollout_cpu_{capability}"]
    got = unicycle_rollout(*inputs, DT)
    for g, w in zip(got, truth):
        assert float((g.double() - w).abs().max()) <= tol * float(w.abs().max())
    for g, w in zip(grads(unicycle_rollout, inputs), grads(unicycle_rollout_reference, exact)):
        assert float((g.double() - w).abs().max()) <= tol * float(w.abs().max())


def test_default_kernel_set_is_the_fastest_measured_in_this_process(monkeypatch):
    monkeypatch.delenv("DISTILL_CPU_CAPABILITY", raising=False)
    dispatch = ops.unicycle_cpu_dispatch()
    available = available_capabilities()
    if len(available) == 1:
        assert dispatch == {"kernel_set": available[0], "how": "only", "probe_seconds": {}}
    else:
        probe = dispatch["probe_seconds"]
        assert dispatch["how"] == "measured" and sorted(probe) == sorted(available)
        assert dispatch["kernel_set"] == min(probe, key=probe.get)
        # a warm-up and three rounds per set: the whole measurement stays well under 100 ms
        assert 4 * sum(probe.values()) < 0.1, probe
    assert kernel_that_ran(lambda: unicycle_rollout(*actions((4, 8)), DT)) == [
        f"distill::unicycle_rollout_cpu_{dispatch['kernel_set']}"]


def test_forced_kernel_set_is_reported(monkeypatch):
    monkeypatch.setenv("DISTILL_CPU_CAPABILITY", "scalar")
    dispatch = ops.unicycle_cpu_dispatch()
    assert (dispatch["kernel_set"], dispatch["how"]) == ("scalar", "forced")


def test_one_and_two_threads_give_the_same_bits():
    """Threads claim chunks of rows in whatever order they get to them: the result per row must
    not depend on it (rows not a multiple of a chunk or a SIMD tile)."""
    inputs = actions((4096 + 21, 64), dtype=F32)
    previous = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append((*unicycle_rollout(*inputs, DT), *grads(unicycle_rollout, inputs)))
    finally:
        torch.set_num_threads(previous)
    for one, two in zip(*results):
        assert torch.equal(one, two)


def test_unknown_capability_is_refused(monkeypatch):
    monkeypatch.setenv("DISTILL_CPU_CAPABILITY", "sse9")
    with pytest.raises(RuntimeError,
                       match="DISTILL_CPU_CAPABILITY must be scalar, avx2 or avx512, got 'sse9'"):
        unicycle_rollout(*actions((4, 8)), DT)


# ---- the wrapper's choice ----------------------------------------------------------------------

def test_use_rollout_switches_and_restores():
    inputs = actions((4, 8))
    with use_rollout("reference"):
        assert kernel_that_ran(lambda: unicycle_rollout(*inputs, DT)) == []
    assert kernel_that_ran(lambda: unicycle_rollout(*inputs, DT)) != []
    with pytest.raises(ValueError, match="rollout must be one of fused, reference, got 'fast'"):
        with use_rollout("fast"):
            pass


def test_device_without_a_kernel_warns_once_and_runs_the_reference(monkeypatch):
    monkeypatch.setattr(rollout_module, "_FUSED_DEVICES", frozenset({"meta"}))  # as a CPU-only build for cuda
    monkeypatch.setattr(rollout_module, "_warned_devices", set())
    inputs = actions((4, 8))
    with pytest.warns(UserWarning, match="no cpu kernel for unicycle_rollout"):
        got = unicycle_rollout(*inputs, DT)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        unicycle_rollout(*inputs, DT)  # warned once only
    assert all(torch.equal(g, w) for g, w in zip(got, unicycle_rollout_reference(*inputs, DT)))


def test_meta_tensors_get_shapes():
    x, y, yaw = unicycle_rollout(*actions((3, 5, 64), device="meta"), DT)
    assert x.shape == y.shape == yaw.shape == (3, 5, 64) and x.device.type == "meta"


def test_trainer_rollout_flag_gives_the_same_metrics(tmp_path, monkeypatch):
    """--rollout fused (the default) and --rollout reference train and validate alike."""
    from distill.train import main as train_main
    reference_calls = []
    monkeypatch.setattr(rollout_module, "unicycle_rollout_reference",
                        lambda *a: reference_calls.append(1) or unicycle_rollout_reference(*a))
    records, calls = {}, {}
    for rollout in ops.ROLLOUTS:
        reference_calls.clear()
        out = tmp_path / rollout
        assert train_main(["--model", "baseline", "--model-size", "tiny", "--offline",
                           "--resolution", "32", "--max-epochs", "1", "--max-train-samples", "4",
                           "--max-val-samples", "4", "--batch-size", "4", "--num-workers", "0",
                           "--lr", "1e-3", "--warmup-epochs", "0", "--output-dir", str(out),
                           "--rollout", rollout]) == 0
        records[rollout] = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
        calls[rollout] = len(reference_calls)
    assert calls["fused"] == 0 and calls["reference"] > 0  # the flag chose the implementation
    assert rollout_module._rollout == "fused"  # restored after the run
    fused, reference = records["fused"], records["reference"]
    keys = [k for k in fused if k.startswith(("train_", "val_")) and isinstance(fused[k], float)]
    assert {"train_pos", "val_ade", "val_fde", "val_yaw_err_deg"} <= set(keys)
    for key in keys:
        assert fused[key] == pytest.approx(reference[key], rel=1e-4, abs=1e-6), key


# ---- CUDA --------------------------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(
    not (torch.cuda.is_available()
         and torch._C._dispatch_has_kernel_for_dispatch_key("distill::unicycle_rollout", "CUDA")),
    reason="needs a GPU and distill._C built with CUDA (DISTILL_BUILD_CUDA=1)")


@needs_cuda
def test_cuda_matches_the_reference():
    inputs = actions((2, 1000, 64), device="cuda")
    for g, w in zip(unicycle_rollout(*inputs, DT), unicycle_rollout_reference(*inputs, DT)):
        assert float((g - w).abs().max()) <= 1e-12 * float(w.abs().max())
    for g, w in zip(grads(unicycle_rollout, inputs), grads(unicycle_rollout_reference, inputs)):
        assert float((g - w).abs().max()) <= 1e-12 * float(w.abs().max())
    assert_float32_within_twice_the_reference_error("cuda")


@needs_cuda
def test_cuda_gradcheck_opcheck_and_half_dtypes():
    inputs = [t.requires_grad_() for t in actions((3, 9), device="cuda")]
    assert torch.autograd.gradcheck(lambda a, k, v: unicycle_rollout(a, k, v, DT), inputs)
    torch.library.opcheck(OP, (*inputs, DT))
    for dtype in (torch.bfloat16, torch.float16):
        half = actions((37, 64), dtype=dtype, device="cuda")
        for g, w in zip(unicycle_rollout(*half, DT), unicycle_rollout(*[t.float() for t in half], DT)):
            assert g.dtype == dtype
            torch.testing.assert_close(g.float(), w, rtol=1e-2, atol=1e-2)


@needs_cuda
def test_cuda_graph_capture_and_edge_cases():
    a, k, v = actions((512, 64), dtype=F32, device="cuda")
    static = [t.clone() for t in (a, k, v)]
    OP(*static, DT)  # warm up outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = OP(*static, DT)
    static[0].copy_(2 * a)
    graph.replay()
    torch.testing.assert_close(out, OP(2 * a, k, v, DT))
    for shape in [(0, 64), (5, 0), (5, 1)]:
        inputs = actions(shape, device="cuda")
        torch.testing.assert_close(unicycle_rollout(*inputs, DT), unicycle_rollout_reference(*inputs, DT))
