"""A tiny nuScenes prediction dataset: the table set (v1.0-trainval/*.json) the devkit's
``NuScenes`` loads, the four map-expansion JSON maps (v1.3) its ``NuScenesMap`` and the
``StaticLayerRasterizer`` read, and maps/prediction/prediction_scenes.json for
``get_prediction_challenge_split``. Scenes carry the official scene names, so the official
train/val split helpers select them. Nothing is mocked: the devkit's own code reads every file.

What is minimal: one LIDAR_TOP key frame per sample (ego poses, calibrated sensor), no sensor
files, no lidarseg; a 10x10 px semantic-prior PNG per log map (the devkit's ``MapMask`` needs
the file, prediction never reads it). Every map is the tiny_world junction (a drivable area,
lanes with arcline paths, crossings, walkways), centred on its canvas. Vehicles drive through
it at 2 Hz annotations, turning at random after their prediction times.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from . import tiny_world as tw

VERSION = "v1.0-trainval"
SAMPLES_PER_SCENE = 20  # 9.5 s at 2 Hz
DT_US = 500_000
CANVAS = 400.0  # m, each map's width and height; the junction at its centre
PREDICT_AT = range(2, 8)  # sample indices predicted: 1-3.5 s of history, the full 6 s future
LOCATIONS = ("singapore-onenorth", "singapore-hollandvillage", "singapore-queenstown",
             "boston-seaport")


class Tokens:
    """Deterministic 32-hex-digit tokens, as nuScenes uses."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def __call__(self) -> str:
        return "".join(f"{int(x):08x}" for x in self.rng.integers(0, 2**32, 4))


def _quaternion(yaw: float) -> list[float]:
    return [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))]


class MapWriter:
    """One map-expansion JSON: nodes, polygons and the layers that reference them."""

    def __init__(self, token: Tokens):
        self.token = token
        self.layers = {name: [] for name in (
            "polygon", "line", "node", "drivable_area", "road_segment", "road_block", "lane",
            "ped_crossing", "walkway", "stop_line", "carpark_area", "road_divider",
            "lane_divider", "traffic_light", "lane_connector")}
        self.arcline_path_3, self.connectivity = {}, {}

    def polygon(self, outline: np.ndarray) -> str:
        nodes = []
        for x, y in outline + CANVAS / 2:
            nodes.append(self.token())
            self.layers["node"].append({"token": nodes[-1], "x": float(x), "y": float(y)})
        token = self.token()
        self.layers["polygon"].append({"token": token, "exterior_node_tokens": nodes,
                                       "holes": []})
        return token

    def lane(self, name: str, line: np.ndarray) -> None:
        """A lane (or a junction connector) with its strip polygon and one arcline path."""
        d = np.gradient(line, axis=0)
        normal = np.stack([-d[:, 1], d[:, 0]], -1) / np.linalg.norm(d, axis=1, keepdims=True)
        strip = np.concatenate([line + normal * tw.LANE_WIDTH / 2,
                                (line - normal * tw.LANE_WIDTH / 2)[::-1]])
        token = self.token()
        record = {"token": token, "polygon_token": self.polygon(strip)}
        if name.startswith(("in", "out")):
            record.update(lane_type="CAR", from_edge_line_token=None, to_edge_line_token=None,
                          left_lane_divider_segments=[], right_lane_divider_segments=[])
            self.layers["lane"].append(record)
        else:
            self.layers["lane_connector"].append(record)
        start = np.arctan2(*(line[1] - line[0])[::-1])
        end = np.arctan2(*(line[-1] - line[-2])[::-1])
        turn = float(np.angle(np.exp(1j * (end - start))))
        length = float(np.linalg.norm(np.diff(line, axis=0), axis=1).sum())
        straight = abs(turn) < 1e-6
        shape = "LSL" if straight or turn > 0 else "RSR"  # first segment's sign: the turn's
        self.arcline_path_3[token] = [{
            "start_pose": [*map(float, line[0] + CANVAS / 2), float(start)],
            "end_pose": [*map(float, line[-1] + CANVAS / 2), float(end)],
            "shape": shape, "radius": 999.0 if straight else length / abs(turn),
            "segment_length": [0.0, length, 0.0] if straight else [length, 0.0, 0.0]}]
        self.connectivity[token] = {"incoming": [], "outgoing": []}

    def junction(self) -> dict:
        self.layers["drivable_area"].append({"token": self.token(),
                                             "polygon_tokens": [self.polygon(tw.drivable_area())]})
        for name, line in sorted(tw.lane_centerlines().items()):
            self.lane(name, line)
        for crossing in tw.crossings():
            outline = np.concatenate([crossing[0], crossing[1][::-1]])
            self.layers["ped_crossing"].append({"token": self.token(),
                                                "polygon_token": self.polygon(outline),
                                                "road_segment_token": None})
        for a in range(4):  # a sidewalk either side of each arm
            for y0 in (tw.HALF_ROAD, -tw.HALF_ROAD - 3.0):
                strip = np.array([(-tw.ARM, y0), (-tw.INNER, y0), (-tw.INNER, y0 + 3.0),
                                  (-tw.ARM, y0 + 3.0)])
                outline = tw.rotate(strip, a)
                self.layers["walkway"].append({"token": self.token(),
                                               "polygon_token": self.polygon(outline)})
        return {"version": "1.3", "canvas_edge": [CANVAS, CANVAS], **self.layers,
                "arcline_path_3": self.arcline_path_3, "connectivity": self.connectivity}


