"""Checkpoints: the full state of a run, written atomically (temp file + rename) and loadable
with ``torch.load(weights_only=True)`` (tensors, numbers, strings, lists and dicts only)."""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

FORMAT_VERSION = 1


def run_prefix(config: dict) -> str:
    """``{model}_seed{seed}``: the prefix of every file of a run (the guide's names)."""
    return f"{config['model']}_seed{config['seed']}"


def checkpoint_path(output_dir, config: dict, tag: str) -> Path:
    """tag: "best", "latest" or "epoch{N}"."""
    return Path(output_dir) / f"{run_prefix(config)}_{tag}.pt"


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def save(path: Path, state: dict) -> Path:
    """Write ``state`` to ``path`` through a temp file in the same folder and a rename, so an
    interrupted save never leaves a broken checkpoint behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT_VERSION, **state}, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message is one line naming the file."""


def load(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a damaged file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not a distill checkpoint (format {FORMAT_VERSION})")
    return state


def run_files(output_dir, config: dict) -> list[Path]:
    """This run's checkpoints in ``output_dir``."""
    return sorted(Path(output_dir).glob(f"{run_prefix(config)}_*.pt"))


def periodic(output_dir, config: dict) -> list[Path]:
    """This run's ``_epoch{N}.pt`` files, oldest first."""
    files = Path(output_dir).glob(f"{run_prefix(config)}_epoch*.pt")
    return sorted(files, key=lambda p: int(p.stem.rsplit("epoch", 1)[1]))
