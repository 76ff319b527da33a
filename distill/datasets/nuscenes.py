"""nuScenes prediction: the challenge's agents (``get_prediction_challenge_split``), their 2 s
history and 6 s future at 2 Hz from ``PredictHelper``, and the devkit's rasterized input
(``InputRepresentation`` of ``StaticLayerRasterizer`` + ``AgentBoxesWithFadedHistory`` combined
by ``Rasterizer``): the map layers and the agents' boxes with faded history, the target facing
up, 40 m ahead, 10 m behind, 25 m either side.

Layout (the dataset as downloaded with the map expansion):

    ROOT/v1.0-trainval/*.json (or ROOT/v1.0-mini/*.json: the mini_train / mini_val splits)
    ROOT/maps/expansion/{location}.json, ROOT/maps/prediction/prediction_scenes.json

Rasters are cached as PNG in ROOT/.distill_cache/nuscenes_rasters_{R}px/ on first use.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..constants import IMAGENET_MEAN, IMAGENET_STD
from ..data.readers import DataError
from .common import BenchmarkDataset, TargetPoses, trajectory_index
from .vectors import Frame

HISTORY_S, FUTURE_S, HZ = 2, 6, 2
HISTORY_STEPS, FUTURE_STEPS = HISTORY_S * HZ + 1, FUTURE_S * HZ  # t0 included in the history
RASTER_METRES = 50.0  # the devkit's default extent: 40 ahead + 10 behind, 25 + 25 across
# version folder -> (prediction split names of our "train" and "val")
VERSIONS = {"v1.0-trainval": ("train", "val"), "v1.0-mini": ("mini_train", "mini_val")}


def _devkit():
    try:
        from nuscenes import NuScenes
        from nuscenes.eval.prediction.splits import get_prediction_challenge_split
        from nuscenes.prediction import PredictHelper
        from nuscenes.prediction.input_representation import (agents, combinators, interface,
                                                               static_layers)
    except ImportError as e:
        raise DataError(f"--benchmark nuscenes needs nuscenes-devkit ({e}); "
                        "pip install -e '.[bench]'") from None
    return NuScenes, PredictHelper, get_prediction_challenge_split, (
        interface.InputRepresentation, static_layers.StaticLayerRasterizer,
        agents.AgentBoxesWithFadedHistory, combinators.Rasterizer)


def _yaw(record: dict) -> float:
    """Heading of an annotation's quaternion (w, x, y, z) about z."""
    w, x, y, z = record["rotation"]
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


def agent_trajectory(helper, instance: str, sample: str, where: str) -> tuple:
    """(key, history xy, history yaw, future xy, future yaw, frame) of one challenge agent in
    its frame at t0 (``frame``: its pose at t0 in global coordinates). A history shorter than 2 s (an agent first seen less than 2 s ago) is padded with
    its earliest pose, i.e. as if it had stood there; the future must be complete."""
    now = helper.get_sample_annotation(instance, sample)
    past = helper.get_past_for_agent(instance, sample, HISTORY_S, in_agent_frame=False,
                                     just_xy=False)[::-1]  # oldest first
    future = helper.get_future_for_agent(instance, sample, FUTURE_S, in_agent_frame=False,
                                         just_xy=False)
    if len(future) != FUTURE_STEPS:
        raise DataError(f"{where}: agent {instance}_{sample} has {len(future)} future "
                        f"annotations, the benchmark needs {FUTURE_STEPS} (6 s at 2 Hz)")
    history = [past[0]] * (HISTORY_STEPS - 1 - len(past)) + list(past) + [now]
    frame = Frame(np.array(now["translation"][:2]), _yaw(now))

    def poses(records):
        xy = frame.points(np.array([r["translation"][:2] for r in records]))
        return xy, frame.angles(np.array([_yaw(r) for r in records]))

    key = (instance, int(helper.data.get("sample", sample)["timestamp"]))
    return (key, *poses(history), *poses(future), frame)


