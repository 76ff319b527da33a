"""``--offline``: samples with no files. Labels, history and reasoning come from the built-in
world's planner (simulated, not rendered); the images are seeded noise."""
from __future__ import annotations

import torch

from ..constants import FRAME_CHANNELS, NUM_CAMERAS
from ..data.dataset import SampleDataset
from ..data.readers import SplitData
from .generate import simulate, stack_rows


def offline_split(n: int, seed: int, split: str) -> SplitData:
    rows = [simulate(seed, split, i)[2] for i in range(n)]
    labels, history = stack_rows(rows)
    keys = [(str(c), int(t)) for c, t in zip(labels["clip_ids"], labels["t0_us"])]
    return SplitData(keys, labels, history, frame_paths=[])


class OfflineDataset(SampleDataset):
    """Like SampleDataset, with frames of seeded Gaussian noise at ``resolution``."""

    def __init__(self, data: SplitData, resolution: int, seed: int):
        super().__init__(data, resolution)
        self.seed = seed

    def frames(self, i: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        shape = (NUM_CAMERAS, FRAME_CHANNELS, self.resolution, self.resolution)
        return torch.randn(shape, generator=g)
