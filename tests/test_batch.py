"""The batch contract: shapes, dtypes and the frame-major channel order."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from distill.data import formats
from distill.data.batch import check_batch, collate, sentence_ids, yaw_from_rot
from distill.data.dataset import SampleDataset
from distill.data.readers import load_split, read_frames
from distill.ops import IMAGENET_MEAN, IMAGENET_STD


def _dataset(world, split="val"):
    labels_dir = world / "teacher_labels"
    return SampleDataset(load_split(formats.labels_path(labels_dir, split),
                                    formats.ego_history_path(labels_dir, split),
                                    world / "extracted_frames", split))


def test_loader_batches_follow_the_contract(world):
    ds = _dataset(world)
    batch = next(iter(DataLoader(ds, batch_size=5, collate_fn=collate)))
    check_batch(batch)
    assert batch["frames"].shape == (5, 4, 12, 64, 64)
    assert batch["clip_id"] == [k[0] for k in ds.data.keys[:5]]
    torch.testing.assert_close(batch["trajectory_xyz"],
                               torch.from_numpy(ds.data.labels["trajectory_xyz"][:5]))


def test_channels_are_frame_major_rgb_and_imagenet_normalized(world):
    ds = _dataset(world)
    raw = read_frames(ds.data.frame_paths[2])["frames"]  # decoded (cam, frame, H, W, rgb)
    frames = ds[2]["frames"]  # (cam, 12, H, W)
    for cam, f, c in [(0, 0, 0), (1, 3, 2), (3, 1, 1), (2, 2, 0)]:
        expected = (raw[cam, f, :, :, c] / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        np.testing.assert_allclose(frames[cam, 3 * f + c].numpy(), expected, atol=1e-5)


def test_check_batch_names_the_broken_key(world):
    batch = collate([_dataset(world)[0]])
    batch["trajectory_yaw"] = batch["trajectory_yaw"].double()
    try:
        check_batch(batch)
    except ValueError as e:
        assert "trajectory_yaw" in str(e)
    else:
        raise AssertionError("a float64 trajectory_yaw passed the contract check")


def test_yaw_and_sentence_ids():
    yaw = np.array([0.3, -2.0, 3.0])
    rot = np.zeros((3, 3, 3))
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = (np.cos(yaw), -np.sin(yaw),
                                                              np.sin(yaw), np.cos(yaw))
    np.testing.assert_allclose(yaw_from_rot(rot), yaw, atol=1e-6)
    ids = sentence_ids(np.array(["b", "a", "b", "c"]))
    assert ids.dtype == np.int64 and ids[0] == ids[2] and len(set(ids.tolist())) == 3