class RasterCache:
    """Rasters as PNG files (lossless), one per agent and sample: for every raster the devkit
    renders the map layers and tests every lane of the map against the window, to draw the
    same image every epoch. An unwritable folder is skipped (rasters recomputed)."""

    def __init__(self, folder: Path | None):
        self.folder = folder

    def get(self, name: str, make) -> np.ndarray:
        path = self.folder / f"{name}.png" if self.folder else None
        if path is not None and path.is_file():
            return np.array(Image.open(path).convert("RGB"))  # writable, for torch
        image = make()
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(suffix=".png", dir=path.parent)
            except OSError:
                return image
            try:  # temp file + rename: workers never read half a file
                with os.fdopen(fd, "wb") as f:
                    Image.fromarray(image).save(f, format="PNG")
                os.replace(tmp, path)
            except OSError:
                Path(tmp).unlink(missing_ok=True)
        return image


class NuScenesPrediction(BenchmarkDataset):
    """Items: the common trajectory keys (S = 5, T = 12 at 0.5 s) plus ``raster`` float32
    (3, R, R), ImageNet-normalized, covering 50 m x 50 m (50 / R m per pixel). ``pairs``:
    the (instance, sample) tokens of each item; ``helper``: the devkit's PredictHelper."""

    def __init__(self, helper, tokens: list[str], resolution: int, where: str,
                 cache_dir: Path | None = None):
        representation, static_layer, agent_boxes, combine = _devkit()[3]
        pairs = [tuple(token.split("_")) for token in tokens]
        rows = [agent_trajectory(helper, inst, sample, where) for inst, sample in pairs]
        poses = TargetPoses(np.array([r[5].origin for r in rows], np.float64),
                            np.array([r[5].yaw for r in rows], np.float64))
        super().__init__(trajectory_index([r[0] for r in rows],
                                          *(np.stack([r[i] for r in rows]) for i in range(1, 5))),
                         poses)
        self.pairs, self.resolution, self.helper = pairs, resolution, helper
        self.cache = RasterCache(cache_dir / f"nuscenes_rasters_{resolution}px"
                                 if cache_dir else None)
        metres_per_pixel = RASTER_METRES / resolution
        self.rasterizer = representation(
            static_layer(helper, resolution=metres_per_pixel),
            agent_boxes(helper, seconds_of_history=HISTORY_S, frequency_in_hz=HZ,
                        resolution=metres_per_pixel),
            combine())

    @classmethod
    def open(cls, root, split: str, resolution: int, limit: int = 0) -> "NuScenesPrediction":
        """The official prediction ``split`` ("train" or "val"; mini_train / mini_val for
        v1.0-mini) of ``root``; its first ``limit`` agents when limit > 0."""
        NuScenes, PredictHelper, challenge_split, _ = _devkit()
        root = Path(root)
        version = next((v for v in VERSIONS if (root / v).is_dir()), None)
        if version is None:
            raise DataError(f"{root}: no nuScenes tables (expected "
                            f"{' or '.join(VERSIONS)}/ under --nuscenes-root)")
        scenes_file = root / "maps" / "prediction" / "prediction_scenes.json"
        if not scenes_file.is_file():
            raise DataError(f"{scenes_file}: not found (the prediction challenge split ships "
                            "with the nuScenes map expansion)")
        name = VERSIONS[version][("train", "val").index(split)]
        try:
            nusc = NuScenes(version, dataroot=str(root), verbose=False)
        except (AssertionError, OSError, KeyError, ValueError) as e:
            raise DataError(f"{root / version}: not a loadable nuScenes table set "
                            f"({type(e).__name__}: {e})") from None
        tokens = challenge_split(name, dataroot=str(root))
        if not tokens:
            raise DataError(f"{scenes_file}: the {name} split has no agents")
        return cls(PredictHelper(nusc), tokens[:limit] if limit else tokens, resolution,
                   str(scenes_file), root / ".distill_cache")

    def scene(self, i: int) -> dict[str, torch.Tensor]:
        pair = self.pairs[i]
        image = self.cache.get("_".join(pair), lambda: self.rasterizer.make_input_representation(
            *pair))  # (H, W, 3) uint8
        raster = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255
        if raster.shape[-2:] != (self.resolution, self.resolution):  # int() rounding: +-1 px
            raster = F.interpolate(raster[None], size=(self.resolution,) * 2, mode="bilinear",
                                   align_corners=False)[0]
        mean, std = (torch.tensor(v).view(3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
        return {"raster": (raster - mean) / std}
