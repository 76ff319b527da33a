"""The baseline student: trajectory heads only (no reasoning embedding)."""
from __future__ import annotations

from .student import Student


class BaselineStudent(Student):
    """The shared Student as is: "actions" / "action_logits" / "direct" and "mode_logits"."""
