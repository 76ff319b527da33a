"""What a scene of the built-in world holds: the ego's path, the roads and their markings as
ground quads, boxes (vehicles, pedestrians, lights, signs, scenery) with poses over the time
grid, and the causes the planner reacts to. Scenario builders (``scenarios.py``) fill it."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..constants import DT, FUTURE_STEPS, HISTORY_STEPS
from .geometry import Path

# The simulation's time grid: t = -2.0 s ... +6.4 s every 0.1 s. The planner runs closed-loop
# over all of it, so the ego history (t0 - 1.5 s ... t0) already shows its reactions.
SIM_START = -2.0
T0_INDEX = int(round(-SIM_START / DT))


def time_grid(future_steps: int = FUTURE_STEPS) -> np.ndarray:
    """Times SIM_START ... t0 + future_steps * DT every DT (s). Scenes built on a longer grid
    (the closed loop's) have the same agents, lights and targets on the shared times."""
    return np.round(SIM_START + DT * np.arange(T0_INDEX + future_steps + 1), 3)


TIMES = time_grid()
HISTORY_INDICES = np.arange(T0_INDEX - HISTORY_STEPS + 1, T0_INDEX + 1)
FUTURE_INDICES = np.arange(T0_INDEX + 1, T0_INDEX + FUTURE_STEPS + 1)

LANE_WIDTH = 3.5
EGO_FRONT = 3.6  # metres from the ego's reference point (rear axle) to its front bumper
VEHICLE_SIZE = (4.6, 1.9, 1.5)  # length, width, height

# Colours (RGB 0..255).
ASPHALT = (88, 88, 92)
WHITE = (235, 235, 230)
YELLOW = (230, 190, 40)
LAMP_OFF = (45, 45, 45)
LAMP = {"red": (255, 40, 30), "yellow": (255, 200, 0), "green": (40, 230, 80)}
BOX_KINDS = ("vehicle", "pedestrian", "light", "sign", "scenery")


@dataclass
class Box:
    """A 3-D box: bottom-centre (x, y, z) and yaw per time index (arrays of the scene's
    grid) or constants; size (length, width, height); decals are quads drawn on its faces,
    given in box coordinates (x along length, y left, z up from the bottom centre)."""

    x: np.ndarray | float
    y: np.ndarray | float
    yaw: np.ndarray | float
    size: tuple[float, float, float]
    color: tuple[int, int, int]
    z: float = 0.0
    decals: list[tuple[np.ndarray, tuple[int, int, int]]] = field(default_factory=list)
    kind: str = "scenery"  # one of BOX_KINDS; only vehicles and pedestrians can be hit

    def __post_init__(self):
        if self.kind not in BOX_KINDS:
            raise ValueError(f"box kind {self.kind!r} is not one of {BOX_KINDS}")

    def pose(self, t_index: int) -> tuple[float, float, float]:
        def at(v):
            return float(v[t_index]) if np.ndim(v) else float(v)
        return at(self.x), at(self.y), at(self.yaw)


@dataclass
class Lead:
    """A vehicle in the ego's lane: its arc length along the ego path and speed per time index."""

    s: np.ndarray
    v: np.ndarray


@dataclass
class StopTarget:
    """A place on the ego path where the ego's front must stop while ``active[t_index]``."""

    s: float
    active: np.ndarray  # bool, one per time of the scene's grid
    cause: str


@dataclass
class Scene:
    behaviour: str
    path: Path  # the ego lane centre it will drive, turns included
    v_init: float  # ego speed at SIM_START, m/s
    speed_limit: float  # m/s before any sign
    quads: list[tuple[np.ndarray, tuple[int, int, int]]] = field(default_factory=list)  # (4, 3)
    boxes: list[Box] = field(default_factory=list)
    lead: Lead | None = None
    stops: list[StopTarget] = field(default_factory=list)
    sign: tuple[float, float] | None = None  # (arc length, new limit m/s)
    facts: dict = field(default_factory=dict)  # specifics for the chain-of-causation sentence
    brightness: float = 1.0
    times: np.ndarray = field(default_factory=lambda: TIMES)  # the grid of the time arrays
    # Other routes the ego may legally take (the other branches at an intersection).
    routes: list[Path] = field(default_factory=list)

    @property
    def legal_routes(self) -> list[Path]:
        return [self.path, *self.routes]

    def add_quad(self, corners, color) -> None:
        self.quads.append((np.asarray(corners, float), color))


def box_on_path(path: Path, s, lateral: float, size, color, reverse=False, z=0.0,
                kind="scenery") -> Box:
    """A box at arc length(s) ``s`` of ``path``, ``lateral`` metres to its left, facing along
    the path (or against it when ``reverse``)."""
    xy = path.offset(s, lateral)
    _, _, heading = path.pose_at(s)
    yaw = heading + (np.pi if reverse else 0.0)
    return Box(xy[..., 0], xy[..., 1], yaw, size, color, z, kind=kind)


def strip_quads(path: Path, s0: float, s1: float, left: float, right: float, step: float = 4.0):
    """Ground quads covering [s0, s1] of ``path`` between lateral offsets right < left: (Q, 4, 3)."""
    s = np.arange(s0, s1 + 1e-9, step)
    if len(s) < 2:
        s = np.array([s0, s1])
    a, b = path.offset(s, left), path.offset(s, right)
    quads = np.stack([a[:-1], a[1:], b[1:], b[:-1]], axis=1)
    return np.concatenate([quads, np.zeros(quads.shape[:2] + (1,))], axis=2)


def dashes(path: Path, s0: float, s1: float, lateral: float, width=0.15, dash=3.0, gap=6.0):
    """Dashed-line quads along ``path`` at ``lateral``: (Q, 4, 3)."""
    out = [strip_quads(path, a, a + dash, lateral + width / 2, lateral - width / 2, dash)
           for a in np.arange(s0, s1, dash + gap)]
    return np.concatenate(out) if out else np.zeros((0, 4, 3))
