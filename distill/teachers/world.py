"""The ``world`` teacher: the built-in world's planner. It labels samples of a world written by
``python -m distill.world`` (or the data scripts run on a copy made from one): sample ``idx`` of
a split is re-simulated from the world's seed, and its key must be the one stored. Its labels
carry the world's own provenance."""
from __future__ import annotations

from ..data.readers import DataError
from ..world.generate import SPLIT_STREAMS, simulate, world_provenance
from .base import TeacherLabel, TeacherSample


class WorldTeacher:
    name = "world"
    needs_history = False

    def __init__(self, seed: int = 0):
        self.seed = seed

    def label(self, samples: list[TeacherSample]) -> list[TeacherLabel]:
        labels = []
        for s in samples:
            if s.split not in SPLIT_STREAMS:
                raise DataError(f"{s.frames_path}: the built-in world has no split {s.split!r}")
            _, _, row = simulate(self.seed, s.split, s.index)
            key = (row["clip_ids"], int(row["t0_us"]))
            if key != s.key:
                raise DataError(f"{s.frames_path}: clip {s.key[0]} is not sample {s.index} of "
                                f"the built-in world's {s.split} split with seed {self.seed} "
                                f"(that is {key}); the world teacher labels world samples only")
            labels.append(TeacherLabel(row["trajectory_xyz"], row["trajectory_rot"],
                                       row["coc_texts"], row["scenario"]))
        return labels

    def provenance(self, t0_rule: str) -> dict:
        """The world's (every sample it labels has the world's t0, checked by its key)."""
        return world_provenance(self.seed)
