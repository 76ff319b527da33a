"""Scenario builders of the built-in world: one per planner behaviour. Each draws a road
layout, the cause of the behaviour (a lead vehicle, a light, a pedestrian, a sign, a curve, an
intersection) and distractors, from a seeded generator. At intersections the turn is drawn at
random and nothing in the images says which (route intent is not visible, as in real driving).
"""
from __future__ import annotations

import numpy as np

from .geometry import Path
from .scene import (ASPHALT, LAMP, LAMP_OFF, LANE_WIDTH, TIMES, T0_INDEX, VEHICLE_SIZE, WHITE,
                    YELLOW, Box, Lead, Scene, StopTarget, box_on_path, dashes, strip_quads)

# behaviour -> relative frequency. Intersections are frequent: they carry the multimodal futures.
BEHAVIOURS = {
    "cruise": 1.0,
    "curve": 1.0,
    "follow_lead": 1.0,
    "stop_for_lead": 1.0,
    "red_light": 1.0,
    "green_light": 1.0,
    "pedestrian": 1.0,
    "speed_limit_down": 0.6,
    "speed_limit_up": 0.6,
    "turn_left": 1.0,
    "turn_right": 1.0,
    "go_straight": 1.0,
}
INTERSECTION_BEHAVIOURS = ("turn_left", "turn_right", "go_straight")
SPEED_LIMITS_KMH = (30, 40, 50, 60, 70)
CAR_COLORS = [(180, 30, 30), (30, 60, 160), (220, 220, 220), (30, 30, 30), (120, 120, 130),
              (200, 160, 40), (40, 120, 60), (150, 80, 160)]
ROAD_BACK, ROAD_AHEAD = -90.0, 200.0  # arc lengths of the drawn road around the start
TURN_RADII = {True: (9.0, 12.0), False: (5.5, 8.0)}  # m, range drawn for left (True) / right


def kmh(v: float) -> float:
    return v / 3.6


def sample_behaviour(rng: np.random.Generator) -> str:
    names = list(BEHAVIOURS)
    p = np.array([BEHAVIOURS[n] for n in names])
    return names[rng.choice(len(names), p=p / p.sum())]


def build_scene(rng: np.random.Generator, behaviour: str, times: np.ndarray = TIMES) -> Scene:
    """The scene of ``behaviour`` with its time arrays on ``times`` (a ``scene.time_grid``): a
    longer grid draws the same scene (the same random draws) and extends its agents."""
    return _BUILDERS[behaviour](rng, behaviour, times)


# --- roads -----------------------------------------------------------------------------------

def add_road(scene: Scene, lane: Path, s0: float, s1: float, gaps=()) -> None:
    """A two-lane road whose right lane centre is ``lane``: asphalt, white edges, a dashed
    yellow centre line; markings are left out over the arc-length ``gaps`` (intersections)."""
    for q in strip_quads(lane, s0, s1, 1.5 * LANE_WIDTH, -0.5 * LANE_WIDTH, step=5.0):
        scene.add_quad(q, ASPHALT)
    bounds = [s0] + [v for g in gaps for v in g] + [s1]
    for a, b in zip(bounds[::2], bounds[1::2]):
        for lateral in (-0.5 * LANE_WIDTH + 0.2, 1.5 * LANE_WIDTH - 0.2):
            for q in strip_quads(lane, a, b, lateral + 0.08, lateral - 0.08, step=5.0):
                scene.add_quad(q, WHITE)
        for q in dashes(lane, a, b, 0.5 * LANE_WIDTH):
            scene.add_quad(q, YELLOW)


def main_road(rng, max_curvature: float, straight_ahead: float = 0.0) -> Path:
    """The ego lane centre from ROAD_BACK to ROAD_AHEAD: straight until ``straight_ahead``
    metres past the start, then gentle constant-curvature pieces."""
    segments = [(straight_ahead - ROAD_BACK, 0.0)]
    while sum(length for length, _ in segments) < ROAD_AHEAD - ROAD_BACK:
        segments.append((rng.uniform(30, 80), rng.uniform(-max_curvature, max_curvature)))
    return Path.from_segments(segments, (ROAD_BACK, 0.0), 0.0, ROAD_BACK)


