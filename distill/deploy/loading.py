"""``load_student(DIR)``: an exported student, ready to plan, whatever its format.

    student = load_student("checkpoints/reasoning_seed42_best_onnx_fp32")
    out = student.plan(frames=frames, history_xyz=xyz, history_rot=rot)  # numpy or torch
    out["trajectories"]  # (B, K, T, 3) float32: x, y (m), yaw (rad), ego frame at t0

Inputs are checked against the model card before they reach the runtime: a missing or unknown
name, a wrong dtype or shape is a ``DeployError`` naming the input and what the artefact takes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..kinematics import speed_at_t0
from . import card as cards
from .card import DeployError
from .exporter import FORMATS


def _describe(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


class ExportedStudent:
    """An artefact folder's runtime (``runner``) and card; see the module docstring."""

    def __init__(self, folder: Path, threads: int | None = None):
        self.folder = Path(folder)
        self.card = cards.read(self.folder)
        fmt = FORMATS.get(self.card.get("format"))
        if fmt is None:
            raise DeployError(f"{self.folder / cards.CARD}: unknown format "
                              f"{self.card.get('format')!r}")
        artefact = self.folder / self.card["artefact"]
        if not artefact.is_file():
            raise DeployError(f"{artefact}: missing (the card names it)")
        self.inputs, self.outputs = self.card["inputs"], self.card["outputs"]
        self.runner = fmt.Runner(artefact, threads)

    @property
    def input_names(self) -> list[str]:
        return [s["name"] for s in self.inputs]

    def check(self, named: dict) -> list[np.ndarray]:
        """The inputs in the artefact's order, as numpy arrays, once each matches the card."""
        unknown = sorted(set(named) - set(self.input_names))
        if unknown:
            raise DeployError(f"{self.folder.name}: unknown input(s) {unknown}; it takes "
                              f"{', '.join(self.input_names)}")
        arrays, batch = [], None
        for spec in self.inputs:
            if spec["name"] not in named:
                raise DeployError(f"{self.folder.name}: input {spec['name']!r} is missing")
            x = np.asarray(named[spec["name"]])
            want = [batch or x.shape[0] if d == "B" and x.ndim else d for d in spec["shape"]]
            if x.dtype != np.dtype(spec["dtype"]) or list(x.shape) != want:
                raise DeployError(
                    f"{self.folder.name}: input {spec['name']!r} is {x.dtype} {_describe(x.shape)}"
                    f", the artefact takes {spec['dtype']} {_describe(spec['shape'])}"
                    + (f" with B = {batch}" if batch else ""))
            batch = batch or x.shape[0]
            arrays.append(x)
        return arrays

    def run(self, **named) -> dict[str, np.ndarray]:
        """The artefact's outputs by name for inputs by name (numpy arrays or CPU tensors)."""
        arrays = self.check({k: v.numpy() if isinstance(v, torch.Tensor) else v
                             for k, v in named.items()})
        return dict(zip([s["name"] for s in self.outputs], self.runner(arrays)))

    def plan(self, **named) -> dict[str, np.ndarray]:
        """``run``, with v0 computed as the card says when the artefact takes it as an input
        and it is not given."""
        v0 = self.card["v0"]
        if not v0["in_graph"] and "v0" not in named:
            named["v0"] = speed_at_t0(v0["kinematics"], torch.as_tensor(named["history_xyz"]),
                                      torch.as_tensor(named["history_rot"]), v0["dt"])
        return self.run(**named)


def load_student(folder, threads: int | None = None) -> ExportedStudent:
    """The exported student in ``folder`` (``python -m distill.export``'s output); ``threads``:
    the runtime's intra-op threads (default torch's)."""
    return ExportedStudent(Path(folder), threads)
