"""The DALI loader: the torch loader's batches (same samples in the same order for a seed, same
labels, frames equal within the JPEG decoders' tolerance), shards that cover every sample once,
one-line errors naming the clip, and the CPU/GPU selection."""
from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import pytest
import torch

from distill.data import dali, formats
from distill.data.batch import check_batch
from distill.data.dataset import SampleDataset
from distill.data.readers import DataError, load_split, read_frames
from distill.data.sampling import epoch_order, epoch_seed
from distill.training import args as training_args
from distill.training.args import build_parser
from distill.training.data import make_loader

from test_jpeg_frames import _corrupt, textured_frames

pytestmark = pytest.mark.skipif(not dali.dali_available(), reason="NVIDIA DALI is not installed")
GREY_LEVEL = 1 / (255 * min(0.229, 0.224, 0.225))  # one uint8 step, normalised


def split(world, name="train"):
    labels = world / "teacher_labels"
    return load_split(formats.labels_path(labels, name), formats.ego_history_path(labels, name),
                      world / "extracted_frames", name)


@pytest.fixture(scope="module")
def textured(world, tmp_path_factory):
    """The world's val split with textured frames (same keys), JPEG-stored at 64 px."""
    folder = tmp_path_factory.mktemp("textured")
    data = split(world, "val")
    paths = []
    for i, (key, path) in enumerate(zip(data.keys, data.frame_paths)):
        stored = read_frames(path)
        paths.append(formats.write_frames(folder / path.name, textured_frames(i), key[0], key[1],
                                          stored["timestamps"]))
    return dataclasses.replace(data, frame_paths=paths)


def batches(dataset, kind, epoch=0, **kwargs):
    kwargs.setdefault("workers", 2)
    loader = make_loader(dataset, kwargs.pop("batch_size", 5), kind=kind, **kwargs)
    loader.set_epoch(epoch)
    try:
        return list(loader)
    finally:
        loader.close()


@pytest.mark.parametrize("resolution, frames_atol", [(None, GREY_LEVEL), (48, 8 * GREY_LEVEL)])
def test_dali_and_torch_loaders_yield_the_same_batches(textured, resolution, frames_atol):
    """Stored size: DALI's CPU decoder and PIL (both libjpeg-turbo) agree to a grey level.
    Resized: DALI's and torch's antialiased linear filters differ by a few levels at edges."""
    dataset = SampleDataset(textured, resolution)
    ours = batches(dataset, "dali", epoch=3, seed=42)
    ref = batches(dataset, "torch", epoch=3, seed=42)
    assert len(ours) == len(ref) == 4  # 16 samples, batches of 5
    order = epoch_order(len(dataset), epoch_seed(42, 3))
    assert sum((b["clip_id"] for b in ours), []) == [dataset.data.keys[i][0] for i in order]
    for a, b in zip(ours, ref):
        check_batch(a)
        assert a["clip_id"] == b["clip_id"]
        for key in b:
            if key not in ("clip_id", "frames"):
                assert torch.equal(a[key], b[key]), key
        assert a["frames"].shape == b["frames"].shape
        diff = (a["frames"] - b["frames"]).abs()
        assert diff.max() <= frames_atol and diff.mean() <= GREY_LEVEL / 4, diff.max()


