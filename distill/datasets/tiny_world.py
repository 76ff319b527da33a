"""The geometry both tiny benchmark datasets are drawn from: a four-way intersection of two
two-lane roads (right-hand traffic), its lanes, crossings and drivable area, and vehicles that
drive a route through it. At the junction a vehicle goes straight, left or right with nothing
before it telling which, as on the real benchmarks' forks.

Local frame: the junction at the origin, roads along x and y, metres. Approach ``a`` (0..3)
enters heading ``a * 90`` degrees (0: from the west heading east).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LANE_WIDTH = 3.5
HALF_ROAD = LANE_WIDTH  # two lanes, one each way
INNER = 8.0  # half size of the junction box where the connector lanes run
ARM = 100.0  # road length from the centre
CROSSING_WIDTH = 3.0
TURNS = ("straight", "left", "right")


def rotate(xy: np.ndarray, approach: int) -> np.ndarray:
    a = approach * np.pi / 2
    c, s = np.cos(a), np.sin(a)
    return np.asarray(xy) @ np.array([[c, s], [-s, c]])


def _arc(center, radius: float, start: float, end: float, n: int = 24) -> np.ndarray:
    angles = np.linspace(start, end, n)
    return np.stack([center[0] + radius * np.cos(angles), center[1] + radius * np.sin(angles)], -1)


def _line(a, b, step: float = 1.0) -> np.ndarray:
    n = max(2, int(np.ceil(np.linalg.norm(np.subtract(b, a)) / step)) + 1)
    return np.linspace(a, b, n)


def lane_centerlines() -> dict[str, np.ndarray]:
    """Centerlines (n, 2) by name: ``in{a}``, ``out{a}`` (the lane leaving towards heading
    a * 90 degrees) and ``{turn}{a}`` connectors, a = 0..3."""
    y = -LANE_WIDTH / 2  # the eastbound lane of the canonical approach
    canonical = {
        "in": _line((-ARM, y), (-INNER, y)),
        "out": _line((INNER, y), (ARM, y)),
        "straight": _line((-INNER, y), (INNER, y)),
        # right: clockwise onto the southbound lane (x = -1.75); left: onto northbound (+1.75)
        "right": _arc((-INNER, y - (INNER + y)), INNER + y, np.pi / 2, 0.0),
        "left": _arc((-INNER, y + (INNER - y)), INNER - y, -np.pi / 2, 0.0),
    }
    return {f"{name}{a}": rotate(line, a) for a in range(4) for name, line in canonical.items()}


def crossings() -> list[np.ndarray]:
    """Pedestrian crossings: (2, 2, 2) = two edges of two points, one per approach."""
    x0, x1 = -INNER - CROSSING_WIDTH, -INNER
    edges = np.array([[(x0, -HALF_ROAD), (x0, HALF_ROAD)], [(x1, -HALF_ROAD), (x1, HALF_ROAD)]])
    return [rotate(edges, a) for a in range(4)]


def drivable_area() -> np.ndarray:
    """(20, 2) outline of the cross-shaped road surface, counterclockwise."""
    quarter = [(-ARM, -HALF_ROAD), (-INNER, -HALF_ROAD), (-INNER, -INNER), (-HALF_ROAD, -INNER),
               (-HALF_ROAD, -ARM)]
    return np.concatenate([rotate(quarter, a) for a in range(4)])


def route(approach: int, turn: str) -> np.ndarray:
    """The centerline (n, 2) a vehicle entering from ``approach`` follows for ``turn``."""
    lanes = lane_centerlines()
    exit_heading = (approach + {"straight": 0, "left": 1, "right": -1}[turn]) % 4
    return np.concatenate([lanes[f"in{approach}"], lanes[f"{turn}{approach}"][1:],
                           lanes[f"out{exit_heading}"][1:]])


@dataclass
class Motion:
    """Poses of a vehicle at given times: xy (n, 2), heading (n,), speed (n,)."""

    xy: np.ndarray
    heading: np.ndarray
    speed: np.ndarray


def drive(path: np.ndarray, s0: float, v0: float, accel: float, times: np.ndarray) -> Motion:
    """Along ``path`` from arc length s0 at speed v0 (m/s) with constant acceleration (the
    speed floored at 0.5 m/s), at ``times`` (s); held at the path's end."""
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    speed = np.maximum(v0 + accel * times, 0.5)
    s = s0 + np.concatenate([[0.0], np.cumsum((speed[1:] + speed[:-1]) / 2 * np.diff(times))])
    s = np.clip(s, 0, arc[-1])
    xy = np.stack([np.interp(s, arc, path[:, 0]), np.interp(s, arc, path[:, 1])], -1)
    i = np.clip(np.searchsorted(arc, s, side="right") - 1, 0, len(seg) - 1)
    d = path[i + 1] - path[i]
    return Motion(xy, np.arctan2(d[:, 1], d[:, 0]), speed)


def to_world(xy: np.ndarray, origin: np.ndarray, yaw: float) -> np.ndarray:
    """Local (..., 2) -> world: rotated by yaw, then shifted by origin."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.asarray(xy) @ np.array([[c, s], [-s, c]]) + origin
