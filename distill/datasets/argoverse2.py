"""Argoverse 2 motion forecasting: the focal agent of each scenario, its 5 s history and 6 s
future at 10 Hz, and the scene as polylines in its frame at t0 (vectors.py), read with av2.

Layout (the dataset as downloaded; the official splits are its folders):

    ROOT/{train,val}/{scenario_id}/scenario_{scenario_id}.parquet
                                  /log_map_archive_{scenario_id}.json

Scenarios load with ``av2.datasets.motion_forecasting.scenario_serialization`` and maps with
``av2.map.map_api.ArgoverseStaticMap.from_json``. The index of focal trajectories (one parquet
read per scenario, ~200k in train) is computed once in parallel and cached in
ROOT/.distill_cache/.
"""
from __future__ import annotations

import hashlib
import multiprocessing
import os
from pathlib import Path

import numpy as np
import torch

from ..data.formats import save_npz_atomic
from ..data.readers import DataError
from ..data.stop import ignore_in_child, shielded
from .common import BenchmarkDataset, TargetPoses, trajectory_index
from .vectors import Frame, Track, build_polylines

HISTORY_STEPS, FUTURE_STEPS, DT = 50, 60, 0.1  # av2's OBS / PRED timesteps at 10 Hz
INDEX_VERSION = b"av2-index-v2"  # v2: the focal track id and its city pose at t0
PARALLEL_FROM = 256  # scenarios: a process pool for the real splits, small folders in-process


def _av2():
    try:
        from av2.datasets.motion_forecasting import scenario_serialization
        from av2.map.map_api import ArgoverseStaticMap
    except ImportError as e:
        raise DataError(f"--benchmark argoverse2 needs av2 ({e}); pip install -e '.[bench]'") \
            from None
    return scenario_serialization, ArgoverseStaticMap


def scenario_files(folder: Path) -> tuple[Path, Path]:
    """(scenario parquet, static map json) of a scenario folder."""
    sid = folder.name
    return folder / f"scenario_{sid}.parquet", folder / f"log_map_archive_{sid}.json"


def track_arrays(track, steps: int) -> Track:
    """A track's states over ``steps`` timesteps as arrays; unobserved steps invalid."""
    xy, heading, speed = np.zeros((steps, 2)), np.zeros(steps), np.zeros(steps)
    valid = np.zeros(steps, bool)
    for s in track.object_states:
        if s.timestep < steps:
            xy[s.timestep], heading[s.timestep] = s.position, s.heading
            speed[s.timestep], valid[s.timestep] = np.hypot(*s.velocity), True
    return Track(xy, heading, speed, valid)


def filled(track: Track) -> Track:
    """Missing steps linearly interpolated (held at the ends), headings unwrapped first."""
    t, ok = np.arange(len(track.valid)), np.flatnonzero(track.valid)

    def interp(v):
        return np.interp(t, ok, v[ok])

    xy = np.stack([interp(track.xy[:, 0]), interp(track.xy[:, 1])], -1)
    heading = np.interp(t, ok, np.unwrap(track.heading[ok]))
    return Track(xy, heading, interp(track.speed), np.ones(len(t), bool))


def focal_track(scenario, path: Path) -> Track:
    """The focal agent over all 110 steps, gaps filled; it must be seen at t0 and after."""
    focal = next((t for t in scenario.tracks if t.track_id == scenario.focal_track_id), None)
    if focal is None:
        raise DataError(f"{path}: focal track {scenario.focal_track_id} is missing")
    track = track_arrays(focal, HISTORY_STEPS + FUTURE_STEPS)
    if not track.valid[HISTORY_STEPS - 1]:
        raise DataError(f"{path}: the focal track is not observed at t0 (timestep "
                        f"{HISTORY_STEPS - 1})")
    if not track.valid[HISTORY_STEPS:].any():
        raise DataError(f"{path}: the focal track has no future (a test-split scenario?)")
    return filled(track)


def load_scenario(path: Path):
    """av2's ArgoverseScenario of a parquet file (a DataError naming it if it cannot)."""
    serialization, _ = _av2()
    try:
        return serialization.load_argoverse_scenario_parquet(path)
    except Exception as e:  # pyarrow / pandas raise many kinds for a missing or damaged file
        detail = str(e).splitlines()[0] if str(e) else ""
        raise DataError(f"{path}: not a readable Argoverse 2 scenario ({type(e).__name__}: "
                        f"{detail})") from None


