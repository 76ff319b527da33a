"""The trainer's data: the two splits (files, --offline or a --benchmark's), each sample's teacher
action targets (the inverse kinematics, computed once per split and cached next to the data)
as the batch's ``action_target``, and the loaders (DALI or torch, the same batches in the same
order), each built once per split and told its epoch."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..data import formats
from ..data.batch import collate
from ..data.dataset import SampleDataset
from ..data.readers import SplitData, load_split
from ..data.sampling import EpochSampler
from ..data.stop import shielded, worker_init
from ..datasets import load_benchmark_split
from ..kinematics import trajectory_actions
from ..world.offline import OfflineDataset, offline_split
from .config import RunConfig

OFFLINE_TRAIN_SAMPLES, OFFLINE_VAL_SAMPLES = 256, 64
ACTIONS_CACHE_VERSION = b"actions-v1"


def sample_limit(config: RunConfig, split: str) -> tuple[str, int]:
    """(source split, first N samples kept; 0 = all): --overfit-tiny N trains and validates on
    the first N training samples, else --max-train/val-samples."""
    if config.overfit_tiny:
        return "train", config.overfit_tiny
    return split, config.max_train_samples if split == "train" else config.max_val_samples


def load_dataset(config: RunConfig, split: str):
    """The ``split`` ("train" or "val") dataset per the data flags: the files (joined by key),
    --offline samples, or --benchmark's split; limited by ``sample_limit``."""
    source, limit = sample_limit(config, split)
    if config.benchmark:
        return load_benchmark_split(config, source, limit)
    if config.offline:
        default = OFFLINE_TRAIN_SAMPLES if source == "train" else OFFLINE_VAL_SAMPLES
        data = offline_split(limit or default, config.seed, source)
        return OfflineDataset(data, config.resolution, config.seed + (source == "val"))
    labels = config.train_labels if source == "train" else config.val_labels
    data = load_split(labels, formats.ego_history_path(config.ego_history_dir, source),
                      config.frames_dir, source)
    return SampleDataset(data.subset(limit) if limit else data, config.resolution)


def _digest(data: SplitData, dt: float, kinematics: str) -> str:
    # Ours hashes what it did before the teacher's existed (the caches written then still hold);
    # the teacher's also reads the history's rotations.
    arrays = [data.labels["trajectory_xyz"], data.labels["trajectory_rot"],
              data.history["ego_history_xyz"]]
    tag = b""
    if kinematics != "distill":
        tag, arrays = kinematics.encode(), arrays + [data.history["ego_history_rot"]]
    h = hashlib.sha1(ACTIONS_CACHE_VERSION + repr(dt).encode() + tag)
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def teacher_actions(data: SplitData, dt: float, kinematics: str) -> np.ndarray:
    """(N, T, 2) float32 acceleration and curvature that reproduce each teacher trajectory from
    the speed estimated (in float64) from its history, by ``kinematics``' estimators
    (``distill.kinematics.trajectory_actions``)."""
    _, accel, curvature = trajectory_actions(
        kinematics, *(torch.from_numpy(data.history[k]).double()
                      for k in ("ego_history_xyz", "ego_history_rot")),
        *(torch.from_numpy(data.labels[k]) for k in ("trajectory_xyz", "trajectory_rot")), dt)
    return torch.stack([accel, curvature], -1).float().numpy()


def attach_action_targets(dataset, cache_dir: Path | None, dt: float,
                          kinematics: str = "distill") -> np.ndarray:
    """Adds the split's teacher actions (N, T, 2) to the dataset's per-sample columns, so every
    batch carries them as ``action_target``; read from / written to ``cache_dir`` (None: no
    cache; a read-only folder: computed again next time). Returns them."""
    digest = _digest(dataset.data, dt, kinematics)
    cache = cache_dir / f"actions_{digest}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        actions = np.load(cache)["actions"]
    else:
        actions = teacher_actions(dataset.data, dt, kinematics)
        if cache is not None:
            try:
                formats.save_npz_atomic(cache, actions=actions)
            except OSError:
                pass
    dataset.columns["action_target"] = actions
    return actions


def attach_scenarios(dataset) -> list[str]:
    """The split's scenario names (sorted) and each sample's index into them as the column
    ``scenario_id`` (per-scenario validation ADE); [] when its labels have no ``scenario``."""
    labels = dataset.data.labels.get("scenario")
    if labels is None or len(labels) != len(dataset):
        return []
    names, ids = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    dataset.columns["scenario_id"] = ids.astype(np.int64)
    return names.tolist()


def actions_cache_dir(config: RunConfig) -> Path | None:
    if config.offline:
        return None
    root = (getattr(config, f"{config.benchmark}_root") if config.benchmark
            else Path(config.train_labels).parent)
    return Path(root) / ".distill_cache"


class TorchLoader:
    """``--loader torch``: a DataLoader (PIL decode in worker processes) over an
    ``EpochSampler``, built once per split; ``set_epoch`` as the DALI loader's. Its workers,
    started anew for each pass, ignore the stop signals (``data/stop.py``): a signal to the
    whole process group stops the run through the main process, not by killing a worker."""

    def __init__(self, dataset, batch_size: int, workers: int, seed: int | None,
                 drop_last: bool, pin_memory: bool, rank: int, world_size: int):
        self.sampler = EpochSampler(len(dataset), seed, rank, world_size, drop_last, batch_size)
        self.loader = DataLoader(dataset, batch_size=batch_size, sampler=self.sampler,
                                 num_workers=workers, drop_last=drop_last, pin_memory=pin_memory,
                                 collate_fn=getattr(dataset, "collate_fn", collate),
                                 worker_init_fn=worker_init if workers else None)

    def set_epoch(self, epoch: int, skip: int = 0, weights: np.ndarray | None = None) -> None:
        self.sampler.set_epoch(epoch, skip, weights)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        with shielded():  # the workers start inside, blind to the stop signals
            return iter(self.loader)

    def close(self) -> None:
        pass


def make_loader(dataset, batch_size: int, workers: int, seed: int | None = None,
                drop_last: bool = False, pin_memory: bool = False, kind: str = "torch",
                device: torch.device | str = "cpu", rank: int = 0, world_size: int = 1):
    """The loader of ``dataset`` by ``kind``: "dali" (``data/dali.py``; frames decoded on
    ``device``) or "torch". Both visit ``sampling.epoch_order`` of the epoch given to
    ``set_epoch`` (shuffled from ``seed``, one order per epoch, so a resumed run sees the same
    order as a straight one; ``seed`` None: dataset order), sharded by ``rank`` of
    ``world_size``. --offline and benchmark datasets have no frames files: always torch."""
    if kind not in ("dali", "torch"):
        raise ValueError(f"unknown loader {kind!r}; expected dali or torch")
    if kind == "dali" and getattr(getattr(dataset, "data", None), "frame_paths", None):
        from ..data.dali import DaliLoader
        return DaliLoader(dataset, batch_size, workers, seed, drop_last, rank, world_size, device)
    return TorchLoader(dataset, batch_size, workers, seed, drop_last, pin_memory, rank,
                       world_size)
