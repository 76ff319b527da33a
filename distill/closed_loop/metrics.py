"""The driving metrics of an episode and the score that combines them (docs/closed_loop.md).

Footprints are rectangles on the ground (shapely polygons): the ego's from 1.0 m behind its
reference point (the rear axle) to 3.6 m ahead, 1.9 m wide; the agents' their boxes'. Only
vehicles and pedestrians can be hit; lights, signs and scenery cannot."""
from __future__ import annotations

import numpy as np
import shapely

from ..constants import DT
from ..world.geometry import wrap_angle
from ..world.planner import EgoTrack
from ..world.scene import EGO_FRONT, LANE_WIDTH, T0_INDEX, VEHICLE_SIZE, Scene
from .episode import Rollout

EGO_LENGTH, EGO_WIDTH = VEHICLE_SIZE[:2]
HITTABLE = ("vehicle", "pedestrian")
TTC_HORIZON = 3.0  # s: look-ahead of the time-to-collision (constant speed and yaw rate)
TTC_OK = 1.0  # s: a minimum time-to-collision below this counts as a near miss
MOVING = 0.2  # m/s: a slower ego is stopped (no time-to-collision: it cannot avoid anything)
LINE_DEPTH = 1.0  # m past a stop target: the far edge of the painted stop line
LANE_HALF = LANE_WIDTH / 2  # m: the ego's reference point this far off every legal route
JERK_MAX = 15.0  # m/s^3: comfort bounds of a step's |jerk| and |lateral acceleration|
LAT_ACCEL_MAX = 4.0  # m/s^2
PROGRESS_MIN = 1.0  # m: a teacher that moves less sets no progress to match
WEIGHTS = {"progress": 5.0, "ttc": 5.0, "comfort": 2.0}


def footprints(x, y, yaw, front: float, back: float, width: float) -> np.ndarray:
    """Rectangle corners (..., 4, 2) of boxes at poses (...), ``front`` / ``back`` metres
    ahead of / behind the pose along its heading."""
    c, s = np.cos(yaw)[..., None], np.sin(yaw)[..., None]
    lon = np.array([front, front, -back, -back])
    lat = np.array([width, -width, -width, width]) / 2
    return np.stack([x[..., None] + c * lon - s * lat, y[..., None] + s * lon + c * lat], -1)


def agent_tracks(scene: Scene, indices: np.ndarray) -> list[dict]:
    """The vehicles and pedestrians at time ``indices`` of the scene's grid: their kind,
    poses (N, 3), footprints (N, 4, 2), speeds and yaw rates (N,) (forward differences)."""
    out = []
    for box in scene.boxes:
        if box.kind not in HITTABLE:
            continue
        pose = np.array([box.pose(i) for i in (*indices, indices[-1] + 1)])  # (N + 1, 3)
        step = np.diff(pose, axis=0)
        half = box.size[0] / 2
        out.append(dict(kind=box.kind, pose=pose[:-1], size=box.size[:2],
                        speed=np.linalg.norm(step[:, :2], axis=-1) / DT,
                        yaw_rate=wrap_angle(step[:, 2]) / DT,
                        corners=footprints(*pose[:-1].T, half, half, box.size[1])))
    return out


def ego_footprints(states: np.ndarray) -> np.ndarray:
    return footprints(states[:, 0], states[:, 1], states[:, 2], EGO_FRONT,
                      EGO_LENGTH - EGO_FRONT, EGO_WIDTH)


def first_collision(ego: np.ndarray, agents: list[dict]) -> tuple[int | None, str | None]:
    """(step, kind) of the first overlap of the ego's footprints (N, 4, 2) with an agent's."""
    ego_poly = shapely.polygons(ego)
    hits = [(int(np.argmax(h)), a["kind"]) for a in agents
            if (h := shapely.intersects(ego_poly, shapely.polygons(a["corners"]))).any()]
    return min(hits) if hits else (None, None)


def extrapolate(pose: np.ndarray, speed: np.ndarray, yaw_rate: np.ndarray, n: int) -> np.ndarray:
    """Poses (S, n, 3) after 1..n steps of DT at constant speed and yaw rate from poses
    (S, 3) (the heading of each step at its middle)."""
    j = np.arange(1, n + 1)
    yaw_mid = pose[:, 2:3] + yaw_rate[:, None] * DT * (j - 0.5)
    step = speed[:, None, None] * DT * np.stack([np.cos(yaw_mid), np.sin(yaw_mid)], -1)
    xy = pose[:, None, :2] + np.cumsum(step, axis=1)
    return np.concatenate([xy, (pose[:, 2:3] + yaw_rate[:, None] * DT * j)[..., None]], -1)


def min_time_to_collision(states: np.ndarray, curvature: np.ndarray,
                          agents: list[dict]) -> float:
    """The smallest time, over the steps where the ego moves, until its footprint and an
    agent's meet when both keep their speed and yaw rate (the ego: its speed and the curvature
    it executes), capped at TTC_HORIZON."""
    n = int(round(TTC_HORIZON / DT))
    centre = states[:, :2] + (EGO_FRONT - EGO_LENGTH / 2) * np.stack(
        [np.cos(states[:, 2]), np.sin(states[:, 2])], -1)
    best = TTC_HORIZON
    for a in agents:
        gap = np.linalg.norm(centre - a["pose"][:, :2], axis=-1)
        reach = (states[:, 3] + a["speed"]) * TTC_HORIZON + EGO_LENGTH + np.hypot(*a["size"])
        steps = np.flatnonzero((states[:, 3] > MOVING) & (gap < reach))
        if not len(steps):
            continue
        speed = states[steps, 3]
        ego = extrapolate(states[steps, :3], speed, speed * curvature[steps], n)
        other = extrapolate(a["pose"][steps], a["speed"][steps], a["yaw_rate"][steps], n)
        half = a["size"][0] / 2
        meet = shapely.intersects(
            shapely.polygons(footprints(*np.moveaxis(ego, -1, 0), EGO_FRONT,
                                        EGO_LENGTH - EGO_FRONT, EGO_WIDTH)),
            shapely.polygons(footprints(*np.moveaxis(other, -1, 0), half, half, a["size"][1])))
        if meet.any():
            best = min(best, DT * (1 + int(np.argmax(meet, axis=1)[meet.any(1)].min())))
    return best


