"""The DALI loader: batches of the contract (``batch.py``) decoded and normalised by NVIDIA DALI.

One pass = one pipeline:

    external_source (parallel workers read the frames files of a batch: ``dali_source.py``)
      -> 16 JPEG streams per sample, camera-major, and each stream's sample index
      -> fn.decoders.image  ("mixed" = nvJPEG on a GPU, "cpu" = libjpeg-turbo otherwise)
      -> fn.resize to the dataset's resolution (only when the files are stored at another size)
      -> fn.crop_mirror_normalize (ImageNet mean/std, CHW float32)
      -> DALIGenericIterator: (16 B, 3, H, W), viewed as (B, 4 cams, 12, H, W) without a copy

The labels and ego history of a batch are gathered from the dataset's columns by the sample
indices that travelled through the pipeline with the images, so they cannot come apart. The
order of a pass is ``sampling.epoch_order``, the same as the torch loader's.

The loader is built once per dataset and told its epoch (``set_epoch``); its pipeline, reader
processes and iterator (``ReusedPipeline``) outlive the pass: the next pass (the next epoch)
reuses them with a new order. Measured on 2 cores, 224 px, batch 32, 2 workers: building them costs 0.4-1.5 s, and
reader processes forked anew for each pass share the DALI buffers of the previous passes with
this process copy-on-write, which made every pass after the first slower (150-190 ms per batch
against 106-113 ms for the first).
"""
from __future__ import annotations

import gc
import shutil
import tempfile
import weakref  # finalize: the order files go with the pipeline
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..constants import FRAME_CHANNELS, IMAGENET_MEAN, IMAGENET_STD, NUM_CAMERAS
from . import formats, jpeg
from .dali_source import IMAGES_PER_SAMPLE, FrameSource, order_path, storage_of
from .readers import DataError, frame_error, read_frames, read_stored_frames
from .sampling import epoch_order, epoch_seed, num_batches
from .stop import shielded

PREFETCH = 2  # batches DALI prepares ahead


@lru_cache(maxsize=1)
def dali_available() -> bool:
    """True when DALI imports (a broken install counts as none)."""
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return False
    return True


def start_method() -> str:
    """How DALI starts its reader processes: "fork" (cheap) unless CUDA is initialised in this
    process, where a forked child would inherit a CUDA context it cannot use ("spawn")."""
    return "spawn" if torch.cuda.is_initialized() else "fork"


def stored_layout(dataset) -> tuple[str, tuple[int, int]]:
    """(storage, (H, W)) of the dataset's first frames file; the pipeline is built for them."""
    path = dataset.data.frame_paths[0]
    arrays = read_stored_frames(path)
    if storage_of(arrays) == "raw":
        return "raw", tuple(arrays["frames"].shape[2:4])
    try:
        return "jpeg", jpeg.check_stream(jpeg.split_streams(arrays["jpeg"], arrays["offsets"])[0])
    except ValueError as e:
        raise frame_error(path, arrays["clip_id"], 0, e) from None


