"""From a checkpoint to an artefact folder: ``export_student`` loads the student the run
selected, wraps it as a ``DeployedStudent`` with the format's ops and v0 placement, exports it,
runs the artefact on a few example inputs against the eager module (the card's ``check``) and
writes ``model_card.json`` beside it. The folder appears whole or not at all."""
from __future__ import annotations

import copy
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..training.trained import TrainedStudent
from . import aoti_format, onnx_format, tensorrt_format
from .card import CARD, DeployError
from .card import build as build_card
from .card import write as write_card
from .module import (PRECISIONS, DeployedStudent, example_inputs, input_specs,
                     output_specs)

FORMATS = {m.NAME: m for m in (onnx_format, aoti_format, tensorrt_format)}
CHECK_BATCH = 3  # example inputs the export runs through the artefact and the eager module


def check_request(input_type: str, fmt: str, precision: str):
    """The format module of ``fmt``; DeployError (one line) for an unknown format or precision
    or one the format cannot hold or run here."""
    if fmt not in FORMATS:
        raise DeployError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    if precision not in PRECISIONS:
        raise DeployError(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    reason = FORMATS[fmt].refusal(precision)
    if reason:
        raise DeployError(f"cannot export this {input_type} student to {fmt}: {reason}")
    return FORMATS[fmt]


def deployed(student: TrainedStudent, fmt: str, precision: str = "fp32", ops: str | None = None
             ) -> tuple[DeployedStudent, list, list]:
    """(module, input specs, output specs) of ``student`` as format ``fmt`` exports it; ``ops``
    overrides the format's ops ("fused" is the eager reference of every format)."""
    cfg, reasoning = student.cfg, student.config.model == "reasoning"
    f = check_request(cfg.input_type, fmt, precision)
    inputs = input_specs(cfg, student.config.resolution, cfg.kinematics not in f.V0_IN_GRAPH)
    outputs = output_specs(cfg, reasoning)
    # CastStudent casts its model in place: a copy, so that the student stays float32.
    model = student.model if precision == "fp32" else copy.deepcopy(student.model)
    module = DeployedStudent(model, cfg, student.stats, inputs, reasoning, ops=ops or f.OPS,
                             precision=precision)
    return module.eval(), inputs, outputs


def parity(got: list, want: tuple, outputs: list) -> dict:
    """Max absolute difference per output (trajectories in m / rad, probabilities, embedding)."""
    return {s.name: float(np.abs(np.asarray(g, np.float64) - w.double().numpy()).max())
            for s, g, w in zip(outputs, got, want)}


def default_folder(checkpoint: Path, fmt: str, precision: str) -> Path:
    return Path(checkpoint).with_name(f"{Path(checkpoint).stem}_{fmt}_{precision}")


def export_student(student: TrainedStudent, checkpoint: Path, fmt: str, out: Path | None = None,
                   precision: str = "fp32") -> Path:
    """Exports ``student`` (read from ``checkpoint``) to the folder ``out`` (default: next to
    the checkpoint, ``{stem}_{fmt}_{precision}``); returns it."""
    f = FORMATS[fmt]
    module, inputs, outputs = deployed(student, fmt, precision)
    out = Path(out) if out else default_folder(checkpoint, fmt, precision)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    work.chmod(0o755)  # mkdtemp's is 0o700
    try:
        settings = f.export(module, example_inputs(inputs), inputs, outputs, work / f.FILE)
        check_inputs = example_inputs(inputs, CHECK_BATCH, seed=1)
        eager, _, _ = deployed(student, fmt, ops="fused")
        with torch.inference_mode():
            want = eager(*check_inputs)
        got = f.Runner(work / f.FILE)(list(check_inputs))
        check = {"inputs": f"example_inputs(batch={CHECK_BATCH}, seed=1)",
                 "max_abs_error_vs_eager_fp32": parity(got, want, outputs)}
        write_card(work, build_card(student=student, checkpoint=checkpoint, fmt=f,
                                    precision=precision, inputs=inputs, outputs=outputs,
                                    v0_in_graph="v0" not in module.names, settings=settings,
                                    check=check))
        _replace_folder(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def _replace_folder(new: Path, out: Path) -> None:
    """Moves the finished folder ``new`` to ``out``, replacing an older export there."""
    if out.exists():
        if not (out / CARD).is_file():
            raise DeployError(f"{out}: exists and is not an exported student; not replacing it")
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        new.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        new.rename(out)
