"""``model_card.json``, next to every artefact: what goes in (names, shapes, dtypes, cameras,
frame times, resolution, normalisation, where v0 comes from), what comes out (frames, units),
where the labels came from, how the student validated, and how it was exported."""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path

import torch

from ..data.provenance import code_version
from ..constants import CAMERAS, FRAME_OFFSETS_US, IMAGENET_MEAN, IMAGENET_STD
from ..models.config import ModelConfig

CARD = "model_card.json"
CARD_VERSION = 1
V0_FUNCTION = "distill.kinematics.speed_at_t0"


class DeployError(ValueError):
    """A bad artefact, request or input; the message is one line naming it."""


def v0_entry(cfg: ModelConfig, in_graph: bool) -> dict:
    """How the artefact gets the speed at t0 its rollout starts from."""
    call = f"{V0_FUNCTION}({cfg.kinematics!r}, history_xyz, history_rot, dt={cfg.dt:g})"
    if in_graph:
        return {"in_graph": True, "kinematics": cfg.kinematics, "dt": cfg.dt,
                "computed_as": f"in the graph: {call}"}
    return {"in_graph": False, "kinematics": cfg.kinematics, "dt": cfg.dt,
            "computed_as": f"an input: compute it with {call} (float32); the format has no "
                           "operator for the estimator's Cholesky solve (docs/deploy.md)"}


def scene_entry(cfg: ModelConfig, resolution: int) -> dict:
    """Cameras, frame times, resolution and normalisation of the scene input."""
    norm = {"where": "in the graph", "formula": "(pixel / 255 - mean[c]) / std[c] per RGB channel",
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    if cfg.input_type == "camera":
        frames = cfg.frame_channels // 3
        return {"input_type": "camera", "cameras": list(CAMERAS[:cfg.num_cameras]),
                "frame_times_s": [t / 1e6 for t in FRAME_OFFSETS_US[-frames:]],
                "resolution": [resolution, resolution], "layout": "RGB, HWC, uint8",
                "normalisation": norm}
    if cfg.input_type == "raster":
        return {"input_type": "raster", "resolution": [resolution, resolution],
                "layout": "RGB, HWC, uint8", "normalisation": norm}
    return {"input_type": "vector", "normalisation": "none: features as distill/datasets/"
                                                     "vectors.py scales them"}


def validation_entry(state: dict) -> dict:
    """The validation metrics the checkpoint holds (its epoch's record), and which weights."""
    metrics = state.get("metrics") or {}
    kept = {k: v for k, v in metrics.items() if k.startswith("val_") or k == "cv_ade"}
    return {"epoch": state["run"]["epoch"], "weights": "ema" if state["ema"] is not None
            else "model", "metrics": kept or "none in the checkpoint"}


def build(*, student, checkpoint: Path, fmt, precision: str, inputs: list, outputs: list,
          v0_in_graph: bool, settings: dict, check: dict) -> dict:
    """The card of an artefact of ``student`` (``distill.training.trained.TrainedStudent``)."""
    cfg, config = student.cfg, student.config
    return {
        "card_version": CARD_VERSION,
        "artefact": fmt.FILE,
        "format": fmt.NAME,
        "student": {"model": config.model, "size": config.model_size,
                    "model_config": dataclasses.asdict(cfg)},
        "inputs": [s.to_dict() for s in inputs],
        "scene": scene_entry(cfg, config.resolution),
        "history": {"steps": cfg.history_steps, "dt_s": cfg.dt,
                    "frame": "ego frame at t0: x forward, y left, z up; metres; the last pose at "
                             "the origin; yaw = atan2(R[1, 0], R[0, 0])"},
        "v0": v0_entry(cfg, v0_in_graph),
        "outputs": [s.to_dict() for s in outputs],
        "provenance": student.state.get("provenance") or "unknown",
        "validation": validation_entry(student.state),
        "export": {"checkpoint": str(Path(checkpoint).resolve()), "precision": precision,
                   "ops": fmt.OPS, "dynamic_batch": True, "torch": torch.__version__,
                   "code_version": code_version(), **settings, "check": check},
    }


def write_json(path: Path, data: dict) -> Path:
    """``data`` as JSON at ``path``, written atomically (a temp file renamed into place)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.fchmod(fd, 0o644)  # mkstemp's is 0o600
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def write(folder: Path, card: dict) -> Path:
    """``folder/model_card.json``, written atomically."""
    return write_json(Path(folder) / CARD, card)


def read(folder: Path) -> dict:
    """The card of the artefact folder ``folder``; DeployError (one line) when it is missing,
    unreadable or not a card of this version."""
    path = Path(folder) / CARD
    if not path.is_file():
        raise DeployError(f"{folder}: not an exported student (no {CARD}; make one with "
                          "python -m distill.export)")
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DeployError(f"{path}: not readable JSON ({type(e).__name__})") from None
    if not isinstance(card, dict) or card.get("card_version") != CARD_VERSION:
        raise DeployError(f"{path}: not a model card of version {CARD_VERSION}")
    return card
