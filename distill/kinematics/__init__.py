"""The unicycle model of the students and the teacher, in plain PyTorch: it imports nothing of
``distill`` but ``distill.constants`` (so every other layer may use it).

- ``unicycle``: the forward model (``unicycle_rollout_reference``, the oracle of the fused op
  ``distill.ops.unicycle_rollout``), ``wrap_angle`` and the model's position equations
  (``trapezoid_rows``) that both inverses solve.
- ``inverse``: our speed at t0 (``estimate_v0``) and trajectory -> actions inverse
  (``actions_from_trajectory``).
- ``stats``: ``ActionNormalization``, the actions' normalisation and bins.
- ``teacher`` (with ``teacher_steps``, its smoothed least squares): the teacher's (Alpamayo-R1's)
  own speed estimate and inverse, reproduced (docs/teacher_kinematics.md).
- ``choice``: the pair a student uses by name (``speed_at_t0``, ``trajectory_actions``:
  ``"distill"`` or ``"teacher"``).
"""
from .choice import check_kinematics, speed_at_t0, trajectory_actions
from .inverse import actions_from_trajectory, estimate_v0
from .stats import ActionNormalization
from .unicycle import unicycle_rollout_reference, wrap_angle

__all__ = [
    "ActionNormalization",
    "actions_from_trajectory",
    "check_kinematics",
    "estimate_v0",
    "speed_at_t0",
    "trajectory_actions",
    "unicycle_rollout_reference",
    "wrap_angle",
]