def add_crossing_road(scene: Scene, x_int: float) -> None:
    """A perpendicular two-lane road centred on x = x_int (the ego road runs along +x with its
    right lane centre at y = 0 and its centre line at y = 1.75)."""
    lane = Path.straight((x_int + 0.5 * LANE_WIDTH, 0.0), np.pi / 2, -100.0, 100.0)
    add_road(scene, lane, -100.0, 100.0, gaps=[(-0.5 * LANE_WIDTH - 1, 1.5 * LANE_WIDTH + 1)])


# --- objects ---------------------------------------------------------------------------------

def car(rng, path: Path, s, lateral: float, reverse=False) -> Box:
    return box_on_path(path, s, lateral, VEHICLE_SIZE, CAR_COLORS[rng.integers(len(CAR_COLORS))],
                       reverse, kind="vehicle")


def add_traffic(rng, scene: Scene, road: Path, s_ref: float, max_s: float | None = None) -> None:
    """Distractors the planner ignores: oncoming cars and cars parked on the right shoulder."""
    max_s = s_ref + 120 if max_s is None else max_s
    for _ in range(rng.integers(0, 3)):
        v = rng.uniform(7, 14)
        s = rng.uniform(s_ref, max_s) - v * (scene.times - scene.times[T0_INDEX])
        scene.boxes.append(car(rng, road, s, LANE_WIDTH, reverse=True))
    for _ in range(rng.integers(0, 3)):
        scene.boxes.append(car(rng, road, rng.uniform(s_ref - 20, max_s), -LANE_WIDTH + 0.4))


def add_scenery(rng, scene: Scene, road: Path, s_ref: float) -> None:
    """Buildings and trees beside the road: they give the cameras parallax (a cue of speed)."""
    for _ in range(rng.integers(5, 12)):
        s = rng.uniform(s_ref - 30, s_ref + 120)
        side = rng.choice([-1.0, 1.0])
        if rng.random() < 0.5:
            size = (rng.uniform(8, 20), rng.uniform(6, 12), rng.uniform(4, 14))
            lateral = side * rng.uniform(10, 25) + (LANE_WIDTH if side > 0 else 0.0)
            gray = int(rng.integers(110, 200))
            tone = (gray, gray - int(rng.integers(0, 30)), gray - int(rng.integers(0, 40)))
            scene.boxes.append(box_on_path(road, s, lateral, size, tone))
        else:
            lateral = side * rng.uniform(4, 9) + (LANE_WIDTH if side > 0 else 0.0)
            scene.boxes.append(box_on_path(road, s, lateral, (0.35, 0.35, 2.2), (90, 60, 30)))
            crown = rng.uniform(1.8, 3.2)
            scene.boxes.append(box_on_path(road, s, lateral, (crown, crown, crown),
                                           (40, int(rng.integers(100, 150)), 40), z=2.0))


def _face_decal(width, height, u0, v0, color, depth):
    """A quad on the box face at x = -depth/2 (facing the approaching ego), spanning
    (u0, v0) .. (u0 + width, v0 + height) in (y, z): (4, 3)."""
    x = -depth / 2 - 0.01
    return (np.array([[x, u0, v0], [x, u0 + width, v0], [x, u0 + width, v0 + height],
                      [x, u0, v0 + height]]), color)


def traffic_light(path: Path, s: float, lateral: float, state: str) -> list[Box]:
    """A pole and a housing facing the ego with red / yellow / green lamps (one lit)."""
    pole = box_on_path(path, s, lateral, (0.15, 0.15, 3.4), (60, 60, 60), kind="light")
    housing = box_on_path(path, s, lateral, (0.3, 0.45, 1.2), (25, 25, 25), z=3.2, kind="light")
    for i, lamp in enumerate(("green", "yellow", "red")):
        color = LAMP[lamp] if lamp == state else LAMP_OFF
        housing.decals.append(_face_decal(0.32, 0.32, -0.16, 0.06 + 0.38 * i, color, 0.3))
    return [pole, housing]


