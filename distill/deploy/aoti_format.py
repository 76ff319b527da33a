"""AOTInductor: the deployable student exported (``torch.export``) and compiled ahead of time
by Inductor into a ``.pt2`` package (``torch._inductor.aoti_compile_and_package``), loaded with
``torch._inductor.aoti_load_package`` in any process that has torch and ``distill._C``.

Our compiled ops stay custom ops in the package (``ops = "fused"``): the package calls
``torch.ops.distill.normalize_frames`` and ``unicycle_rollout`` through Inductor's proxy
executor, i.e. the very kernels the trainer ran, so the artefact plans what eager plans. The
loading process must have registered them (``import distill.ops``, as ``load_student`` does);
without, loading fails with "Could not find schema for distill::normalize_frames".

Compiled with Inductor's freezing (under ``torch.no_grad``): the weights become constants, batch
norms fold into the convolutions and oneDNN prepacks their weights. The CPU kernels are
generated for this machine's instruction set and torch's thread count at export time (both in
the model card): export on the machine that runs the package.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import ops  # noqa: F401  (registers torch.ops.distill.*, which the package calls)
from .module import TensorSpec, dynamic_batch

NAME = "aoti"
FILE = "student.pt2"
OPS = "fused"
V0_IN_GRAPH = ("distill", "teacher")  # both estimators compile (the teacher's: LAPACK calls)


def refusal(precision: str) -> str | None:
    """Every student and precision compiles."""
    return None


def export(module: torch.nn.Module, example: tuple, inputs: list[TensorSpec],
           outputs: list[TensorSpec], path: Path) -> dict:
    """Writes the package ``path``; returns the settings the model card records."""
    program = torch.export.export(module, example, dynamic_shapes=dynamic_batch(inputs))
    with torch.no_grad():  # Inductor freezes only without autograd
        torch._inductor.aoti_compile_and_package(program, package_path=str(path),
                                                 inductor_configs={"freezing": True})
    return {"threads": torch.get_num_threads(), "freezing": True,
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


class Runner:
    """The loaded package. Its CPU kernels use torch's threads (``threads`` sets them)."""

    def __init__(self, path: Path, threads: int | None = None):
        if threads:
            torch.set_num_threads(threads)
        self.package = torch._inductor.aoti_load_package(str(path))
        self.threads = torch.get_num_threads()

    def __call__(self, inputs: list) -> list[np.ndarray]:
        tensors = [torch.as_tensor(x) for x in inputs]
        with torch.inference_mode():
            return [t.numpy() for t in self.package(*tensors)]
