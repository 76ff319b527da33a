"""A tiny Argoverse 2 motion forecasting dataset made with av2's own structures: scenarios are
``ArgoverseScenario`` objects written by av2's ``serialize_argoverse_scenario_parquet``, maps are
static map JSON in the log_map_archive format that ``ArgoverseStaticMap.from_json`` reads.
Each scenario is the tiny_world junction, placed at a random pose in the city frame, with a
focal vehicle that goes straight or turns after t0, an oncoming vehicle, a crossing vehicle and a
pedestrian. For tests and for trying the benchmark path without the 60 GB download:

    python -m distill.datasets.tiny --out DIR    # DIR/argoverse2 (and DIR/nuscenes)
"""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np

from . import tiny_world as tw
from .argoverse2 import FUTURE_STEPS, HISTORY_STEPS, DT

STEPS = HISTORY_STEPS + FUTURE_STEPS
START_NS = 315_969_000_000_000_000  # a GPS-epoch nanosecond time, as in the real data


def _points(xy: np.ndarray) -> list[dict]:
    return [{"x": float(x), "y": float(y), "z": 0.0} for x, y in xy]


def static_map(origin: np.ndarray, yaw: float) -> dict:
    """The junction as an Argoverse 2 static map (lane boundaries 1.75 m either side of each
    centerline, one crossing per approach, the cross-shaped drivable area)."""
    lanes = {}
    for lane_id, (name, line) in enumerate(sorted(tw.lane_centerlines().items()), start=1):
        d = np.gradient(line, axis=0)
        normal = np.stack([-d[:, 1], d[:, 0]], -1) / np.linalg.norm(d, axis=1, keepdims=True)
        left, right = (tw.to_world(line + sign * normal * tw.LANE_WIDTH / 2, origin, yaw)
                       for sign in (1, -1))
        lanes[str(lane_id)] = {
            "id": lane_id, "is_intersection": not name.startswith(("in", "out")),
            "lane_type": "VEHICLE", "left_lane_boundary": _points(left),
            "left_lane_mark_type": "DASHED_YELLOW", "left_neighbor_id": None,
            "right_lane_boundary": _points(right), "right_lane_mark_type": "SOLID_WHITE",
            "right_neighbor_id": None, "predecessors": [], "successors": []}
    crossings = {str(100 + i): {"id": 100 + i, "edge1": _points(tw.to_world(e[0], origin, yaw)),
                                "edge2": _points(tw.to_world(e[1], origin, yaw))}
                 for i, e in enumerate(tw.crossings())}
    area = {"1000": {"id": 1000, "area_boundary": _points(tw.to_world(tw.drivable_area(),
                                                                       origin, yaw))}}
    return {"drivable_areas": area, "lane_segments": lanes, "pedestrian_crossings": crossings}


def _track(track_id: str, motion: tw.Motion, origin, yaw, object_type, category):
    from av2.datasets.motion_forecasting.data_schema import ObjectState, Track
    xy = tw.to_world(motion.xy, origin, yaw)
    heading = motion.heading + yaw
    states = [ObjectState(observed=t < HISTORY_STEPS, timestep=t,
                          position=(float(xy[t, 0]), float(xy[t, 1])), heading=float(heading[t]),
                          velocity=(float(motion.speed[t] * np.cos(heading[t])),
                                    float(motion.speed[t] * np.sin(heading[t]))))
              for t in range(STEPS)]
    return Track(track_id, states, object_type, category)


def scenario(rng: np.random.Generator, scenario_id: str):
    """One ArgoverseScenario and its static map dict."""
    from av2.datasets.motion_forecasting.data_schema import (ArgoverseScenario, ObjectType,
                                                             TrackCategory)
    origin, yaw = rng.uniform(-2000, 2000, 2), float(rng.uniform(-np.pi, np.pi))
    times = np.arange(STEPS) * DT
    approach, turn = int(rng.integers(4)), tw.TURNS[rng.integers(3)]
    speed = rng.uniform(6, 10)
    # At t0 the focal vehicle is 5-20 m before the junction box: its turn is in the future.
    at_t0 = tw.ARM - tw.INNER - rng.uniform(5, 20)
    focal = tw.drive(tw.route(approach, turn), at_t0 - speed * times[HISTORY_STEPS - 1], speed,
                     rng.uniform(-0.3, 0.3), times)
    oncoming = tw.drive(tw.route((approach + 2) % 4, "straight"), rng.uniform(0, 40),
                        rng.uniform(5, 9), 0.0, times)
    crossing = tw.drive(tw.route((approach + 1) % 4, "straight"), rng.uniform(0, 30),
                        rng.uniform(0.5, 6), 0.0, times)
    walk = tw.crossings()[approach].mean(0)  # (2, 2): the crossing's centre line
    walker = tw.drive(walk, 0.0, rng.uniform(0.8, 1.5), 0.0, times)
    vehicle, pedestrian = ObjectType.VEHICLE, ObjectType.PEDESTRIAN
    tracks = [_track("focal", focal, origin, yaw, vehicle, TrackCategory.FOCAL_TRACK),
              _track("1", oncoming, origin, yaw, vehicle, TrackCategory.SCORED_TRACK),
              _track("2", crossing, origin, yaw, vehicle, TrackCategory.UNSCORED_TRACK),
              _track("3", walker, origin, yaw, pedestrian, TrackCategory.UNSCORED_TRACK)]
    timestamps = START_NS + np.arange(STEPS, dtype=np.int64) * int(DT * 1e9)
    return (ArgoverseScenario(scenario_id, timestamps, tracks, "focal", "pittsburgh", None, None),
            static_map(origin, yaw))


def write(out, train: int = 16, val: int = 8, seed: int = 0) -> Path:
    """OUT/{train,val}/{id}/scenario_{id}.parquet + log_map_archive_{id}.json; returns OUT."""
    from av2.datasets.motion_forecasting.scenario_serialization import (
        serialize_argoverse_scenario_parquet)
    out = Path(out)
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", val)):
        for _ in range(count):
            sid = str(uuid.UUID(int=int(rng.integers(2**63)) << 64 | int(rng.integers(2**63))))
            scen, avm = scenario(rng, sid)
            folder = out / split / sid
            folder.mkdir(parents=True, exist_ok=True)
            serialize_argoverse_scenario_parquet(folder / f"scenario_{sid}.parquet", scen)
            (folder / f"log_map_archive_{sid}.json").write_text(json.dumps(avm))
    return out
