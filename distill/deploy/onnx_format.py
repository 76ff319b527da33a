"""ONNX: the deployable student through ``torch.onnx.export(..., dynamo=True)`` (torch.export,
then onnxscript's translation of every ATen op), checked with ``onnx.checker`` and run by ONNX
Runtime (CPU, or CUDA where onnxruntime-gpu offers it).

Our compiled ops go in as their plain-PyTorch references (``ops = "reference"``): the
references are a handful of standard operators (Cast, Sub, Div, Transpose, Reshape for the
frames; CumSum, Cos, Sin, Mul, Add for the rollout) that any ONNX runtime runs and fuses, where
an onnxscript translation of ``distill::unicycle_rollout`` would spell out the same
recurrence, and a custom ONNX operator would need our C++ kernels registered with every runtime
that loads the file. The teacher's v0 solves a Cholesky system, and ONNX has no Cholesky
operator: with ``kinematics="teacher"`` v0 is an input (docs/deploy.md).
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from .module import TensorSpec, dynamic_batch

NAME = "onnx"
FILE = "student.onnx"
OPS = "reference"
V0_IN_GRAPH = ("distill",)  # kinematics whose v0 estimate exports to ONNX
# Weights kept inside the .onnx file up to this size (protobuf's limit is 2 GiB); above it (the
# 500m student) they go to student.onnx.data beside it, which must travel with it.
MAX_INLINE_WEIGHTS = 3 * 2**29


def refusal(precision: str) -> str | None:
    """Why a student cannot be exported to ONNX at ``precision``, or None."""
    if precision == "bf16":
        return ("ONNX cannot hold a bfloat16 student: its Conv operator has no bfloat16 type "
                "(use --precision fp16, or --format aoti)")
    return None


def export(module: torch.nn.Module, example: tuple, inputs: list[TensorSpec],
           outputs: list[TensorSpec], path: Path) -> dict:
    """Writes ``path`` and checks it; returns the settings the model card records."""
    import onnx

    weights = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    # Quiet: every input's batch is one Dim, so its name is not used; the optimiser's constant
    # folding leaves a multi-output Split as it is, and says so once per Split.
    folding = logging.getLogger("onnxscript.optimizer._constant_folding")
    level = folding.level
    folding.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*axis name: batch will not be used")
            torch.onnx.export(module, example, str(path), dynamo=True, verbose=False,
                              input_names=[s.name for s in inputs],
                              output_names=[s.name for s in outputs],
                              dynamic_shapes=dynamic_batch(inputs),
                              external_data=weights > MAX_INLINE_WEIGHTS)
    finally:
        folding.setLevel(level)
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path), load_external_data=False)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return {"opset": opset, "onnx": onnx.__version__}


def has_float16(path: Path) -> bool:
    """Whether the ONNX file holds float16 weights (an fp16 export)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer)


class Runner:
    """An ONNX Runtime session of the artefact; ``threads`` intra-op threads (default torch's)."""

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        if has_float16(path):
            # ONNX Runtime 1.31's layout optimisations (ORT_ENABLE_ALL, the default) crash the
            # process (a segfault while creating the session) on our float16 graph on CPU.
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                     if p in ort.get_available_providers()]
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.names = [i.name for i in self.session.get_inputs()]
        self.threads = options.intra_op_num_threads

    def __call__(self, inputs: list) -> list[np.ndarray]:
        feeds = {name: np.asarray(x) for name, x in zip(self.names, inputs)}
        return self.session.run(None, feeds)