# 7-segment strokes (u0, v0, width, height) in a 1 x 2 digit cell: a b c d e f g.
_SEGMENTS = {"a": (0.0, 1.85, 1.0, 0.15), "b": (0.85, 1.0, 0.15, 1.0), "c": (0.85, 0.0, 0.15, 1.0),
             "d": (0.0, 0.0, 1.0, 0.15), "e": (0.0, 0.0, 0.15, 1.0), "f": (0.0, 1.0, 0.15, 1.0),
             "g": (0.0, 0.925, 1.0, 0.15)}
_DIGITS = {"0": "abcdef", "1": "bc", "2": "abdeg", "3": "abcdg", "4": "bcfg", "5": "acdfg",
           "6": "acdefg", "7": "abc", "8": "abcdefg", "9": "abcdfg"}


def speed_sign(path: Path, s: float, lateral: float, limit_kmh: int) -> list[Box]:
    """A pole and a white panel with a red rim showing the limit in km/h as 7-segment digits."""
    pole = box_on_path(path, s, lateral, (0.1, 0.1, 2.0), (90, 90, 90), kind="sign")
    panel = box_on_path(path, s, lateral, (0.05, 0.9, 1.1), (230, 30, 30), z=1.9, kind="sign")
    panel.decals.append(_face_decal(0.76, 0.96, 0.38 - 0.76, 0.07, (245, 245, 245), 0.05))
    cell = 0.16  # digit cell width; height 2 * cell
    text = str(limit_kmh)
    for i, ch in enumerate(text):
        # Digits read left to right as seen from the ego: decreasing y in box coordinates.
        u_right = (len(text) / 2 - i) * (cell + 0.06) - 0.03
        for seg in _DIGITS[ch]:
            u0, v0, w, h = _SEGMENTS[seg]
            panel.decals.append(_face_decal(
                w * cell, h * cell, u_right - (u0 + w) * cell, 0.25 + v0 * cell, (20, 20, 20),
                0.05))
    return [pole, panel]


def stop_line(scene: Scene, path: Path, s: float) -> None:
    for q in strip_quads(path, s, s + 0.5, 0.5 * LANE_WIDTH - 0.1, -0.5 * LANE_WIDTH + 0.1, 0.5):
        scene.add_quad(q, WHITE)


def crosswalk(scene: Scene, path: Path, s: float, depth: float = 3.0) -> None:
    for lateral in np.arange(-0.5 * LANE_WIDTH + 0.3, 1.5 * LANE_WIDTH - 0.3, 0.9):
        for q in strip_quads(path, s, s + depth, lateral + 0.25, lateral - 0.25, depth):
            scene.add_quad(q, WHITE)


# --- builders --------------------------------------------------------------------------------

def _base(rng, behaviour, times, max_curvature=0.006, v_range=(8.0, 17.0), straight_ahead=None):
    """A scene on a (mostly) straight main road with its limit, speed, scenery and traffic.
    Returns the scene and s_ref, the arc length where the ego should be at t0."""
    limit = kmh(float(rng.choice(SPEED_LIMITS_KMH)))
    v_init = float(np.clip(limit * rng.uniform(0.85, 1.05), *v_range))
    s_ref = -TIMES[0] * v_init
    ahead = s_ref + rng.uniform(-10, 60) if straight_ahead is None else straight_ahead
    road = main_road(rng, max_curvature, ahead)
    scene = Scene(behaviour, road, v_init, max(limit, v_init), brightness=rng.uniform(0.8, 1.15),
                  times=times)
    return scene, road, s_ref


def _finish(rng, scene: Scene, road: Path, s_ref: float, gaps=(), traffic_to=None) -> Scene:
    add_road(scene, road, ROAD_BACK, ROAD_AHEAD, gaps)
    add_traffic(rng, scene, road, s_ref, traffic_to)
    add_scenery(rng, scene, road, s_ref)
    return scene


