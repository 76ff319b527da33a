"""The teacher checkpoint's own action normalisation (``--action-stats teacher``): Alpamayo-R1's
``config.json`` holds its action space as ``action_space_cfg`` (the arguments of its
``UnicycleAccelCurvatureActionSpace``: ``accel_mean``, ``accel_std``, ``curvature_mean``,
``curvature_std``, ``dt``, ``n_waypoints``, ...); a student normalised the same way predicts
in the teacher's units."""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ..data.readers import DataError
from ..kinematics import ActionNormalization

STATS_KEYS = ("accel_mean", "accel_std", "curvature_mean", "curvature_std")


def _number(path: Path, space: dict, key: str) -> float:
    value = space.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataError(f"{path}: action_space_cfg.{key} must be a finite number, got {value!r}")
    return float(value)


def teacher_action_normalization(path: str | Path, dt: float, horizon: int) -> ActionNormalization:
    """The normalisation in the teacher config at ``path`` (its ``config.json``, or the folder
    holding it), checked against the student's ``dt`` (s) and ``horizon`` (steps): one-line
    ``DataError`` naming the file and the field otherwise."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: teacher config not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not a readable JSON teacher config ({e})") from None
    space = config.get("action_space_cfg") if isinstance(config, dict) else None
    if not isinstance(space, dict):
        raise DataError(f"{path}: no action_space_cfg object (not an Alpamayo-R1 config?)")
    for key, want in (("dt", dt), ("n_waypoints", horizon)):
        if key in space and not math.isclose(_number(path, space, key), want):
            raise DataError(f"{path}: action_space_cfg.{key} is {space[key]}, the student's "
                            f"is {want}")
    a_mean, a_std, k_mean, k_std = (_number(path, space, k) for k in STATS_KEYS)
    if a_std <= 0 or k_std <= 0:
        raise DataError(f"{path}: action_space_cfg stds must be > 0, got accel_std {a_std}, "
                        f"curvature_std {k_std}")
    return ActionNormalization(torch.tensor([a_mean, k_mean]), torch.tensor([a_std, k_std]))
