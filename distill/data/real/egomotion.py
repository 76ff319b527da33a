"""Ego poses from a clip's egomotion table: interpolated to exact times (positions linearly,
rotations by slerp) and expressed in the ego frame at t0."""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq
from scipy.spatial.transform import Rotation, Slerp

from ...constants import DT, HISTORY_STEPS
from ..readers import DataError

COLUMNS = ("timestamp", "x", "y", "z", "qx", "qy", "qz", "qw")


@dataclass
class Egomotion:
    """A clip's ego poses: timestamps int64 (T,) us, xyz float64 (T, 3) m, quaternions float64
    (T, 4) scalar-last (qx, qy, qz, qw)."""

    timestamps: np.ndarray
    xyz: np.ndarray
    quat: np.ndarray


def read_egomotion(data: bytes, where: str) -> Egomotion:
    """Parse ``<clip_id>.egomotion.parquet`` (its other columns, v, a, curvature, are unused)."""
    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as e:  # pyarrow raises several types for unreadable files
        raise DataError(f"{where}: egomotion not readable ({type(e).__name__}: {e})") from None
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(f"{where}: egomotion has no column '{missing[0]}'")
    cols = {c: table.column(c).to_numpy() for c in COLUMNS}
    ego = Egomotion(cols["timestamp"].astype(np.int64),
                    np.stack([cols[c] for c in "xyz"], 1).astype(np.float64),
                    np.stack([cols[c] for c in ("qx", "qy", "qz", "qw")], 1).astype(np.float64))
    if len(ego.timestamps) < 2 or (np.diff(ego.timestamps) <= 0).any():
        raise DataError(f"{where}: egomotion timestamps are fewer than 2 or not increasing")
    if not (np.isfinite(ego.xyz).all() and np.isfinite(ego.quat).all()) or \
            (np.linalg.norm(ego.quat, axis=1) < 1e-6).any():
        raise DataError(f"{where}: egomotion has non-finite values or zero quaternions")
    return ego


def poses_at(ego: Egomotion, times: np.ndarray, where: str) -> tuple[np.ndarray, Rotation]:
    """Positions (n, 3) and rotations at ``times`` (us), which must lie within the table."""
    lo, hi = ego.timestamps[0], ego.timestamps[-1]
    if times.min() < lo or times.max() > hi:
        raise DataError(f"{where}: egomotion covers {lo}..{hi} us, poses are needed at "
                        f"{int(times.min())}..{int(times.max())} us")
    xyz = np.stack([np.interp(times, ego.timestamps, ego.xyz[:, i]) for i in range(3)], 1)
    rot = Slerp(ego.timestamps.astype(np.float64), Rotation.from_quat(ego.quat))(times)
    return xyz, rot


def history_times(t0_us: int) -> np.ndarray:
    """int64 (16,): t0 - 1.5 s ... t0 every 0.1 s."""
    step = int(round(DT * 1e6))
    return t0_us + step * np.arange(-(HISTORY_STEPS - 1), 1, dtype=np.int64)


def ego_history(ego: Egomotion, t0_us: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """float32 xyz (16, 3) and rotations (16, 3, 3) at t0 - 1.5 s ... t0 in the ego frame at
    t0: xyz_local = R_t0^-1 (xyz - xyz_t0), rot_local = R_t0^-1 R_i."""
    xyz, rot = poses_at(ego, history_times(t0_us), where)
    to_t0 = rot[-1].inv()
    return (to_t0.apply(xyz - xyz[-1]).astype(np.float32),
            (to_t0 * rot).as_matrix().astype(np.float32))
