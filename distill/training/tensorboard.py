"""Live curves of a run in TensorBoard (``OUTPUT_DIR/tensorboard/{model}_seed{seed}/``; off with
``--no-tensorboard``), rank 0 only. Every scalar is logged at the run's global optimizer step:

    train/{loss,pos,yaw,action,reasoning}, train/lr, train/reasoning_weight, train/samples_per_s,
    train/grad_norm, train/nonfinite_steps                    at the trainer's host reads
    val/<metric>, val/scenario_ade/<scenario>                 per epoch
    images/top_down, images/front_camera                      every IMAGE_EVERY epochs, the last

A resumed run opens the same folder with ``purge_step`` = the checkpoint's step + 1: TensorBoard's
reader drops the earlier events from that step on (what ran after the checkpoint), so the curves
go on without duplicated steps. Nothing here reads the device: the trainer passes host values."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .objective import SUM_KEYS

IMAGE_EVERY = 5  # epochs between trajectory images (and the last epoch)
VAL_SCALARS = ("loss", "ade", "fde", "ade_1s", "ade_2s", "ade_3s", "yaw_err_deg", "minADE_1",
               "minFDE_1", "MR_1", "minADE_6", "minFDE_6", "MR_6", "brier_minFDE_6",
               "coc_top1", "coc_top5")


def log_dir(output_dir, prefix: str) -> Path:
    return Path(output_dir) / "tensorboard" / prefix


class TensorBoardLog:
    """``log_step`` at host reads, ``log_epoch`` after validation, ``log_images``, ``close``."""

    def __init__(self, path: Path, purge_step: int, images: bool = True):
        from torch.utils.tensorboard import SummaryWriter
        self.path, self.images = path, images
        self.writer = SummaryWriter(str(path), purge_step=purge_step)

    @classmethod
    def open(cls, output_dir, prefix: str, step: int, say) -> "TensorBoardLog | None":
        """The run's writer from optimizer step ``step`` on (0: a new run); None, with one line,
        when the ``tensorboard`` package is missing (the run goes on without it), and one
        without images, with one line, when the plots' packages are."""
        try:
            import tensorboard  # noqa: F401  (SummaryWriter needs it)
        except ImportError:
            say("tensorboard: not installed (pip install tensorboard, or the [train] extra); "
                "training without live curves (--no-tensorboard silences this)")
            return None
        images = True
        try:
            from .. import plots  # noqa: F401  (the images need matplotlib and shapely)
        except ModuleNotFoundError as e:
            say(f"tensorboard: no trajectory images ({e.name} is not installed; the [train] "
                "extra has it): logging the curves only")
            images = False
        return cls(log_dir(output_dir, prefix), purge_step=step + 1, images=images)

    def log_step(self, step: int, sums: list[float], samples: int, seconds: float, lr: float,
                 reasoning_weight: float, nonfinite: int, grad_norm: float,
                 ranks: int = 1) -> None:
        """The loss terms' means over this rank's ``samples`` since the last call (``sums``:
        this rank's), the throughput of all ``ranks``, and the rest."""
        w = self.writer
        for key, total in zip(SUM_KEYS, sums):
            w.add_scalar(f"train/{key}", total / max(samples, 1), step)
        w.add_scalar("train/lr", lr, step)
        w.add_scalar("train/reasoning_weight", reasoning_weight, step)
        w.add_scalar("train/samples_per_s", samples * ranks / max(seconds, 1e-9), step)
        w.add_scalar("train/nonfinite_steps", nonfinite, step)
        w.add_scalar("train/grad_norm", grad_norm, step)

    def log_epoch(self, step: int, epoch: int, val: dict, scenarios: list[str]) -> None:
        """The validation means (and per-scenario ADE when the split has scenarios)."""
        w = self.writer
        w.add_scalar("epoch", epoch, step)
        for key in VAL_SCALARS:
            if val.get(key) is not None:
                w.add_scalar(f"val/{key}", val[key], step)
        for name, ade in zip(scenarios, val.get("scenario_ade") or ()):
            if ade is not None:
                w.add_scalar(f"val/scenario_ade/{name}", ade, step)
        w.flush()

    def log_images(self, step: int, preview: dict) -> None:
        """Predicted vs teacher trajectories of the fixed validation samples (``preview`` of
        ``run_validation``, which the trainer asks for only when ``images``), top-down and over
        the front camera."""
        from .. import plots
        pred, gt = preview["pred_xy"].numpy(), preview["gt_xy"].numpy()
        titles = [f"val {i}" for i in range(len(pred))]
        self.writer.add_figure("images/top_down", plots.top_down_figure(pred, gt, titles), step)
        if preview.get("front") is not None:
            images = [np.clip(img, 0.0, 1.0) for img in preview["front"].numpy()]
            self.writer.add_figure("images/front_camera",
                                   plots.front_camera_figure(images, pred, gt, titles), step)
        self.writer.flush()

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def image_epoch(epoch: int, max_epochs: int) -> bool:
    return epoch % IMAGE_EVERY == 0 or epoch == max_epochs or epoch == 1