def _scene_agents(rng: np.random.Generator, n: int) -> list[tw.Motion]:
    times = np.arange(SAMPLES_PER_SCENE) * DT_US / 1e6
    agents = []
    for _ in range(n):
        speed = rng.uniform(5, 9)
        # Before the junction until ~3.5 s (the last prediction time), then the turn.
        s_at_predict = tw.ARM - tw.INNER - rng.uniform(2, 12)
        path = tw.route(int(rng.integers(4)), tw.TURNS[rng.integers(3)])
        agents.append(tw.drive(path, s_at_predict - speed * 3.5, speed, rng.uniform(-0.3, 0.3),
                               times))
    return agents


def write(out, train_scenes: int = 2, val_scenes: int = 1, agents: int = 4,
          seed: int = 0) -> Path:
    """OUT/v1.0-trainval/*.json, OUT/maps/expansion/*.json, OUT/maps/*.png and
    OUT/maps/prediction/prediction_scenes.json; returns OUT."""
    from nuscenes.utils.splits import create_splits_scenes
    out, rng = Path(out), np.random.default_rng(seed)
    token = Tokens(rng)
    official = create_splits_scenes()
    # The prediction challenge's "train" split is the official train scenes after the first 200.
    names = official["train"][200:200 + train_scenes] + official["val"][:val_scenes]
    t = {name: [] for name in ("category", "attribute", "visibility", "instance", "sensor",
                               "calibrated_sensor", "ego_pose", "log", "scene", "sample",
                               "sample_data", "sample_annotation", "map")}
    car = token()
    t["category"].append({"token": car, "name": "vehicle.car", "description": "car"})
    t["attribute"].append({"token": token(), "name": "vehicle.moving", "description": "moving"})
    t["visibility"].append({"token": "4", "level": "v80-100", "description": "visible"})
    lidar = token()
    t["sensor"].append({"token": lidar, "channel": "LIDAR_TOP", "modality": "lidar"})
    calib = token()
    t["calibrated_sensor"].append({"token": calib, "sensor_token": lidar,
                                   "translation": [0.9, 0.0, 1.8], "rotation": [1, 0, 0, 0],
                                   "camera_intrinsic": []})
    logs_at = {loc: [] for loc in LOCATIONS}
    prediction = {}
    for i, name in enumerate(names):
        log, scene, location = token(), token(), LOCATIONS[i % len(LOCATIONS)]
        logs_at[location].append(log)
        t["log"].append({"token": log, "logfile": f"tiny-{i}", "vehicle": "n015",
                         "date_captured": "2018-07-24", "location": location})
        samples = [token() for _ in range(SAMPLES_PER_SCENE)]
        stamps = [1_532_402_927_647_951 + 10**8 * i + k * DT_US for k in range(SAMPLES_PER_SCENE)]
        t["scene"].append({"token": scene, "log_token": log, "nbr_samples": len(samples),
                           "first_sample_token": samples[0], "last_sample_token": samples[-1],
                           "name": name, "description": "tiny junction"})
        for k, (sample, stamp) in enumerate(zip(samples, stamps)):
            prev, nxt = (samples[k - 1] if k else ""), (samples[k + 1] if k + 1 < len(samples)
                                                        else "")
            t["sample"].append({"token": sample, "timestamp": stamp, "prev": prev, "next": nxt,
                                "scene_token": scene})
            ego = token()  # the ego vehicle waits at a corner of the junction
            t["ego_pose"].append({"token": ego, "timestamp": stamp, "rotation": [1, 0, 0, 0],
                                  "translation": [CANVAS / 2 - 20, CANVAS / 2 - 6, 0.0]})
            t["sample_data"].append({
                "token": token(), "sample_token": sample, "ego_pose_token": ego,
                "calibrated_sensor_token": calib, "timestamp": stamp, "fileformat": "pcd",
                "is_key_frame": True, "height": 0, "width": 0,
                "filename": f"samples/LIDAR_TOP/{sample}.pcd.bin", "prev": "", "next": ""})
        prediction[name] = []
        for motion in _scene_agents(rng, agents):
            instance = token()
            anns = [token() for _ in samples]
            t["instance"].append({"token": instance, "category_token": car,
                                  "nbr_annotations": len(anns), "first_annotation_token": anns[0],
                                  "last_annotation_token": anns[-1]})
            for k, ann in enumerate(anns):
                x, y = motion.xy[k] + CANVAS / 2
                t["sample_annotation"].append({
                    "token": ann, "sample_token": samples[k], "instance_token": instance,
                    "visibility_token": "4", "attribute_tokens": [t["attribute"][0]["token"]],
                    "translation": [float(x), float(y), 1.0], "size": [1.9, 4.5, 1.6],
                    "rotation": _quaternion(float(motion.heading[k])),
                    "prev": anns[k - 1] if k else "", "next": anns[k + 1] if k + 1 < len(anns)
                    else "", "num_lidar_pts": 10, "num_radar_pts": 1})
            prediction[name] += [f"{instance}_{samples[k]}" for k in PREDICT_AT]
    maps = out / "maps"
    (maps / "expansion").mkdir(parents=True, exist_ok=True)
    (maps / "prediction").mkdir(parents=True, exist_ok=True)
    for location, logs in logs_at.items():
        map_token = token()
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(maps / f"{map_token}.png")
        t["map"].append({"token": map_token, "log_tokens": logs, "category": "semantic_prior",
                         "filename": f"maps/{map_token}.png"})
        (maps / "expansion" / f"{location}.json").write_text(
            json.dumps(MapWriter(token).junction()))
    (maps / "prediction" / "prediction_scenes.json").write_text(json.dumps(prediction))
    (out / VERSION).mkdir(parents=True, exist_ok=True)
    for name, rows in t.items():
        (out / VERSION / f"{name}.json").write_text(json.dumps(rows))
    return out
