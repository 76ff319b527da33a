"""Camera students: configs, presets and builders.

    cfg = get_model_config("tiny", output="direct", num_modes=6)
    model = build_student("reasoning", cfg)  # or ReasoningStudent.from_model_config(cfg)
    out = model(frames, history, v0)         # see distill.models.student.Student
"""
from __future__ import annotations

from .baseline_student import BaselineStudent
from .config import MODEL_SIZES, ModelConfig, get_model_config
from .reasoning_student import ReasoningStudent
from .student import Student

STUDENTS = {"baseline": BaselineStudent, "reasoning": ReasoningStudent}


def build_student(kind: str, cfg: ModelConfig) -> Student:
    """A "baseline" or "reasoning" student for `cfg`."""
    if kind not in STUDENTS:
        raise ValueError(f"unknown student kind {kind!r}; valid kinds: {', '.join(STUDENTS)}")
    return STUDENTS[kind].from_model_config(cfg)


__all__ = ["MODEL_SIZES", "STUDENTS", "BaselineStudent", "ModelConfig", "ReasoningStudent",
           "Student", "build_student", "get_model_config"]
