"""The batch contract: what every loader (torch, DALI, offline) hands the trainer.

A batch is a dict (documented in docs/formats.md):

    frames           float32 (B, 4 cams, 12, H, W)  channels frame-major: t0-0.3 s RGB ... t0 RGB,
                                                    ImageNet mean/std normalized
    ego_history_xyz  float32 (B, 16, 3)             t0 - 1.5 s ... t0, ego frame at t0
    ego_history_rot  float32 (B, 16, 3, 3)
    trajectory_xyz   float32 (B, 64, 3)             t0 + 0.1 s ... t0 + 6.4 s
    trajectory_yaw   float32 (B, 64)                radians, from trajectory_rot
    coc_embedding    float32 (B, 384)               teacher reasoning embedding, unit rows
    coc_id           int64   (B,)                   one id per distinct sentence of the split
    clip_id          list[str] (B)
    t0_us            int64   (B,)
"""
from __future__ import annotations

import numpy as np
import torch

from ..constants import EMBED_DIM, FRAME_CHANNELS, FUTURE_STEPS, HISTORY_STEPS, NUM_CAMERAS

# key -> (dtype, shape); "B", "H" and "W" are free, B shared by all.
BATCH_SCHEMA = {
    "frames": (torch.float32, ("B", NUM_CAMERAS, FRAME_CHANNELS, "H", "W")),
    "ego_history_xyz": (torch.float32, ("B", HISTORY_STEPS, 3)),
    "ego_history_rot": (torch.float32, ("B", HISTORY_STEPS, 3, 3)),
    "trajectory_xyz": (torch.float32, ("B", FUTURE_STEPS, 3)),
    "trajectory_yaw": (torch.float32, ("B", FUTURE_STEPS)),
    "coc_embedding": (torch.float32, ("B", EMBED_DIM)),
    "coc_id": (torch.int64, ("B",)),
    "t0_us": (torch.int64, ("B",)),
}
TENSOR_KEYS = tuple(BATCH_SCHEMA)


def yaw_from_rot(rot: np.ndarray) -> np.ndarray:
    """Heading (radians) of rotation matrices (..., 3, 3): atan2(R[1, 0], R[0, 0])."""
    return np.arctan2(rot[..., 1, 0], rot[..., 0, 0]).astype(np.float32)


def sentence_ids(texts: np.ndarray) -> np.ndarray:
    """int64 id per row, equal for rows with the same sentence (ids in sorted-text order)."""
    return np.unique(texts, return_inverse=True)[1].reshape(-1).astype(np.int64)


def label_columns(labels: dict, history: dict) -> dict[str, np.ndarray]:
    """Per-sample arrays of a split for the contract's non-frame keys, rows aligned."""
    return {
        "ego_history_xyz": history["ego_history_xyz"],
        "ego_history_rot": history["ego_history_rot"],
        "trajectory_xyz": labels["trajectory_xyz"],
        "trajectory_yaw": yaw_from_rot(labels["trajectory_rot"]),
        "coc_embedding": labels["coc_embeddings"],
        "coc_id": sentence_ids(labels["coc_texts"]),
        "t0_us": labels["t0_us"],
    }


def collate(samples: list[dict]) -> dict:
    """Stack per-sample dicts (tensors, and a ``clip_id`` string that becomes a list) into a
    batch: every key the samples have (the contract's, the trainer's ``action_target``, a
    benchmark's scene input)."""
    batch = {k: torch.stack([torch.as_tensor(s[k]) for s in samples])
             for k in samples[0] if k != "clip_id"}
    batch["clip_id"] = [s["clip_id"] for s in samples]
    return batch


def check_batch(batch: dict) -> None:
    """Raise ValueError naming the first key whose dtype or shape breaks the contract."""
    missing = [k for k in (*TENSOR_KEYS, "clip_id") if k not in batch]
    if missing:
        raise ValueError(f"batch lacks {missing}")
    size = len(batch["clip_id"])
    for key, (dtype, shape) in BATCH_SCHEMA.items():
        t = batch[key]
        ok = (isinstance(t, torch.Tensor) and t.dtype == dtype and t.dim() == len(shape)
              and all(d == s or (d == "B" and s == size) or d in ("H", "W")
                      for d, s in zip(shape, t.shape)))
        if not ok:
            got = f"{t.dtype} {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"batch['{key}'] is {got}, expected {dtype} {shape} with B={size}")
