"""Speed settings of the training step: what each flag turns on for the device at hand, and
what it falls back to (said in the log) where that device cannot do it. Pure decisions, so the
choices for a GPU are unit-tested on a CPU."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Accel:
    autocast_dtype: torch.dtype | None = None  # bf16 autocast on CUDA
    channels_last: bool = False  # NHWC convolutions (cuDNN's fast path for ResNets)
    tf32: bool = False  # TF32 matmuls and convolutions on Ampere+
    cuda_graphs: bool = False  # replay the captured step
    notes: tuple[str, ...] = field(default_factory=tuple)

    def autocast(self, device_type: str):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type, dtype=self.autocast_dtype)


def resolve(precision: str, cuda_graphs: bool, accumulation_steps: int,
            device_type: str, bf16_supported: bool = False, distributed: bool = False,
            negative_queue: bool = False) -> Accel:
    """The settings for ``device_type`` ("cuda" or "cpu") and the notes that explain each
    request that falls back. ``precision``: "auto" (bf16 where the GPU has it, else fp32),
    "bf16" or "fp32"."""
    notes = []
    on_cuda = device_type == "cuda"
    dtype = None
    if precision in ("auto", "bf16") and on_cuda and bf16_supported:
        dtype = torch.bfloat16
    elif precision == "bf16":
        notes.append("--precision bf16: this GPU has no bf16; training in fp32" if on_cuda else
                     "--precision bf16: bf16 autocast is for CUDA; training in fp32 on CPU")
    graphs = False
    if cuda_graphs:
        why = ("CUDA graphs need a GPU" if not on_cuda else
               "a graph holds one whole optimizer step, so it needs --accumulation-steps 1"
               if accumulation_steps != 1 else
               "not with DDP (its bucketed all-reduce is not captured)" if distributed else
               "--reasoning-negatives queue moves its ring buffer on the host"
               if negative_queue else None)
        if why:
            notes.append(f"--cuda-graphs: {why}; running the step eagerly")
        graphs = why is None
    if on_cuda:
        notes.append("GPU step: TF32 matmuls, channels_last convolutions, fused AdamW"
                     + (", bf16 autocast" if dtype else ", fp32")
                     + (", CUDA graphs" if graphs else ""))
    return Accel(autocast_dtype=dtype, channels_last=on_cuda, tf32=on_cuda,
                 cuda_graphs=graphs, notes=tuple(notes))


def apply_global(accel: Accel) -> None:
    if accel.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
