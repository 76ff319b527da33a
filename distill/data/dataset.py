"""The torch Dataset of a split: frames, labels and ego history joined by (clip_id, t0_us),
each item one sample of the batch contract (``batch.py``)."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ..ops import normalize_frames
from .batch import label_columns
from .readers import DataError, SplitData, read_frames


class SampleDataset(Dataset):
    """Item i: the contract's keys for one sample; frames are read and normalized on access."""

    def __init__(self, data: SplitData):
        self.data = data
        self.columns = label_columns(data.labels, data.history)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict:
        path, key = self.data.frame_paths[i], self.data.keys[i]
        arrays = read_frames(path)
        stored = (str(arrays["clip_id"]), int(arrays["t0_us"]))
        if stored != key:
            raise DataError(f"{path}: holds sample {stored}, expected {key} (changed since indexing)")
        sample = {k: torch.from_numpy(np.asarray(v[i])) for k, v in self.columns.items()}
        sample["frames"] = normalize_frames(torch.from_numpy(arrays["frames"]))  # (4, 12, H, W)
        sample["clip_id"] = key[0]
        return sample
