"""The DALI loader against the torch loader (PIL decode in DataLoader workers), samples/s of whole
passes as the trainer receives them (loader built, every batch of the contract delivered), at the
same thread count, on built-in world frames at 224 px stored as JPEG.

The world is rendered once (32 samples) and its frames files copied under new clip ids up to
SAMPLES. Each loader pays in a pass what it pays in a training epoch after the first: the DALI
loader reuses the pipeline and reader processes of its first pass (the warm-up pass, as the
trainer's first epoch), the torch loader starts its DataLoader workers every pass (the trainer
builds a DataLoader per epoch)."""
from __future__ import annotations

import statistics
import time

import numpy as np
import pytest

from distill.data import dali, formats
from distill.data.dataset import SampleDataset
from distill.data.readers import SplitData, load_split
from distill.training.data import make_loader
from distill.world.generate import generate_world

RESOLUTION, RENDERED, SAMPLES, BATCH, WORKERS, PASSES = 224, 32, 384, 32, 2, 3


@pytest.fixture(scope="module")
def world_224(tmp_path_factory) -> SplitData:
    root = tmp_path_factory.mktemp("world224")
    generate_world(root, RENDERED, 1, seed=0, resolution=RESOLUTION, workers=WORKERS)
    labels = root / "teacher_labels"
    data = load_split(formats.labels_path(labels, "train"),
                      formats.ego_history_path(labels, "train"), root / "extracted_frames", "train")
    copies = root / "copies"
    keys, paths = [], []
    for i in range(SAMPLES):
        with np.load(data.frame_paths[i % RENDERED]) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["clip_id"] = np.array(f"copy-{i:05d}")
        paths.append(formats.save_npz_atomic(copies / f"sample_{i:05d}.npz", compressed=False,
                                             **arrays))
        keys.append((f"copy-{i:05d}", int(arrays["t0_us"])))
    rows = np.arange(SAMPLES) % RENDERED
    return SplitData(keys, {k: v[rows] for k, v in data.labels.items()},
                     {k: v[rows] for k, v in data.history.items()}, paths)


def samples_per_s(loader, epoch: int) -> float:
    """One pass of ``loader`` (built once per dataset, as the trainer's) over ``epoch``'s order."""
    start = time.perf_counter()
    n = 0
    loader.set_epoch(epoch)
    for batch in loader:
        n += len(batch["clip_id"])
        assert batch["frames"].shape[-1] == RESOLUTION
    return n / (time.perf_counter() - start)


@pytest.mark.skipif(not dali.dali_available(), reason="NVIDIA DALI is not installed")
def test_dali_loader_vs_torch_loader(world_224, record):
    dataset = SampleDataset(world_224, RESOLUTION)
    loaders = {kind: make_loader(dataset, BATCH, WORKERS, seed=0, kind=kind)
               for kind in ("dali", "torch")}
    rates = {"dali": [], "torch": []}
    samples_per_s(loaders["dali"], 0)  # warm-up: DALI's import, builds the pipeline
    for epoch in range(1, PASSES + 1):  # interleaved, so load changes hit both alike
        for kind in rates:
            rates[kind].append(samples_per_s(loaders[kind], epoch))
    loaders["dali"].close()
    ours, ref = statistics.median(rates["dali"]), statistics.median(rates["torch"])
    record("loader_dali_vs_torch", {"resolution": RESOLUTION, "batch": BATCH, "workers": WORKERS,
                                    "frames": "jpeg world", "device": "cpu"},
           ours, "samples/s", ref, floor=2.0)