def test_dali_reads_raw_frames_too(world, tmp_path):
    data = split(world, "val")
    paths = [formats.write_frames(tmp_path / p.name, read_frames(p)["frames"], k[0], k[1],
                                  np.zeros((4, 4), np.int64), jpeg_quality=None)
             for k, p in zip(data.keys, data.frame_paths)]
    dataset = SampleDataset(dataclasses.replace(data, frame_paths=paths), 64)
    ours, ref = batches(dataset, "dali", workers=0), batches(dataset, "torch", workers=0)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a["frames"], b["frames"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("n, world_size, batch_size", [(48, 3, 5), (16, 4, 3), (7, 2, 4)])
def test_shards_cover_every_sample_exactly_once(n, world_size, batch_size):
    seen = np.concatenate([epoch_order(n, 11, r, world_size, batch_size=batch_size)
                           for r in range(world_size)])
    assert sorted(seen.tolist()) == list(range(n))
    dropped = [epoch_order(n, 11, r, world_size, True, batch_size) for r in range(world_size)]
    assert len({len(d) for d in dropped}) == 1 and len(dropped[0]) % batch_size == 0
    assert len(set(np.concatenate(dropped).tolist())) == sum(map(len, dropped))


def test_dali_shards_by_rank(world):
    dataset = SampleDataset(split(world), None)
    clips = []
    for rank in range(3):
        loader = make_loader(dataset, 4, 1, seed=1, kind="dali", rank=rank, world_size=3)
        loader.set_epoch(1)
        got = [c for b in loader for c in b["clip_id"]]
        loader.close()
        assert len(loader) == -(-len(got) // 4)
        clips += got
    assert sorted(clips) == sorted(k[0] for k in dataset.data.keys)


def test_drop_last_keeps_whole_batches(world):
    dataset = SampleDataset(split(world, "val"), None)  # 16 samples
    loader = make_loader(dataset, 5, 1, seed=3, drop_last=True, kind="dali")
    assert len(loader) == 3 and [len(b["clip_id"]) for b in loader] == [5, 5, 5]
    loader.close()


@pytest.mark.parametrize("how", ["truncated", "garbage", "precision"])
@pytest.mark.parametrize("kind", ["dali", "torch"])
@pytest.mark.parametrize("resolution", [None, 48])
def test_a_corrupt_jpeg_names_the_clip(textured, tmp_path, how, kind, resolution):
    """Truncated or garbled streams are refused by the readers' structure check; a sound
    structure that cannot be decoded (12-bit) fails in DALI's decoder, whose error is then
    pinned on the clip by decoding the batch's samples again with PIL."""
    paths = list(textured.frame_paths)
    broken = tmp_path / paths[9].name
    broken.write_bytes(paths[9].read_bytes())
    _corrupt(broken, 13, how)
    paths[9] = broken
    dataset = SampleDataset(dataclasses.replace(textured, frame_paths=paths), resolution)
    # torch in-process: a failed DataLoader's workers, kept alive by the traceback pytest
    # holds, take 5 s each to shut down (worker errors are tested in test_train.py).
    with pytest.raises(DataError) as e:
        batches(dataset, kind, batch_size=4, workers=2 if kind == "dali" else 0)
    message = str(e.value)
    assert "\n" not in message and broken.name in message and "not a" in message, message
    assert f"clip {textured.keys[9][0]}" in message and "camera_front_tele_30fov frame 1" in message


def clips(loader) -> list[str]:
    return [c for b in loader for c in b["clip_id"]]


def test_one_loader_one_pipeline_every_epoch_in_its_own_order(world):
    """A loader built once serves every epoch with one pipeline (and its reader processes);
    each pass follows its epoch's order; closing it removes the order files."""
    dataset = SampleDataset(split(world, "val"), None)
    loader = make_loader(dataset, 5, 1, seed=5, kind="dali")
    for epoch in range(3):
        loader.set_epoch(epoch)
        assert clips(loader) == [dataset.data.keys[i][0]
                                 for i in epoch_order(len(dataset), epoch_seed(5, epoch))]
    pipeline = loader.pipeline
    assert pipeline.passes == 3 and len(list(pipeline.orders.iterdir())) == 1
    loader.close()
    assert loader.pipeline is None and not pipeline.orders.exists()


def test_a_pass_left_midway_is_not_resumed_by_the_next(world):
    dataset = SampleDataset(split(world, "val"), None)
    loader = make_loader(dataset, 5, 1, seed=1, kind="dali")
    first = next(iter(loader))
    assert len(first["clip_id"]) == 5 and loader.pipeline is None  # closed when left
    loader.set_epoch(1)
    assert clips(loader) == [dataset.data.keys[i][0]
                             for i in epoch_order(len(dataset), epoch_seed(1, 1))]
    loader.close()


def test_a_resumed_epoch_skips_what_was_trained(world):
    """set_epoch(n, skip): the rest of epoch n's order, for both loaders."""
    dataset = SampleDataset(split(world, "val"), None)
    want = [dataset.data.keys[i][0] for i in epoch_order(len(dataset), epoch_seed(2, 4))][7:]
    for kind in ("dali", "torch"):
        loader = make_loader(dataset, 5, 1, seed=2, kind=kind)
        loader.set_epoch(4, skip=7)
        assert clips(loader) == want, kind
        loader.close()


def test_workers_start_by_spawn_once_cuda_is_initialised(monkeypatch, world):
    assert dali.start_method() == ("spawn" if torch.cuda.is_initialized() else "fork")
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    assert dali.start_method() == "spawn"
    # The spawned readers unpickle the source and import only its light module.
    dataset = SampleDataset(split(world, "val"), None)
    ours, ref = batches(dataset, "dali", workers=1), batches(dataset, "torch", workers=0)
    assert [b["clip_id"] for b in ours] == [b["clip_id"] for b in ref]


def test_default_loader_is_dali_where_it_is_installed(monkeypatch):
    assert build_parser().parse_args(["--model", "baseline"]).loader == "dali"
    monkeypatch.setattr(training_args.importlib.util, "find_spec", lambda name: None)
    assert training_args.default_loader() == "torch"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (nvJPEG decoder)")
def test_gpu_decoding_matches_the_cpu(textured):
    dataset = SampleDataset(textured, None)
    gpu = batches(dataset, "dali", device=torch.device("cuda"), seed=1)
    cpu = batches(dataset, "dali", seed=1)
    for a, b in zip(gpu, cpu):
        assert a["frames"].is_cuda and a["clip_id"] == b["clip_id"]
        diff = (a["frames"].cpu() - b["frames"]).abs()
        assert diff.max() <= 4 * GREY_LEVEL and diff.mean() <= GREY_LEVEL / 2


def test_trainer_sees_the_same_data_with_either_loader(world, tmp_path):
    """One epoch of the trainer with each loader: the same batches give the same losses."""
    import json

    from distill.train import main as train_main

    records = {}
    for kind in ("dali", "torch"):
        out = tmp_path / kind
        argv = ["--model", "baseline", "--model-size", "tiny", "--resolution", "64",
                "--batch-size", "8", "--num-workers", "1", "--max-epochs", "1",
                "--max-train-samples", "8", "--max-val-samples", "8", "--warmup-epochs", "0",
                "--loader", kind, "--output-dir", str(out)]
        with contextlib.chdir(world):  # the default data paths find the world's files
            assert train_main(argv) == 0
        records[kind] = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    for key in ("train_loss", "val_loss", "val_ade"):
        assert records["dali"][key] == pytest.approx(records["torch"][key], rel=1e-4), key
