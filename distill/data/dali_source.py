"""The DALI pipeline's input: a batch callback that reads the frames files of one batch and
returns their 16 images each (still JPEG-encoded, or raw) and each image's sample index.

One pipeline serves many passes (``dali.ReusedPipeline``), each in its own order: the order of
DALI's pass ``e`` (its ``epoch_idx``) is the file ``{e}.npy`` in the source's ``orders``
folder, which the trainer's process writes before the pass starts. A file, unlike the source's
own state, reaches reader processes that were forked or spawned before it was written.

Kept free of torch and DALI imports: DALI's parallel workers unpickle it, and a worker started
with "spawn" (needed once CUDA is initialised) imports this module afresh in about 0.1 s
instead of the ~2 s that importing torch costs (a spawned worker still imports the program's
main module: ~2 s for ``python -m distill.train``, once per pipeline).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..constants import NUM_CAMERAS, NUM_FRAMES
from . import jpeg
from .readers import DataError, check_sample_key, frame_error, read_stored_frames
from .formats import Key
from .stop import ignore_in_child, stop_signals

IMAGES_PER_SAMPLE = NUM_CAMERAS * NUM_FRAMES


def storage_of(arrays: dict) -> str:
    return "raw" if "frames" in arrays else "jpeg"


def order_path(orders: Path, epoch_idx: int) -> Path:
    return orders / f"{epoch_idx}.npy"


@dataclass
class FrameSource:
    """Batch ``i`` of pass ``e`` = samples ``order[i * batch_size:(i + 1) * batch_size]``,
    ``order`` the int64 array in ``order_path(orders, e)``.

    ``storage`` ("jpeg" or "raw") and ``size`` ((H, W), or None when the pipeline resizes)
    are what the pipeline was built for; a file that differs is a DataError naming it.
    Returns ([images of sample 0 (16, camera-major), images of sample 1, ...], [the sample
    index of each image]); raises StopIteration after the last batch (DALI's end of pass).
    """

    paths: list[Path]
    keys: list[Key]
    orders: Path
    batch_size: int
    storage: str
    size: tuple[int, int] | None
    _order: tuple[int, np.ndarray] | None = field(default=None, repr=False)  # (e, its order)
    # The process that built the source; in any other (a reader process, forked or spawned
    # under ``stop.shielded``) the first batch makes the stop signals leave it alone.
    owner: int = field(default_factory=os.getpid, repr=False)
    signals: tuple = field(default_factory=lambda: tuple(map(int, stop_signals())), repr=False)
    _shielded: int = field(default=0, repr=False)  # the pid where that was done

    def order(self, epoch_idx: int) -> np.ndarray:
        if self._order is None or self._order[0] != epoch_idx:
            self._order = (epoch_idx, np.load(order_path(self.orders, epoch_idx)))
        return self._order[1]

    def __call__(self, batch_info) -> tuple[list[np.ndarray], list[np.ndarray]]:
        if os.getpid() not in (self.owner, self._shielded):
            self._shielded = os.getpid()
            ignore_in_child(self.signals)
        order = self.order(batch_info.epoch_idx)
        start = batch_info.iteration * self.batch_size
        if start >= len(order):
            raise StopIteration
        images, index = [], []
        for i in order[start:start + self.batch_size]:
            images += self.sample_images(int(i))
            index += [np.array(i, np.int64)] * IMAGES_PER_SAMPLE
        return images, index

    def sample_images(self, i: int) -> list[np.ndarray]:
        path, key = self.paths[i], self.keys[i]
        arrays = read_stored_frames(path)
        check_sample_key(path, arrays, key)
        if storage_of(arrays) != self.storage:
            raise DataError(f"{path}: clip {key[0]}: stores {storage_of(arrays)} frames, the "
                            f"split's first file {self.storage}; the DALI loader needs one "
                            "storage per split (use --loader torch)")
        if self.storage == "raw":
            frames = arrays["frames"]
            images = list(frames.reshape(-1, *frames.shape[-3:]))
            sizes = [frames.shape[2:4]]
        else:
            images = jpeg.split_streams(arrays["jpeg"], arrays["offsets"])
            sizes = []
            for k, stream in enumerate(images):
                try:
                    sizes.append(jpeg.check_stream(stream))
                except ValueError as e:
                    raise frame_error(path, key[0], k, e) from None
        if self.size and any(tuple(s) != self.size for s in sizes):
            raise DataError(f"{path}: clip {key[0]}: frames of {sorted({tuple(s) for s in sizes})} "
                            f"px, the split's first file {self.size}; the DALI loader needs one "
                            "stored size per split unless it resizes (use --loader torch)")
        return images