def build_pipeline(source: FrameSource, images_per_batch: int, workers: int,
                   device_id: int | None, resize_to: int | None):
    """The DALI pipeline of ``source``; outputs (frames float32 (n, 3, H, W), index int64 (n,))
    for the n images of a batch, on the GPU ``device_id`` or on the CPU (None)."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types
    from nvidia.dali import pipeline_def

    @pipeline_def(batch_size=images_per_batch, num_threads=max(1, workers), device_id=device_id,
                  py_num_workers=max(1, workers), py_start_method=start_method(),
                  prefetch_queue_depth=PREFETCH)
    def pipeline():
        images, index = fn.external_source(
            source=source, num_outputs=2, batch=True, batch_info=True, parallel=workers > 0,
            dtype=[types.UINT8, types.INT64],
            layout=["HWC" if source.storage == "raw" else None, None])
        if source.storage == "jpeg":
            images = fn.decoders.image(images, device="cpu" if device_id is None else "mixed",
                                       output_type=types.RGB)
        elif device_id is not None:
            images = images.gpu()
        if resize_to:
            # float output: no rounding to uint8 between resizing and normalising
            images = fn.resize(images, resize_x=resize_to, resize_y=resize_to, antialias=True,
                               dtype=types.FLOAT)
        frames = fn.crop_mirror_normalize(
            images, dtype=types.FLOAT, output_layout="CHW",
            mean=[255 * m for m in IMAGENET_MEAN], std=[255 * s for s in IMAGENET_STD])
        return frames, index

    return pipeline()


class ReusedPipeline:
    """A DALI pipeline over one dataset's frames files (``data``: a ``SplitData``) and its
    iterator, kept for the passes after the first; ``run(order)`` is one pass. The order of
    each pass goes to the reader processes as a file (``dali_source.order_path``)."""

    def __init__(self, data, batch_size: int, workers: int, device_id: int | None,
                 resize_to: int | None, storage: str, size: tuple[int, int]):
        self.orders = Path(tempfile.mkdtemp(prefix="distill-dali-orders-"))
        self.remove_orders = weakref.finalize(self, shutil.rmtree, self.orders, True)  # once
        self.source = FrameSource(data.frame_paths, data.keys, self.orders, batch_size, storage,
                                  None if resize_to else tuple(size))
        self.settings = (batch_size * IMAGES_PER_SAMPLE, workers, device_id, resize_to)
        self.passes = 0  # DALI's epoch_idx of the next pass
        self.iterator = None

    def run(self, order: np.ndarray) -> Iterator[dict]:
        """The pipeline's outputs (frames, index) for each batch of ``order``."""
        np.save(order_path(self.orders, self.passes), order)
        if self.iterator is None:  # builds the pipeline and prepares the first batches
            from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

            with shielded():  # the reader processes start blind to the stop signals
                self.iterator = DALIGenericIterator(
                    [build_pipeline(self.source, *self.settings)], ["frames", "index"],
                    last_batch_policy=LastBatchPolicy.PARTIAL)
        else:  # the previous pass ended: DALI's next epoch_idx, the order just written
            self.iterator.reset()
            order_path(self.orders, self.passes - 1).unlink()
        self.passes += 1
        for out in self.iterator:
            yield out[0]

    def close(self) -> None:
        """Stops its threads and reader processes (the iterator holds the last reference)."""
        self.iterator = None
        self.remove_orders()


