"""The Teacher interface: a batch of samples in, one label per sample out."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..data.formats import Key
from ..data.real.cli import ScriptError


class TeacherError(ScriptError):
    """A teacher that cannot run here (its package or a GPU is missing); one line."""


@dataclass(frozen=True)
class TeacherSample:
    """One sample to label: its split, global sample index, key and frames file, and its ego
    history (float32 (16, 3) and (16, 3, 3), or None where the teacher does not need it)."""

    split: str
    index: int
    key: Key
    frames_path: Path
    history_xyz: np.ndarray | None = None
    history_rot: np.ndarray | None = None


@dataclass(frozen=True)
class TeacherLabel:
    """A teacher's output for one sample: poses at t0+0.1 ... t0+6.4 s in the ego frame at t0,
    float32 xyz (64, 3) and rotations (64, 3, 3), the chain-of-causation sentence and, for the
    built-in world only, the scenario."""

    trajectory_xyz: np.ndarray
    trajectory_rot: np.ndarray
    coc_text: str
    scenario: str | None = None


class Teacher(Protocol):
    name: str
    needs_history: bool  # whether samples must carry their ego history

    def label(self, samples: list[TeacherSample]) -> list[TeacherLabel]:
        """One label per sample, in order."""
        ...

    def provenance(self, t0_rule: str) -> dict:
        """The labels' provenance (``distill.data.provenance.build``) given how t0 was chosen."""
        ...
