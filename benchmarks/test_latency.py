"""How fast an exported student plans (docs/deploy.md): batch-1 latency (median and p90 of
LATENCY_RUNS calls) and batch-8 throughput of the tiny and 110m reasoning students at 224 px,
each deployment path as a ratio to eager PyTorch in the same run.

The timed call is the deployable student (``distill.deploy.DeployedStudent``): uint8 frames
(B, 4, 4, 224, 224, 3) and the ego history in, plans out, the frames' normalisation, v0 and the
rollout included. Weights are random (the action head at zero, as a fresh student's): timing
does not depend on them.

CPU paths, all with torch's thread count (ONNX Runtime's intra-op threads set to it):
- ``eager`` (the reference): ``eval()``, ``torch.inference_mode()``, float32, the fused ops;
- ``torch.compile``: the same module through Inductor with freezing (the CPU inference setting:
  batch norms folded, oneDNN weights prepacked), compiled during the warm-up;
- ``onnxruntime``: the ONNX export (``distill.deploy.onnx_format``) in an ONNX Runtime session;
- ``aoti``: the AOTInductor package (``distill.deploy.aoti_format``), frozen, loaded back.
The paths are timed in interleaved rounds (eager, compile, ORT, AOTI, eager, ...) after WARMUP
calls each, so load from other processes hits all alike. On a CUDA GPU, ``test_gpu_latency``
times eager CUDA, a captured CUDA graph of it and TensorRT fp16 the same way (skipped without
a GPU, and its TensorRT row without torch-tensorrt).

No floor: the aim (the fastest exported path >= 1.5x eager at batch 1 on CPU) is reported, met
or not, in docs/deploy.md, with the table of a run. Exporting the 110m student takes minutes.
"""
from __future__ import annotations

import copy
import statistics
import time

import numpy as np
import pytest
import torch

from distill.deploy import aoti_format, onnx_format, tensorrt_format
from distill.deploy.module import DeployedStudent, example_inputs, input_specs, output_specs
from distill.kinematics import ActionNormalization
from distill.models import build_student, get_model_config

RESOLUTION = 224
LATENCY_RUNS = 50
WARMUP = 3
BATCH = 8  # throughput
THROUGHPUT_RUNS = {"tiny": 10, "110m": 5}
SIZES = ("tiny", "110m")


def fresh_student(size: str):
    """(model config, model) of a fresh reasoning student of preset ``size``, in eval mode."""
    cfg = get_model_config(size)
    return cfg, build_student("reasoning", cfg).eval()


def deployable(cfg, model, ops: str = "fused", precision: str = "fp32"):
    """(module, input specs, output specs): ``model`` as ``DeployedStudent`` (fp16 casts the
    model in place)."""
    stats = ActionNormalization(torch.zeros(2), torch.ones(2))
    inputs = input_specs(cfg, RESOLUTION, v0_input=False)
    module = DeployedStudent(model, cfg, stats, inputs, reasoning=True, ops=ops,
                             precision=precision)
    return module.eval(), inputs, output_specs(cfg, reasoning=True)


def in_inference(fn):
    def call(inputs):
        with torch.inference_mode():
            return fn(*inputs)
    return call


@pytest.fixture(scope="module", params=SIZES)
def cpu_paths(request, tmp_path_factory):
    """(size, input specs, {path: call(inputs)}) with every CPU path built (exports and
    compilation)."""
    size = request.param
    folder = tmp_path_factory.mktemp(f"latency_{size}")
    threads = torch.get_num_threads()
    cfg, model = fresh_student(size)
    module, inputs, outputs = deployable(cfg, model)
    paths = {"eager": in_inference(module),
             "torch.compile": in_inference(torch.compile(module, options={"freezing": True}))}
    for fmt in (onnx_format, aoti_format):
        exported, _, _ = deployable(cfg, model, ops=fmt.OPS)
        fmt.export(exported, example_inputs(inputs), inputs, outputs, folder / fmt.FILE)
        paths[{"onnx": "onnxruntime"}.get(fmt.NAME, fmt.NAME)] = fmt.Runner(folder / fmt.FILE,
                                                                             threads)
    torch.set_num_threads(threads)
    return size, inputs, paths


def interleaved(paths: dict, inputs: tuple, runs: int, sync=lambda: None) -> dict:
    """Seconds of each call, ``runs`` per path in interleaved rounds after WARMUP calls each."""
    for call in paths.values():
        for _ in range(WARMUP):
            call(inputs)
    times = {name: [] for name in paths}
    for _ in range(runs):
        for name, call in paths.items():
            start = time.perf_counter()
            call(inputs)
            sync()
            times[name].append(time.perf_counter() - start)
    return times


def record_latency(record, times: dict, params: dict) -> None:
    for stat, of in (("median", statistics.median), ("p90", lambda t: np.percentile(t, 90))):
        reference = of(times["eager"])
        for name, seconds in times.items():
            if name != "eager":
                record("deploy_latency_b1", {**params, "path": name, "stat": stat},
                       float(of(seconds)), "s", float(reference))


def test_cpu_latency_batch1(cpu_paths, record):
    size, specs, paths = cpu_paths
    inputs = example_inputs(specs, 1)
    times = interleaved(paths, inputs, LATENCY_RUNS)
    record_latency(record, times, {"model": size, "resolution": RESOLUTION, "device": "cpu",
                                   "threads": torch.get_num_threads()})


def test_cpu_throughput_batch8(cpu_paths, record):
    size, specs, paths = cpu_paths
    inputs = example_inputs(specs, BATCH)
    times = interleaved(paths, inputs, THROUGHPUT_RUNS[size])
    reference = BATCH / statistics.median(times["eager"])
    for name, seconds in times.items():
        if name != "eager":
            record("deploy_throughput_b8", {"model": size, "resolution": RESOLUTION,
                                            "device": "cpu", "threads": torch.get_num_threads(),
                                            "path": name},
                   BATCH / statistics.median(seconds), "samples/s", reference)


def cuda_graph(module, inputs: tuple):
    """A call that replays ``module`` on ``inputs`` (copied into static buffers) from one
    captured CUDA graph."""
    static = [x.cuda() for x in inputs]
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode():
        for _ in range(WARMUP):
            module(*static)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode():
        module(*static)

    def call(batch):
        for buffer, x in zip(static, batch):
            buffer.copy_(x, non_blocking=True)
        graph.replay()
    return call


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("size", SIZES)
def test_gpu_latency_batch1(size, record, tmp_path):
    cfg, model = fresh_student(size)
    module, inputs, outputs = deployable(cfg, model.cuda())
    batch = example_inputs(inputs, 1)
    eager = in_inference(module)
    paths = {"eager": lambda x: eager([t.cuda() for t in x]),
             "cuda_graph": cuda_graph(module, batch)}
    if tensorrt_format.unavailable() is None:
        half, _, _ = deployable(cfg, copy.deepcopy(model), ops="reference", precision="fp16")
        tensorrt_format.export(half, example_inputs(inputs), inputs, outputs,
                               tmp_path / tensorrt_format.FILE)
        paths["tensorrt_fp16"] = tensorrt_format.Runner(tmp_path / tensorrt_format.FILE)
    times = interleaved(paths, batch, LATENCY_RUNS, sync=torch.cuda.synchronize)
    record_latency(record, times, {"model": size, "resolution": RESOLUTION,
                                   "device": torch.cuda.get_device_name()})