def index_row(folder: Path) -> tuple:
    """(key, history xy, history yaw, future xy, future yaw) of one scenario in the focal frame,
    then the focal track id and the frame's city origin and heading."""
    path = scenario_files(folder)[0]
    scenario = load_scenario(path)
    track = focal_track(scenario, path)
    frame = Frame(track.xy[HISTORY_STEPS - 1], float(track.heading[HISTORY_STEPS - 1]))
    key = (scenario.scenario_id, int(scenario.timestamps_ns[HISTORY_STEPS - 1]) // 1000)
    past, future = slice(0, HISTORY_STEPS), slice(HISTORY_STEPS, None)
    return (key, frame.points(track.xy[past]), frame.angles(track.heading[past]),
            frame.points(track.xy[future]), frame.angles(track.heading[future]),
            scenario.focal_track_id, frame.origin, frame.yaw)


def load_index(folders: list[Path], cache_dir: Path) -> tuple:
    """Keys, stacked trajectories, focal track ids and ``TargetPoses`` of the scenarios, from
    the cache when it has them."""
    digest = hashlib.sha1(INDEX_VERSION + "\n".join(f.name for f in folders).encode())
    cache = cache_dir / f"argoverse2_{folders[0].parent.name}_{digest.hexdigest()[:16]}.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            keys = list(zip(z["clip_ids"].tolist(), z["t0_us"].tolist()))
            return (keys, z["hist_xy"], z["hist_yaw"], z["fut_xy"], z["fut_yaw"],
                    z["track_ids"].tolist(), TargetPoses(z["origin"], z["yaw"]))
    workers = min(os.cpu_count() or 1, 8)
    if len(folders) >= PARALLEL_FROM and workers > 1:
        with shielded():  # its workers leave the stop signals to the trainer (data/stop.py)
            pool = multiprocessing.get_context("fork").Pool(workers, initializer=ignore_in_child)
        with pool:
            rows = pool.map(index_row, folders, chunksize=64)
    else:
        rows = [index_row(f) for f in folders]
    keys = [r[0] for r in rows]
    arrays = [np.stack([r[i] for r in rows]).astype(np.float32) for i in range(1, 5)]
    track_ids = [r[5] for r in rows]
    poses = TargetPoses(np.array([r[6] for r in rows], np.float64),
                        np.array([r[7] for r in rows], np.float64))
    try:
        save_npz_atomic(cache, clip_ids=np.array([k[0] for k in keys]),
                        t0_us=np.array([k[1] for k in keys], np.int64), hist_xy=arrays[0],
                        hist_yaw=arrays[1], fut_xy=arrays[2], fut_yaw=arrays[3],
                        track_ids=np.array(track_ids), origin=poses.origin, yaw=poses.yaw)
    except OSError:
        pass  # a read-only dataset folder: index again next time
    return (keys, *arrays, track_ids, poses)


class Argoverse2Forecasting(BenchmarkDataset):
    """Items: the common trajectory keys (S = 50, T = 60 at 0.1 s) plus ``polylines`` and
    ``polyline_mask`` of the scenario (vectors.py). ``track_ids``: each scenario's focal track
    id."""

    def __init__(self, folders: list[Path], cache_dir: Path):
        keys, hist_xy, hist_yaw, fut_xy, fut_yaw, self.track_ids, poses = load_index(
            folders, cache_dir)
        super().__init__(trajectory_index(keys, hist_xy, hist_yaw, fut_xy, fut_yaw), poses)
        self.folders = folders

    @classmethod
    def open(cls, root, split: str, limit: int = 0) -> "Argoverse2Forecasting":
        """The official ``split`` folder ("train" or "val") of ``root``, its first ``limit``
        scenarios (in name order) when limit > 0."""
        folder = Path(root) / split
        if not folder.is_dir():
            raise DataError(f"{folder}: Argoverse 2 split folder not found (--argoverse2-root "
                            "must hold train/ and val/)")
        folders = sorted(p for p in folder.iterdir() if p.is_dir())
        if not folders:
            raise DataError(f"{folder}: no scenario folders")
        return cls(folders[:limit] if limit else folders, Path(root) / ".distill_cache")

    def scene(self, i: int) -> dict[str, torch.Tensor]:
        scenario_path, map_path = scenario_files(self.folders[i])
        scenario = load_scenario(scenario_path)
        try:
            avm = _av2()[1].from_json(map_path)
        except Exception as e:  # missing file, bad JSON, missing keys
            raise DataError(f"{map_path}: not a readable Argoverse 2 static map "
                            f"({type(e).__name__}: {e})") from None
        target = focal_track(scenario, scenario_path)
        frame = Frame(target.xy[HISTORY_STEPS - 1], float(target.heading[HISTORY_STEPS - 1]))
        past = Track(*(a[:HISTORY_STEPS] for a in (target.xy, target.heading, target.speed,
                                                    target.valid)))
        others = [track_arrays(t, HISTORY_STEPS) for t in scenario.tracks
                  if t.track_id != scenario.focal_track_id]
        lanes = [avm.get_lane_segment_centerline(lane_id)[:, :2]
                 for lane_id in avm.get_scenario_lane_segment_ids()]
        crossings = [pc.polygon[:, :2] for pc in avm.get_scenario_ped_crossings()]
        polylines, mask = build_polylines(past, others, lanes, crossings, frame, DT)
        return {"polylines": torch.from_numpy(polylines), "polyline_mask": torch.from_numpy(mask)}
