"""The trainer's data: the two splits (files or --offline), the action targets of the inverse
kinematics (computed once per dataset and cached next to the labels) and the loaders (DALI or
torch, the same batches in the same order)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..datasets import load_benchmark_split
from ..data import formats
from ..data.batch import collate, yaw_from_rot
from ..data.dataset import SampleDataset
from ..data.offline import OfflineDataset, offline_split
from ..data.readers import SplitData, load_split
from ..data.sampling import epoch_order
from ..kinematics import actions_from_trajectory, estimate_v0

OFFLINE_TRAIN_SAMPLES, OFFLINE_VAL_SAMPLES = 256, 64
ACTIONS_CACHE_VERSION = b"actions-v1"


def load_dataset(args, split: str) -> SampleDataset:
    """The ``split`` ("train" or "val") dataset per the data flags: the files (joined by key)
    or --offline samples, or --benchmark's split; --overfit-tiny N uses the first N training
    samples for both splits; --max-train/val-samples keep the first N."""
    if getattr(args, "benchmark", None):  # configs saved before the flag existed have none
        return load_benchmark_split(args, split)
    source = "train" if args.overfit_tiny else split
    limit = args.overfit_tiny or (args.max_train_samples if split == "train"
                                  else args.max_val_samples)
    if args.offline:
        default = OFFLINE_TRAIN_SAMPLES if source == "train" else OFFLINE_VAL_SAMPLES
        data = offline_split(limit or default, args.seed, source)
        return OfflineDataset(data, args.resolution, args.seed + (source == "val"))
    labels = args.train_labels if source == "train" else args.val_labels
    data = load_split(labels, formats.ego_history_path(args.ego_history_dir, source),
                      args.frames_dir, source)
    return SampleDataset(data.subset(limit) if limit else data, args.resolution)


def load_datasets(args) -> tuple[SampleDataset, SampleDataset]:
    """(train, val) datasets per the data flags."""
    return load_dataset(args, "train"), load_dataset(args, "val")


def _digest(data: SplitData, dt: float) -> str:
    h = hashlib.sha1(ACTIONS_CACHE_VERSION + repr(dt).encode())
    for a in (data.labels["trajectory_xyz"], data.labels["trajectory_rot"],
              data.history["ego_history_xyz"]):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def teacher_actions(data: SplitData, dt: float = formats.DT) -> np.ndarray:
    """(N, T, 2) acceleration and curvature that reproduce each teacher trajectory from the
    speed estimated from its history (the inverse of the students' unicycle rollout)."""
    xyz = torch.from_numpy(data.labels["trajectory_xyz"]).double()
    yaw = torch.from_numpy(yaw_from_rot(data.labels["trajectory_rot"])).double()
    v0 = estimate_v0(torch.from_numpy(data.history["ego_history_xyz"]).double(), dt)
    accel, curvature = actions_from_trajectory(xyz, yaw, v0, dt)
    return torch.stack([accel, curvature], -1).float().numpy()


class ActionTargets:
    """Teacher actions of a split, looked up by sample key."""

    def __init__(self, data: SplitData, cache_dir: Path | None = None, dt: float = formats.DT):
        self.row = {k: i for i, k in enumerate(data.keys)}
        cache = cache_dir / f"actions_{_digest(data, dt)}.npz" if cache_dir else None
        if cache is not None and cache.is_file():
            actions = np.load(cache)["actions"]
        else:
            actions = teacher_actions(data, dt)
            if cache is not None:
                try:
                    formats.save_npz_atomic(cache, actions=actions)
                except OSError:
                    pass  # a read-only data folder: compute again next time
        self.actions = torch.from_numpy(actions)  # (N, T, 2)

    def lookup(self, clip_ids: list[str], t0_us: torch.Tensor) -> torch.Tensor:
        rows = [self.row[(c, t)] for c, t in zip(clip_ids, t0_us.tolist())]
        return self.actions[rows]


def actions_cache_dir(args) -> Path | None:
    if args.offline:
        return None
    benchmark = getattr(args, "benchmark", None)
    root = getattr(args, f"{benchmark}_root") if benchmark else Path(args.train_labels).parent
    return Path(root) / ".distill_cache"


def make_loader(dataset, batch_size: int, workers: int, shuffle_seed: int | None = None,
                drop_last: bool = False, pin_memory: bool = False, kind: str = "torch",
                device: torch.device | str = "cpu", rank: int = 0, world_size: int = 1,
                skip: int = 0):
    """One pass over ``dataset`` in batches of the contract, by the ``kind`` of loader: "dali"
    (``data/dali.py``; frames decoded on ``device``) or "torch" (PIL decode in DataLoader
    workers). Both visit ``sampling.epoch_order`` (shuffled from ``shuffle_seed``, one seed
    per epoch, so a resumed run sees the same order as a straight one; sharded by ``rank`` of
    ``world_size``; ``skip``: global samples of the order already seen, see ``epoch_order``).
    --offline datasets have no files and always use the torch loader."""
    if kind == "dali" and getattr(getattr(dataset, "data", None), "frame_paths", None):
        from ..data.dali import DaliLoader
        return DaliLoader(dataset, batch_size, workers, shuffle_seed, drop_last, rank,
                          world_size, device, skip)
    if kind not in ("dali", "torch"):
        raise ValueError(f"unknown loader {kind!r}; expected dali or torch")
    order = epoch_order(len(dataset), shuffle_seed, rank, world_size, drop_last, batch_size,
                        skip)
    return DataLoader(dataset, batch_size=batch_size, sampler=order.tolist(), num_workers=workers,
                      collate_fn=getattr(dataset, "collate_fn", collate),  # benchmarks' own
                      drop_last=drop_last, pin_memory=pin_memory, persistent_workers=False)