class DaliLoader:
    """Passes over a ``SampleDataset`` (frames files) in batches of the contract, one pass per
    ``set_epoch``. Built once per dataset; it owns its pipeline and reader processes (built at
    the first pass, kept for the next ones, closed by ``close()`` or when a pass fails or is
    left midway, then rebuilt by the next pass).

    ``seed`` (None: dataset order), ``rank``, ``world_size``, ``drop_last`` and the ``skip`` of
    ``set_epoch`` pick the samples and their order as ``sampling.epoch_order`` does, shuffled
    from ``sampling.epoch_seed(seed, epoch)``; ``workers`` is both DALI's CPU threads and its
    reader processes (0: read in this process). On ``device`` cuda the frames are decoded and
    normalised on that GPU and come out there; the other keys stay on the CPU.
    """

    def __init__(self, dataset, batch_size: int, workers: int, seed: int | None = None,
                 drop_last: bool = False, rank: int = 0, world_size: int = 1,
                 device: torch.device | str = "cpu"):
        if not dataset.data.frame_paths:
            raise ValueError("the DALI loader reads frames files; this dataset has none "
                             "(--offline): use --loader torch")
        self.dataset, self.batch_size, self.workers = dataset, batch_size, workers
        self.seed, self.drop_last, self.rank, self.world_size = seed, drop_last, rank, world_size
        self.device = torch.device(device)
        self.pipeline: ReusedPipeline | None = None
        self.set_epoch(0)

    def set_epoch(self, epoch: int, skip: int = 0, weights: np.ndarray | None = None) -> None:
        """The next pass visits ``epoch``'s order, without its first ``skip`` global samples
        (drawn by ``weights`` when given: ``sampling.epoch_order``)."""
        self.order = epoch_order(len(self.dataset), None if self.seed is None
                                 else epoch_seed(self.seed, epoch), self.rank, self.world_size,
                                 self.drop_last, self.batch_size, skip, weights)

    def __len__(self) -> int:
        return num_batches(len(self.order), self.batch_size)

    def _pipeline(self) -> ReusedPipeline:
        if self.pipeline is None:
            storage, size = stored_layout(self.dataset)
            resolution = self.dataset.resolution
            resize = resolution if resolution and tuple(size) != (resolution, resolution) else None
            device_id = None
            if self.device.type == "cuda":
                device_id = (torch.cuda.current_device() if self.device.index is None
                             else self.device.index)
            self.pipeline = ReusedPipeline(self.dataset.data, self.batch_size, self.workers,
                                           device_id, resize, storage, tuple(size))
        return self.pipeline

    def close(self) -> None:
        """Stops the pipeline's threads and reader processes (a later pass builds new ones)."""
        if self.pipeline is not None:
            self.pipeline.close()
            self.pipeline = None

    def __iter__(self) -> Iterator[dict]:
        if not len(self.order):
            return
        i, failure, finished = 0, None, False
        try:
            for out in self._pipeline().run(self.order):
                yield self.batch(out, i)
                i += 1
            finished = True
        except Exception as e:  # DALI: readers' errors as Exception, operators' as RuntimeError
            failure = (isinstance(e, DataError), str(e))  # never keep DALI's traceback
        finally:
            if not finished:  # failed, or left mid-pass: DALI cannot start the next pass
                self.close()
        if failure is not None:
            # A failed pipeline sits in reference cycles with its 6+ threads alive until the
            # collector runs, and a fork meanwhile (a DataLoader worker) crashed or hung.
            gc.collect()
            raise self.explain(*failure, i)

    def batch(self, out: dict, i: int) -> dict:
        """The contract's batch ``i`` from the pipeline's outputs."""
        index = out["index"][::IMAGES_PER_SAMPLE].numpy()
        expected = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        if not np.array_equal(index, expected):
            raise RuntimeError(f"DALI returned samples {index.tolist()} for batch {i}, expected "
                               f"{expected.tolist()}")
        frames = out["frames"]  # (16 B, 3, H, W)
        batch = {k: torch.from_numpy(v[index]) for k, v in self.dataset.columns.items()}
        batch["frames"] = frames.view(len(index), NUM_CAMERAS, FRAME_CHANNELS,
                                      *frames.shape[-2:])
        batch["clip_id"] = [self.dataset.data.keys[j][0] for j in index]
        return batch

    def explain(self, is_data_error: bool, failure: str, i: int) -> DataError:
        """A DALI failure (its message) in batch ``i`` as one line naming the file and clip.
        A reader's DataError is passed on; a decoder error is pinned on its sample by decoding
        the samples DALI may have been working on (batch i and the prefetched ones) with PIL."""
        if is_data_error:  # a reader in this process (workers=0)
            return DataError(failure)
        if "DataError: " in failure:  # a reader process's, inside DALI's report
            return DataError(failure.rsplit("DataError: ", 1)[1].strip().splitlines()[0])
        start = i * self.batch_size
        suspects = self.order[start:start + (PREFETCH + 1) * self.batch_size]
        for j in suspects:
            try:
                read_frames(self.dataset.data.frame_paths[j])
            except DataError as found:
                return DataError(str(found))
        lines = [line for line in failure.splitlines() if line.strip()]
        clips = [self.dataset.data.keys[j][0] for j in suspects[:self.batch_size]]
        return DataError(f"{self.dataset.data.frame_paths[suspects[0]].parent}: DALI failed on "
                         f"batch {i} (clips {', '.join(clips)}): {lines[-1] if lines else failure}")
