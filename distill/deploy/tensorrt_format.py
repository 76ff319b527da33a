"""TensorRT, on a CUDA GPU with torch-tensorrt: the deployable student exported
(``torch.export``), compiled by ``torch_tensorrt.dynamo.compile`` into TensorRT engines for a
batch range, and saved as an ExportedProgram that embeds them (``torch_tensorrt.save``), loaded
with ``torch.export.load`` in a process that has imported ``torch_tensorrt``.

Our compiled ops go in as their plain-PyTorch references (``ops = "reference"``): TensorRT
converts those standard ops into its layers, where a custom op would fall back to PyTorch
between two engines. The teacher's v0 (a Cholesky solve) has no TensorRT layer either: with
``kinematics="teacher"`` v0 is an input, as for ONNX. The weights are cast to the precision
(``CastStudent``) and the engines follow the graph's dtypes (torch-tensorrt's explicit typing).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from .module import TensorSpec, dynamic_batch

NAME = "tensorrt"
FILE = "student.ep"
OPS = "reference"
V0_IN_GRAPH = ("distill",)
MAX_BATCH = 32  # the engines' batch range is 1..MAX_BATCH, built for batch 1


def unavailable() -> str | None:
    """Why TensorRT cannot run here, or None."""
    if not torch.cuda.is_available():
        return "TensorRT needs a CUDA GPU, and torch sees none"
    if importlib.util.find_spec("torch_tensorrt") is None:
        return "TensorRT needs the torch-tensorrt package (pip install torch-tensorrt)"
    return None


def refusal(precision: str) -> str | None:
    return unavailable()


def _engine_inputs(example: tuple, inputs: list[TensorSpec]) -> list:
    import torch_tensorrt

    return [torch_tensorrt.Input(min_shape=(1, *x.shape[1:]), opt_shape=(1, *x.shape[1:]),
                                 max_shape=(MAX_BATCH, *x.shape[1:]), dtype=x.dtype, name=s.name)
            for x, s in zip(example, inputs)]


def export(module: torch.nn.Module, example: tuple, inputs: list[TensorSpec],
           outputs: list[TensorSpec], path: Path) -> dict:
    """Builds the engines on this GPU and writes ``path``; returns the card's settings."""
    import torch_tensorrt

    module, example = module.cuda(), tuple(x.cuda() for x in example)
    program = torch.export.export(module, example, dynamic_shapes=dynamic_batch(inputs))
    compiled = torch_tensorrt.dynamo.compile(program, arg_inputs=_engine_inputs(example, inputs),
                                             use_explicit_typing=True)
    torch_tensorrt.save(compiled, str(path), output_format="exported_program",
                        arg_inputs=list(example))
    return {"torch_tensorrt": torch_tensorrt.__version__, "gpu": torch.cuda.get_device_name(),
            "max_batch": MAX_BATCH}


class Runner:
    """The saved program with its engines, on the GPU (``threads`` is unused: kept for the
    runners' common signature)."""

    def __init__(self, path: Path, threads: int | None = None):
        reason = unavailable()
        if reason:
            raise RuntimeError(reason)
        import torch_tensorrt  # noqa: F401  (registers the engines' runtime ops)

        self.program = torch.export.load(str(path)).module()
        self.threads = threads

    def __call__(self, inputs: list) -> list[np.ndarray]:
        tensors = [torch.as_tensor(x).cuda() for x in inputs]
        with torch.inference_mode():
            return [t.cpu().numpy() for t in self.program(*tensors)]
