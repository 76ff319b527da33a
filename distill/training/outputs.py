"""What a run leaves in its output folder: checkpoints (``{model}_seed{seed}_{best,latest,
epoch N}.pt``), the per-epoch metrics (``metrics.jsonl``) and one line per epoch on stdout."""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import checkpoint
from .config import RunConfig, config_differences

METRIC_KEYS = ("epoch", "step", "lr", "train_loss", "train_pos", "train_yaw", "train_action",
               "train_reasoning", "val_loss", "val_ade", "val_fde", "val_ade_1s", "val_ade_2s",
               "val_ade_3s", "val_yaw_err_deg", "cv_ade", "samples_per_s", "time_s",
               # Multimodal metrics (distill.training.step.MODE_KS; equal to the k = 1 ones
               # for a single-mode model), added after the guide's keys.
               "val_minADE_1", "val_minFDE_1", "val_MR_1", "val_minADE_6", "val_minFDE_6",
               "val_MR_6", "val_brier_minFDE_6",
               # Reasoning retrieval (docs/reasoning.md); null for the baseline (no embedding).
               "val_coc_top1", "val_coc_top5",
               # Optimizer steps skipped for a non-finite loss so far in the run.
               "nonfinite_steps")
# The keys after the guide's that come from the validation result ("val_" + its key).
ADDED_VAL_KEYS = METRIC_KEYS[METRIC_KEYS.index("time_s") + 1:
                             METRIC_KEYS.index("nonfinite_steps")]


@dataclass
class RunState:
    """Progress of a run, saved in its checkpoints."""

    epoch: int = 0  # completed epochs
    step: int = 0  # optimizer steps
    best_ade: float = math.inf  # best val ADE (m; minADE_K with K modes) of the saved weights
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the best (early stopping)
    # A run stopped mid-epoch (SIGTERM): global samples of epoch + 1 already trained on, and
    # that epoch's totals so far (meter.EpochTotals.to_list: SUM_KEYS x samples, samples,
    # seconds).
    samples_in_epoch: int = 0
    epoch_sums: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def prepare(output_dir, config: dict, resuming: bool, overwrite: bool) -> Path:
    """The output folder, refusing to write over another run's checkpoints of the same name
    unless ``overwrite`` (which removes them)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    existing = checkpoint.run_files(out, config)
    if resuming or not existing:
        return out
    if overwrite:
        for f in existing + [MetricsLog.path_for(out, config)]:
            f.unlink(missing_ok=True)
        return out
    previous = checkpoint.load(existing[-1])["config"]
    diff = config_differences(previous, config)
    if diff:
        raise FileExistsError(
            f"{existing[-1]}: holds a run with a different config ({'; '.join(diff[:3])}); "
            "pass --overwrite to replace it or choose another --output-dir")
    latest = checkpoint.checkpoint_path(out, config, "latest")
    raise FileExistsError(
        f"{existing[-1]}: this run already has checkpoints; pass --resume {latest} to continue "
        "it or --overwrite to start over")


class MetricsLog:
    """One JSON object per epoch in ``{model}_seed{seed}_metrics.jsonl``; ``metrics.jsonl`` in
    the output folder links to the file of the run that wrote last (several seeds may share a
    folder, as in the guide's multi-seed recipe)."""

    def __init__(self, out: Path, config: dict, keep_epochs: int):
        self.path = self.path_for(out, config)
        kept = []
        if keep_epochs and self.path.is_file():  # a resumed run drops epochs it will redo
            kept = [line for line in self.path.read_text().splitlines()
                    if line and json.loads(line)["epoch"] <= keep_epochs]
        self.path.write_text("".join(line + "\n" for line in kept))
        link = out / "metrics.jsonl"
        tmp = out / f".metrics.jsonl.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(self.path.name)
        os.replace(tmp, link)

    @staticmethod
    def path_for(out: Path, config: dict) -> Path:
        return Path(out) / f"{checkpoint.run_prefix(config)}_metrics.jsonl"

    def append(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def epoch_record(epoch, step, lr, train_means, val: dict, cv_ade, samples_per_s, time_s,
                 nonfinite_steps: int) -> dict:
    loss, pos, yaw, action, reasoning = train_means
    values = (epoch, step, lr, loss, pos, yaw, action, reasoning, val["loss"], val["ade"],
              val["fde"], val["ade_1s"], val["ade_2s"], val["ade_3s"], val["yaw_err_deg"],
              cv_ade, samples_per_s, time_s, *(val[key[len("val_"):]] for key in ADDED_VAL_KEYS),
              nonfinite_steps)
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in zip(METRIC_KEYS, values)}


def scenario_ades(names: list[str], ades: list) -> dict:
    """{scenario: val ADE (m)} for the scenarios with validation samples."""
    return {n: round(a, 4) for n, a in zip(names, ades) if a is not None}


def epoch_line(r: dict, max_epochs: int, run: RunState, num_modes: int = 1) -> str:
    shown = min(num_modes, 6)  # val_minADE_6 is over all the modes when K <= 6
    modes = f" minADE_{shown} {r['val_minADE_6']:.3f} m" if num_modes > 1 else ""
    return (f"epoch {r['epoch']:>3}/{max_epochs} | train {r['train_loss']:.4f} "
            f"(pos {r['train_pos']:.4f} yaw {r['train_yaw']:.4f} act {r['train_action']:.4f} "
            f"reas {r['train_reasoning']:.4f}) | val {r['val_loss']:.4f} ADE {r['val_ade']:.3f} m"
            f"{modes} "
            f"FDE {r['val_fde']:.3f} m (cv ADE {r['cv_ade']:.3f}) | lr {r['lr']:.2e} | "
            f"{r['samples_per_s']:.1f} samples/s | best {run.best_ade:.3f} @ {run.best_epoch}"
            + (f" | patience {run.bad_epochs}" if run.bad_epochs else ""))


def save_epoch(out: Path, config: dict, state: dict, epoch: int, improved: bool,
               run: RunConfig) -> None:
    """``_latest`` every epoch, ``_best`` when val ADE improved, ``_epoch{N}`` every
    --save-every epochs (the last --keep-last of them kept) unless --save-final-only."""
    checkpoint.save(checkpoint.checkpoint_path(out, config, "latest"), state)
    if improved:
        checkpoint.save(checkpoint.checkpoint_path(out, config, "best"), state)
    if not run.save_final_only and epoch % run.save_every == 0:
        checkpoint.save(checkpoint.checkpoint_path(out, config, f"epoch{epoch}"), state)
        if run.keep_last:
            for old in checkpoint.periodic(out, config)[:-run.keep_last]:
                old.unlink()


def save_latest(out: Path, config: dict, state: dict) -> Path:
    """``_latest`` alone: a run stopped mid-epoch."""
    return checkpoint.save(checkpoint.checkpoint_path(out, config, "latest"), state)


def finish(out: Path, config: dict, save_final_only: bool) -> None:
    if save_final_only:
        checkpoint.checkpoint_path(out, config, "latest").unlink(missing_ok=True)
