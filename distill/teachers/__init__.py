"""Teachers that label samples for distillation (``scripts/generate_teacher_labels.py``):
``world`` (the built-in world's planner, for world samples) and ``alpamayo-r1`` (NVIDIA's
Alpamayo-R1 through its own package, on a GPU). The interface is ``base.Teacher``."""
from __future__ import annotations

from .base import Teacher, TeacherError, TeacherLabel, TeacherSample

TEACHERS = ("world", "alpamayo-r1")

__all__ = ["TEACHERS", "Teacher", "TeacherError", "TeacherLabel", "TeacherSample",
           "build_teacher"]


def build_teacher(name: str, **options) -> Teacher:
    """The teacher ``name`` (one of TEACHERS) with its options (see each class)."""
    if name == "world":
        from .world import WorldTeacher
        return WorldTeacher(**options)
    if name == "alpamayo-r1":
        from .alpamayo import AlpamayoTeacher
        return AlpamayoTeacher(**options)
    raise TeacherError(f"unknown teacher {name!r}; expected one of {', '.join(TEACHERS)}")