def build_open_road(rng, behaviour, times):
    if behaviour == "curve":
        scene, road, s_ref = _base(rng, behaviour, times)
        start = s_ref + rng.uniform(10, 45)
        k = rng.choice([-1, 1]) * rng.uniform(0.02, 0.07)
        length = min(rng.uniform(0.6, 1.6) / abs(k), 150.0)
        road = Path.from_segments([(start - ROAD_BACK, 0.0), (length, k), (200.0, 0.0)],
                                  (ROAD_BACK, 0.0), 0.0, ROAD_BACK)
        scene.path = road
        scene.facts.update(cause_s=start, direction="left" if k > 0 else "right",
                           radius=1 / abs(k))
    else:
        scene, road, s_ref = _base(rng, behaviour, times, max_curvature=0.012)
    return _finish(rng, scene, road, s_ref)


def build_lead(rng, behaviour, times):
    scene, road, s_ref = _base(rng, behaviour, times, max_curvature=0.008)
    rel_t = times - times[T0_INDEX]
    if behaviour == "stop_for_lead":
        s0 = s_ref + rng.uniform(22, 60)
        v = np.zeros(len(times))
    else:
        s0 = s_ref + rng.uniform(14, 35)
        v0 = scene.v_init * rng.uniform(0.8, 1.0)
        t_brake, decel = rng.uniform(-1.0, 1.5), rng.uniform(1.0, 3.0)
        v_final = v0 * rng.uniform(0.2, 0.7)
        v = np.clip(v0 - decel * np.clip(rel_t - t_brake, 0, None), v_final, None)
    # Arc length by the trapezoid rule, anchored at s0 at t0.
    s = np.concatenate([[0.0], np.cumsum(0.5 * (v[1:] + v[:-1]) * np.diff(times))])
    s = s - s[T0_INDEX] + s0
    scene.lead = Lead(s, v)
    scene.boxes.append(car(rng, road, s, 0.0))
    scene.facts.update(lead_v_final=float(v[-1]))
    return _finish(rng, scene, road, s_ref)


def build_pedestrian(rng, behaviour, times):
    scene, road, s_ref = _base(rng, behaviour, times, max_curvature=0.004, v_range=(7.0, 14.0))
    v = scene.v_init
    s_cw = s_ref + v * v / 6.0 + rng.uniform(12, 30)  # far enough to stop at ~3 m/s^2
    crosswalk(scene, road, s_cw)
    from_right = bool(rng.random() < 0.5)
    speed = rng.uniform(1.1, 1.6) * (1 if from_right else -1)
    start = rng.uniform(-5.0, -1.5) if from_right else rng.uniform(2.5, 6.5)
    lateral = start + speed * (times - times[T0_INDEX])
    s_walk = s_cw + 1.5
    xy = road.offset(np.full(len(times), s_walk), lateral)
    _, _, h = road.pose_at(s_walk)
    yaw = h + (np.pi / 2 if from_right else -np.pi / 2)
    scene.boxes.append(Box(xy[:, 0], xy[:, 1], yaw, (0.35, 0.5, 1.1), (40, 40, 90),
                           kind="pedestrian"))
    scene.boxes.append(Box(xy[:, 0], xy[:, 1], yaw, (0.3, 0.45, 0.65),
                           tuple(int(c) for c in rng.integers(60, 230, 3)), z=1.1,
                           kind="pedestrian"))
    # The ego yields while the pedestrian is within 2.75 m of its lane centre, or will be
    # within 1.5 s.
    inside = np.abs(lateral) <= 2.75
    look = 15
    active = np.array([inside[i:i + look + 1].any() for i in range(len(times))])
    scene.stops.append(StopTarget(s_cw - 1.0, active, "pedestrian"))
    scene.facts.update(cause_s=s_cw, side="right" if from_right else "left")
    return _finish(rng, scene, road, s_ref)


