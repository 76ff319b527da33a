"""``--profile N``: a torch.profiler trace of N training steps after a short warmup, written as
a Chrome trace (open it in chrome://tracing or https://ui.perfetto.dev). docs/profiling.md shows
how to go deeper into the CUDA kernels with Nsight Systems / Compute."""
from __future__ import annotations

from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function, schedule

WARMUP_STEPS = 3  # the first steps carry one-time costs (allocator, autotuning, compilation)


class StepProfiler:
    """Call ``step()`` after every training step; the trace is written after
    WARMUP_STEPS + n steps and ``path`` is set."""

    def __init__(self, n: int, out: Path, device: torch.device):
        self.path: Path | None = None
        self._target = Path(out)
        activities = [ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(ProfilerActivity.CUDA)
        self._prof = profile(activities=activities, record_shapes=True, with_stack=False,
                             schedule=schedule(wait=0, warmup=WARMUP_STEPS, active=n, repeat=1),
                             on_trace_ready=self._write)
        self._cuda = device.type == "cuda"
        self._steps = 0
        self._prof.__enter__()
        self._open = True

    def _write(self, prof) -> None:
        self._target.parent.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(self._target))
        self.path = self._target

    def step(self) -> None:
        """After each training step. On a GPU the recorded steps are also framed by
        cudaProfilerStart/Stop (``nsys --capture-range=cudaProfilerApi``, docs/profiling.md)."""
        if self._open:
            self._prof.step()
            self._steps += 1
            if self._cuda and self._steps == WARMUP_STEPS:
                torch.cuda.profiler.start()
            if self.path is not None:
                self.close()

    def close(self) -> None:
        if self._open:
            if self._cuda and self._steps >= WARMUP_STEPS:
                torch.cuda.profiler.stop()
            self._prof.__exit__(None, None, None)
            self._open = False


def fetched(batches):
    """``batches`` with each fetch marked as ``distill.data`` in the trace."""
    it = iter(batches)
    while True:
        with record_function("distill.data"):
            batch = next(it, None)
        if batch is None:
            return
        yield batch
