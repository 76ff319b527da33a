"""What the two benchmark datasets share: the batch they hand the trainer and the index of
target-agent trajectories the trainer's action targets and baselines read.

A benchmark batch has the camera contract's trajectory keys, at the benchmark's rates, and a
scene input in place of ``frames`` (no ``coc_embedding``: benchmarks have no teacher reasoning):

    ego_history_xyz  float32 (B, S, 3)     the target agent's past, its frame at t0 (x forward,
    ego_history_rot  float32 (B, S, 3, 3)  y left), the last pose at the origin
    trajectory_xyz   float32 (B, T, 3)     its future
    trajectory_yaw   float32 (B, T)
    t0_us            int64   (B,)          key with clip_id
    clip_id          list[str] (B)
    raster           float32 (B, 3, R, R)  nuScenes: ImageNet-normalized RGB raster, or
    polylines        float32 (B, P, L, F)  Argoverse 2: see vectors.py
    polyline_mask    bool    (B, P, L)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data.batch import collate, yaw_from_rot
from ..data.readers import SplitData


def rotations(yaw: np.ndarray) -> np.ndarray:
    """float32 (..., 3, 3) rotations about z by ``yaw`` (..., radians)."""
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.zeros((*np.shape(yaw), 3, 3), np.float32)
    rot[..., 0, 0], rot[..., 0, 1], rot[..., 1, 0], rot[..., 1, 1] = c, -s, s, c
    rot[..., 2, 2] = 1
    return rot


def trajectory_index(keys: list[tuple[str, int]], history_xy: np.ndarray,
                     history_yaw: np.ndarray, future_xy: np.ndarray,
                     future_yaw: np.ndarray) -> SplitData:
    """The target agents' trajectories of a split, in the readers' SplitData layout (so the
    trainer's action targets and constant-velocity baseline read them as the guide's labels).

    Args: keys (clip_id, t0_us) per sample; xy (N, S or T, 2) metres and yaw (N, S or T)
    radians in each target's frame at t0.
    """
    def xyz(xy):
        return np.concatenate([xy, np.zeros_like(xy[..., :1])], -1).astype(np.float32)

    labels = {"t0_us": np.array([t for _, t in keys], np.int64),
              "trajectory_xyz": xyz(future_xy), "trajectory_rot": rotations(future_yaw)}
    history = {"ego_history_xyz": xyz(history_xy), "ego_history_rot": rotations(history_yaw)}
    return SplitData(list(keys), labels, history, frame_paths=[])


@dataclass(frozen=True)
class TargetPoses:
    """Each sample's target pose at t0 in the benchmark's world frame (nuScenes global,
    Argoverse 2 city coordinates): what takes a prediction in the target's frame back to the
    coordinates the leaderboards score."""

    origin: np.ndarray  # (N, 2) float64, metres
    yaw: np.ndarray  # (N,) float64, radians

    def to_world(self, xy) -> np.ndarray:
        """(N, ..., 2) points, each in its sample's target frame -> float64 world points (the
        inverse of ``vectors.Frame.points``)."""
        xy = np.asarray(xy, np.float64)
        shape = (len(self.yaw),) + (1,) * (xy.ndim - 2)
        c, s = np.cos(self.yaw).reshape(shape), np.sin(self.yaw).reshape(shape)
        x, y = xy[..., 0], xy[..., 1]
        return np.stack([c * x - s * y, s * x + c * y], -1) + self.origin.reshape(*shape, 2)


class BenchmarkDataset(Dataset):
    """Item i: the trajectory keys of sample i plus ``scene(i)`` (the subclass's input);
    ``poses``: the targets' poses at t0 in world coordinates."""

    collate_fn = staticmethod(collate)

    def __init__(self, data: SplitData, poses: TargetPoses):
        self.data, self.poses = data, poses
        self.columns = {
            "ego_history_xyz": data.history["ego_history_xyz"],
            "ego_history_rot": data.history["ego_history_rot"],
            "trajectory_xyz": data.labels["trajectory_xyz"],
            "trajectory_yaw": yaw_from_rot(data.labels["trajectory_rot"]),
            "t0_us": data.labels["t0_us"],
        }

    def __len__(self) -> int:
        return len(self.data)

    def future_world(self) -> np.ndarray:
        """(N, T, 2) float64: every target's true future in world coordinates."""
        return self.poses.to_world(self.data.labels["trajectory_xyz"][..., :2])

    def scene(self, i: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def __getitem__(self, i: int) -> dict:
        sample = {k: torch.from_numpy(np.asarray(v[i])) for k, v in self.columns.items()}
        sample.update(self.scene(i))
        sample["clip_id"] = self.data.keys[i][0]
        return sample
