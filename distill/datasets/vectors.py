"""A scene as polylines in the target agent's frame at t0 (x forward, y left, metres): the
vector input of the Argoverse 2 benchmark. Plain numpy; the devkit side is in argoverse2.py.

    polylines (P, L, POINT_FEATURES) float32, point_mask (P, L) bool
    P = MAX_AGENTS + MAX_LANES + MAX_CROSSINGS rows, in that order, padded; L = MAX_POINTS.

Features of a point:
    0, 1   x, y / POSITION_SCALE
    2, 3   cos, sin of its direction: an agent's heading, a map polyline's segment direction
    4      speed / SPEED_SCALE (agents; 0 on the map)
    5      time relative to t0 / TIME_SCALE (agents' past: <= 0; 0 on the map)
    6..9   one-hot kind: target agent, other agent, lane centerline, pedestrian crossing
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

POSITION_SCALE = 10.0  # m per unit
SPEED_SCALE = 10.0  # m/s per unit
TIME_SCALE = 5.0  # s per unit: the Argoverse 2 history is 5 s
KINDS = ("target", "agent", "lane", "crossing")
POINT_FEATURES = 6 + len(KINDS)
MAX_AGENTS = 32  # the target first, then the others nearest to it at t0
MAX_LANES = 64  # lane centerlines nearest to the target
MAX_CROSSINGS = 8
MAX_POINTS = 50  # Argoverse 2's 50 observed steps; map polylines have fewer points
NUM_POLYLINES = MAX_AGENTS + MAX_LANES + MAX_CROSSINGS


@dataclass
class Frame:
    """The target agent's pose at t0 in world coordinates: origin (2,) and heading (rad)."""

    origin: np.ndarray
    yaw: float

    def points(self, xy: np.ndarray) -> np.ndarray:
        """World (..., 2) -> frame (..., 2)."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        d = np.asarray(xy, np.float64)[..., :2] - self.origin
        return np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], -1)

    def angles(self, yaw: np.ndarray) -> np.ndarray:
        """World headings -> frame headings, wrapped to (-pi, pi]."""
        return np.angle(np.exp(1j * (np.asarray(yaw, np.float64) - self.yaw)))


@dataclass
class Track:
    """An agent's observed past: world xy (S, 2), heading (S,), speed (S,), valid (S,) over
    the S history steps (the last at t0)."""

    xy: np.ndarray
    heading: np.ndarray
    speed: np.ndarray
    valid: np.ndarray


def _kind(name: str) -> np.ndarray:
    return np.eye(len(KINDS), dtype=np.float32)[KINDS.index(name)]


def track_points(track: Track, frame: Frame, kind: str, dt: float) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    """(S, POINT_FEATURES) features and (S,) validity of a track's history."""
    S = len(track.valid)
    yaw = frame.angles(track.heading)
    t = (np.arange(S) - (S - 1)) * dt
    feats = np.concatenate([
        frame.points(track.xy) / POSITION_SCALE, np.stack([np.cos(yaw), np.sin(yaw)], -1),
        (track.speed / SPEED_SCALE)[:, None], (t / TIME_SCALE)[:, None],
        np.broadcast_to(_kind(kind), (S, len(KINDS)))], -1)
    return np.where(track.valid[:, None], feats, 0.0).astype(np.float32), track.valid.copy()


def line_points(xy_world: np.ndarray, frame: Frame, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(n, POINT_FEATURES) features of a map polyline (n >= 2 points) and (n,) validity."""
    xy = frame.points(xy_world)
    step = np.diff(xy, axis=0)
    step = np.concatenate([step, step[-1:]])  # the last point keeps the last direction
    direction = step / np.maximum(np.linalg.norm(step, axis=-1, keepdims=True), 1e-6)
    n = len(xy)
    feats = np.concatenate([xy / POSITION_SCALE, direction, np.zeros((n, 2)),
                            np.broadcast_to(_kind(kind), (n, len(KINDS)))], -1)
    return feats.astype(np.float32), np.ones(n, bool)


def _nearest(items: list, distances: list[float], limit: int) -> list:
    order = np.argsort(np.asarray(distances, np.float64), kind="stable")[:limit]
    return [items[i] for i in order]


def build_polylines(target: Track, others: list[Track], lanes: list[np.ndarray],
                    crossings: list[np.ndarray], frame: Frame,
                    dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Polylines (NUM_POLYLINES, MAX_POINTS, POINT_FEATURES) and point mask of a scene: the
    target's track, the other tracks seen at any history step (nearest at their last
    observation first), lane centerlines and crossing polygons (nearest point first), each
    group truncated to its maximum."""
    polylines = np.zeros((NUM_POLYLINES, MAX_POINTS, POINT_FEATURES), np.float32)
    mask = np.zeros((NUM_POLYLINES, MAX_POINTS), bool)

    def put(row: int, feats: np.ndarray, valid: np.ndarray) -> None:
        feats, valid = feats[-MAX_POINTS:], valid[-MAX_POINTS:]  # the most recent points
        polylines[row, :len(feats)], mask[row, :len(valid)] = feats, valid

    put(0, *track_points(target, frame, "target", dt))
    seen = [t for t in others if t.valid.any()]
    last = [np.linalg.norm(frame.points(t.xy[np.flatnonzero(t.valid)[-1]])) for t in seen]
    for row, track in enumerate(_nearest(seen, last, MAX_AGENTS - 1), start=1):
        put(row, *track_points(track, frame, "agent", dt))
    for start, kind, lines, limit in ((MAX_AGENTS, "lane", lanes, MAX_LANES),
                                      (MAX_AGENTS + MAX_LANES, "crossing", crossings,
                                       MAX_CROSSINGS)):
        near = [np.linalg.norm(frame.points(line), axis=-1).min() for line in lines]
        for row, line in enumerate(_nearest(lines, near, limit), start=start):
            put(row, *line_points(line, frame, kind))
    return polylines, mask
