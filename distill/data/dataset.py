"""The torch Dataset of a split: frames, labels and ego history joined by (clip_id, t0_us),
each item one sample of the batch contract (``batch.py``)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..ops import normalize_frames
from .batch import label_columns
from .readers import SplitData, check_sample_key, read_frames


def resize_frames(frames: torch.Tensor, resolution: int | None) -> torch.Tensor:
    """Normalised frames ``(..., C, H, W)`` resized to ``resolution`` x ``resolution`` (bilinear,
    antialiased, as every torch-side consumer of frames resizes them); unchanged when they have
    that size already or ``resolution`` is None."""
    if not resolution or frames.shape[-2:] == (resolution, resolution):
        return frames
    flat = frames.reshape(-1, *frames.shape[-3:])
    flat = F.interpolate(flat, size=(resolution, resolution), mode="bilinear", antialias=True,
                         align_corners=False)
    return flat.reshape(*frames.shape[:-2], resolution, resolution)


class SampleDataset(Dataset):
    """Item i: the contract's keys for one sample; frames are read, normalized and (when
    stored at another size) resized to ``resolution`` on access; None keeps the stored size."""

    def __init__(self, data: SplitData, resolution: int | None = None):
        self.data = data
        self.resolution = resolution
        self.columns = label_columns(data.labels, data.history)

    def __len__(self) -> int:
        return len(self.data)

    def frames(self, i: int) -> torch.Tensor:
        """float32 (4, 12, H, W) of sample i."""
        path, key = self.data.frame_paths[i], self.data.keys[i]
        arrays = read_frames(path)
        check_sample_key(path, arrays, key)
        return resize_frames(normalize_frames(torch.from_numpy(arrays["frames"])),  # (4, 12, H, W)
                             self.resolution)

    def __getitem__(self, i: int) -> dict:
        sample = {k: torch.from_numpy(np.asarray(v[i])) for k, v in self.columns.items()}
        sample["frames"] = self.frames(i)
        sample["clip_id"] = self.data.keys[i][0]
        return sample
