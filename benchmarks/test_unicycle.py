"""The fused unicycle rollout (torch.ops.distill.unicycle_rollout, forward and hand-written
backward) against the PyTorch reference, eager and under torch.compile: one forward and backward
through autograd, float32, T = 64 steps, for B in {256, 4096, 65536} trajectories, in M steps/s
(B x T per second). CPU with torch's thread count; on a GPU as well when distill._C has its
CUDA kernels.

The implementations are timed in interleaved rounds (fused, eager, compiled, fused, ...) and each
keeps its best round, so load from other processes, which comes and goes, hits all of them alike.
The floor: fused >= 4x eager at B = 4096 on the CPU.
"""
from __future__ import annotations

import pytest
import torch

from distill.ops import unicycle_rollout, unicycle_rollout_reference

from .conftest import timeit  # benchmarks/conftest.py, the suite's shared timer

T = 64
DT = 0.1
BATCHES = [256, 4096, 65536]
ROUNDS = 5
FLOOR_VS_EAGER = 4.0  # at B = 4096 (the issue measured eager at ~54 M steps/s on 2 threads)
CUDA_BUILT = torch._C._dispatch_has_kernel_for_dispatch_key("distill::unicycle_rollout", "CUDA")


def _inputs(batch: int, device: str):
    g = torch.Generator().manual_seed(batch)
    accel = torch.randn(batch, T, generator=g)
    curvature = 0.03 * torch.randn(batch, T, generator=g)
    v0 = 20 * torch.rand(batch, generator=g)
    weights = [torch.randn(batch, T, generator=g).to(device) for _ in range(3)]
    leaves = [t.to(device).requires_grad_() for t in (accel, curvature, v0)]
    return leaves, weights


def _step(rollout, leaves, weights, sync):
    """One forward and backward: d(sum of weighted x, y, yaw) / d(accel, curvature, v0)."""
    def step():
        out = rollout(*leaves, DT)
        torch.autograd.grad(out, leaves, weights)
        sync()
    return step


def _best_throughputs(steps: dict, batch: int) -> dict:
    """M steps/s of each step function: its best of ROUNDS interleaved rounds."""
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(ROUNDS):
        for name, fn in steps.items():
            best[name] = min(best[name], timeit(fn, warmup=1, repeat=3, min_time=0.02))
    return {name: batch * T / seconds / 1e6 for name, seconds in best.items()}


_compiled_reference = torch.compile(unicycle_rollout_reference, dynamic=False)


@pytest.mark.parametrize("batch", BATCHES)
def test_cpu_fused_vs_eager_and_compiled_reference(record, batch):
    leaves, weights = _inputs(batch, "cpu")
    no_sync = lambda: None  # noqa: E731
    speed = _best_throughputs({
        "fused": _step(unicycle_rollout, leaves, weights, no_sync),
        "eager": _step(unicycle_rollout_reference, leaves, weights, no_sync),
        "compiled": _step(_compiled_reference, leaves, weights, no_sync),
    }, batch)
    params = {"B": batch, "T": T, "dtype": "float32", "device": "cpu",
              "threads": torch.get_num_threads()}
    record("unicycle_fwd_bwd_vs_compile", params, speed["fused"], "M steps/s", speed["compiled"])
    record("unicycle_fwd_bwd_vs_eager", params, speed["fused"], "M steps/s", speed["eager"],
           floor=FLOOR_VS_EAGER if batch == 4096 else None)


@pytest.mark.parametrize("capability", ["scalar", "avx2", "avx512"])
def test_cpu_kernel_sets(record, capability, monkeypatch):
    """Each SIMD kernel set (DISTILL_CPU_CAPABILITY) against eager, B = 4096: what a CPU without
    AVX-512 (or without AVX2) gets."""
    monkeypatch.setenv("DISTILL_CPU_CAPABILITY", capability)
    leaves, weights = _inputs(4096, "cpu")
    try:
        unicycle_rollout(*leaves, DT)
    except RuntimeError as error:  # this CPU (or build) lacks it
        pytest.skip(str(error).splitlines()[0])
    no_sync = lambda: None  # noqa: E731
    speed = _best_throughputs({
        "fused": _step(unicycle_rollout, leaves, weights, no_sync),
        "eager": _step(unicycle_rollout_reference, leaves, weights, no_sync),
    }, 4096)
    record("unicycle_fwd_bwd_cpu_kernel_set",
           {"capability": capability, "B": 4096, "T": T, "threads": torch.get_num_threads()},
           speed["fused"], "M steps/s", speed["eager"])


@pytest.mark.skipif(not (torch.cuda.is_available() and CUDA_BUILT),
                    reason="needs a GPU and distill._C built with CUDA (DISTILL_BUILD_CUDA=1)")
@pytest.mark.parametrize("batch", BATCHES)
def test_cuda_fused_vs_eager_and_compiled_reference(record, batch):
    leaves, weights = _inputs(batch, "cuda")
    speed = _best_throughputs({
        "fused": _step(unicycle_rollout, leaves, weights, torch.cuda.synchronize),
        "eager": _step(unicycle_rollout_reference, leaves, weights, torch.cuda.synchronize),
        "compiled": _step(_compiled_reference, leaves, weights, torch.cuda.synchronize),
    }, batch)
    params = {"B": batch, "T": T, "dtype": "float32", "device": torch.cuda.get_device_name()}
    record("unicycle_fwd_bwd_vs_eager", params, speed["fused"], "M steps/s", speed["eager"])
    record("unicycle_fwd_bwd_vs_compile", params, speed["fused"], "M steps/s", speed["compiled"])