def build_speed_limit(rng, behaviour, times):
    scene, road, s_ref = _base(rng, behaviour, times, max_curvature=0.006)
    current = int(round(scene.v_init * 3.6 / 10) * 10)
    lower = [x for x in SPEED_LIMITS_KMH if x <= current - 20]
    higher = [x for x in SPEED_LIMITS_KMH if x >= current + 20]
    if behaviour == "speed_limit_down" and not lower:
        scene.v_init = kmh(70) * rng.uniform(0.9, 1.0)
        lower = [30, 40, 50]
    if behaviour == "speed_limit_up" and not higher:
        scene.v_init = kmh(30) * rng.uniform(0.9, 1.05)
        higher = [50, 60, 70]
    s_ref = -TIMES[0] * scene.v_init
    scene.speed_limit = scene.v_init
    new = int(rng.choice(lower if behaviour == "speed_limit_down" else higher))
    s_sign = s_ref + rng.uniform(15, 50)
    scene.boxes += speed_sign(road, s_sign, -0.5 * LANE_WIDTH - 1.5, new)
    scene.sign = (s_sign, kmh(new))
    scene.facts.update(cause_s=s_sign, limit_kmh=new)
    return _finish(rng, scene, road, s_ref)


def turn_path(x_int: float, left: bool, radius: float) -> Path:
    """The ego lane turning by a quarter circle of ``radius`` into the lane of the crossing road
    (centred on x = x_int) that leaves to the left or to the right."""
    exit_x = x_int + (0.5 if left else -0.5) * LANE_WIDTH
    arc_start = exit_x - radius
    return Path.from_segments(
        [(arc_start - ROAD_BACK, 0.0), (np.pi / 2 * radius, (1 if left else -1) / radius),
         (120.0, 0.0)], (ROAD_BACK, 0.0), 0.0, ROAD_BACK)


def build_intersection(rng, behaviour, times):
    """A straight road meeting a perpendicular one. Lights (red / green) or no control; the ego
    turns left or right or goes straight (drawn by ``behaviour``). Any of the three is a legal
    route (``scene.routes``; the turns at both ends and the middle of the radii drawn)."""
    scene, road, s_ref = _base(rng, behaviour, times, v_range=(6.0, 14.0),
                               straight_ahead=ROAD_AHEAD)
    v = scene.v_init
    if behaviour == "red_light":
        x_int = s_ref + v * v / 5.0 + rng.uniform(10, 40)
    elif behaviour == "green_light":
        x_int = s_ref + rng.uniform(15, 60)
    else:
        x_int = s_ref + rng.uniform(12, 25) + v * rng.uniform(0.3, 1.2)
    add_crossing_road(scene, x_int)
    gaps = [(x_int - LANE_WIDTH - 1, x_int + LANE_WIDTH + 1)]
    stop_s = x_int - LANE_WIDTH - 2.0
    if behaviour in ("red_light", "green_light"):
        state = "red" if behaviour == "red_light" else "green"
        stop_line(scene, road, stop_s)
        scene.boxes += traffic_light(road, stop_s + 0.5, -0.5 * LANE_WIDTH - 1.2, state)
        if state == "red":
            scene.stops.append(StopTarget(stop_s - 0.5, np.ones(len(times), bool), "red_light"))
    if behaviour in ("turn_left", "turn_right"):
        # Quarter-circle from the ego lane into the crossing road's lane of the new direction.
        left = behaviour == "turn_left"
        radius = rng.uniform(*TURN_RADII[left])
        scene.path = turn_path(x_int, left, radius)
        scene.facts.update(radius=radius)
    turns = [turn_path(x_int, side, r) for side in (True, False)
             for r in np.linspace(*TURN_RADII[side], 3)]
    scene.routes = [route for route in (road, *turns) if route is not scene.path]
    scene.facts.update(cause_s=stop_s if behaviour == "red_light" else x_int - LANE_WIDTH)
    return _finish(rng, scene, road, s_ref, gaps, traffic_to=x_int - 10)


_BUILDERS = {
    "cruise": build_open_road,
    "curve": build_open_road,
    "follow_lead": build_lead,
    "stop_for_lead": build_lead,
    "pedestrian": build_pedestrian,
    "speed_limit_down": build_speed_limit,
    "speed_limit_up": build_speed_limit,
    "red_light": build_intersection,
    "green_light": build_intersection,
    "turn_left": build_intersection,
    "turn_right": build_intersection,
    "go_straight": build_intersection,
}