def along(route, xy: np.ndarray) -> np.ndarray:
    """Arc lengths (N,) of the points of ``route`` (a Path) nearest to points (N, 2)."""
    return route.s[0] + shapely.line_locate_point(shapely.LineString(route.xy),
                                                  shapely.points(xy))


def stop_lines(scene: Scene, states: np.ndarray, indices: np.ndarray) -> tuple[bool, float]:
    """(red-light violation, overshoot m). Overshoot: how far the ego's front went past a stop
    target (a red light's, a crosswalk's) that was active when the front reached it, while it
    stayed active. A violation: the front crossed a red light's line (LINE_DEPTH past it)."""
    front = along(scene.path, states[:, :2]) + EGO_FRONT
    violation, overshoot = False, 0.0
    for stop in scene.stops:
        active = stop.active[indices]
        crossed = np.flatnonzero((front[:-1] <= stop.s) & (front[1:] > stop.s)) + 1
        if not len(crossed) or not active[crossed[0]]:
            continue
        c = crossed[0]
        span = c + (np.argmin(active[c:]) if not active[c:].all() else len(active) - c)
        past = float((front[c:span] - stop.s).max())
        overshoot = max(overshoot, past)
        violation |= stop.cause == "red_light" and past > LINE_DEPTH
    return violation, overshoot


def route_progress(scene: Scene, states: np.ndarray) -> tuple[float, float]:
    """(largest distance m from the legal route the ego kept closest to, progress m along
    it). At intersections every branch is a legal route: the turn is a coin flip no camera
    shows, so a student is not held to the one the teacher drew."""
    points = shapely.points(states[:, :2])
    routes = scene.legal_routes
    worst = [float(shapely.distance(shapely.LineString(r.xy), points).max()) for r in routes]
    best = int(np.argmin(worst))
    ends = along(routes[best], states[[0, -1], :2])
    return worst[best], float(ends[1] - ends[0])


def episode_metrics(scene: Scene, teacher: EgoTrack, rollout: Rollout) -> dict:
    """Every metric of one rollout, and its score."""
    states = rollout.states()
    indices = T0_INDEX + np.arange(rollout.steps + 1)
    ego, agents = ego_footprints(states), agent_tracks(scene, indices)
    hit_step, hit_kind = first_collision(ego, agents)
    red_light, overshoot = stop_lines(scene, states, indices)
    off_route, progress = route_progress(scene, states)
    ends = np.array([[teacher.x[i], teacher.y[i]] for i in indices[[0, -1]]])
    teacher_progress = float(np.diff(along(scene.path, ends))[0])
    a, k = rollout.track.a, rollout.track.k
    jerk = np.abs(np.diff(a)) / DT  # between consecutive executed actions
    lateral = np.abs(states[:-1, 3] ** 2 * k)
    m = {
        "collision": hit_step is not None,
        "collision_with": hit_kind,
        "collision_time_s": None if hit_step is None else round(hit_step * DT, 1),
        "red_light_violation": bool(red_light),
        "stop_overshoot_m": overshoot,
        "lane_departure": off_route > LANE_HALF,
        "max_route_offset_m": off_route,
        "progress_m": progress,
        "teacher_progress_m": teacher_progress,
        "progress_ratio": (1.0 if teacher_progress < PROGRESS_MIN
                           else float(np.clip(progress / teacher_progress, 0.0, 1.0))),
        "min_ttc_s": (0.0 if hit_step is not None
                      else min_time_to_collision(states, np.append(k, k[-1]), agents)),
        "peak_jerk": float(jerk.max(initial=0.0)),
        "peak_lateral_accel": float(lateral.max()),
        "comfortable_share": float(np.mean((jerk <= JERK_MAX) & (lateral[1:] <= LAT_ACCEL_MAX))
                                   if len(jerk) else 1.0),
        "clipped_steps": rollout.clipped,
    }
    m["score"] = driving_score(m)
    return m


def driving_score(m: dict) -> float:
    """Gates times a weighted mean: a collision or a red-light violation scores 0; leaving the
    legal routes or overshooting an active stop target by more than LINE_DEPTH halves the
    score; the rest is progress (against the teacher's), time-to-collision >= TTC_OK and
    comfort (the share of steps whose |jerk| and |lateral acceleration| stay within bounds),
    weighted by WEIGHTS."""
    gate = 0.0 if m["collision"] or m["red_light_violation"] else 1.0
    gate *= 0.5 if m["lane_departure"] else 1.0
    gate *= 0.5 if m["stop_overshoot_m"] > LINE_DEPTH else 1.0
    terms = {"progress": m["progress_ratio"], "ttc": float(m["min_ttc_s"] >= TTC_OK),
             "comfort": m["comfortable_share"]}
    return gate * sum(WEIGHTS[k] * terms[k] for k in WEIGHTS) / sum(WEIGHTS.values())
