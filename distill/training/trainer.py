"""The trainer: a run's phases, each a method that reads top to bottom.

    Trainer(config, ...)   setup: data, model, optimizer, EMA, DDP, the step; resume
    .fit(stop)             for each epoch: train_epoch, validate, save; early stop, a stop signal
    .train_epoch(epoch)    batches -> train_step, progress, divergence guard, stop signal
    .train_step(...)       one micro-batch (and the optimizer step that ends its group)
    .validate(epoch)       the saved weights (EMA when on) on the validation split
    .save(...)             checkpoints and the metrics log

One process, or one per rank under torchrun (DDP; docs/scaling.md): every rank runs the same
phases on its shard of each global batch; rank 0 logs and writes. What it builds is in
``setup.py`` (``RunParts``)."""
from __future__ import annotations

import sys
import time

import torch
from tqdm import tqdm

from ..losses import reasoning_weight
from . import checkpoint, outputs
from .config import RunConfig
from .cuda_graph import GraphedStep
from .distributed import Dist, any_rank
from .guard import DivergedError, StopRequest
from .meter import EpochTotals
from .objective import loss_weights
from .profiling import fetched
from .runtime import freeze_batchnorm, set_lr
from .schedule import lr_at
from .setup import RunParts, build_run
from .tensorboard import image_epoch
from .validate import run_validation, selection_metric, to_device

LOG_EVERY = 10  # batches between host reads of the running sums (progress bar, guard)
PREVIEW_SAMPLES = 4  # fixed validation samples drawn in TensorBoard's trajectory images
STOP_CHECK_EVERY = 10  # optimizer steps between the ranks' agreement on a stop signal (DDP)


class Trainer:
    def __init__(self, config: RunConfig, d: Dist, device: torch.device,
                 resumed: dict | None = None, resume_path: str | None = None,
                 overwrite: bool = False, profile_steps: int = 0, tensorboard: bool = True):
        self.config, self.d, self.device = config, d, device
        self.say = print if d.is_main else (lambda *a, **k: None)  # rank 0 speaks and writes
        self.parts: RunParts = build_run(config, d, device, resumed, resume_path, overwrite,
                                         profile_steps, self.say, tensorboard)
        self.run = self.parts.run
        self.graphed: GraphedStep | None = None  # --cuda-graphs: captured at the first batch
        self.announced = False  # the expected epoch time, said once in a log file
        self.epoch_start = 0.0  # perf_counter at the start of this session's part of the epoch
        self.lr = 0.0  # the learning rate of the last batch
        self.rw = 0.0  # the reasoning weight of the last batch
        self.last_log: tuple[list[float], int, float] = ([], 0, 0.0)  # sums, seen, time

    # --- the run ---------------------------------------------------------------------------

    def fit(self, stop: StopRequest | None = None) -> int:
        """The epochs. ``stop``: the run's stop signals, entered by the caller (``train.main``,
        before setup); None: the default ones, from here on."""
        if stop is None:
            with StopRequest() as own:
                return self.fit(own)
        try:
            return self._epochs(stop)
        finally:
            if self.parts.tensorboard:
                self.parts.tensorboard.close()

    def _epochs(self, stop: StopRequest) -> int:
        p, config = self.parts, self.config
        for epoch in range(self.run.epoch + 1, config.max_epochs + 1):
            trained = self.train_epoch(epoch, stop)
            if trained is None:  # stopped mid-epoch; _latest.pt is saved
                return 0
            self.end_epoch(epoch, trained, self.validate(epoch))
            if self.run.bad_epochs >= config.patience:
                self.say(f"early stop: no better val ADE for {config.patience} epochs "
                         f"(best {self.run.best_ade:.3f} m at epoch {self.run.best_epoch})")
                break
            if any_rank(stop.requested, self.d, self.device):
                self.say(f"stopped by {stop.signal_name or 'a signal on another rank'} after "
                         f"epoch {epoch}; resume with --resume "
                         f"{checkpoint.checkpoint_path(p.out_dir, p.config_dict, 'latest')}",
                         flush=True)
                return 0
        if self.d.is_main:
            outputs.finish(p.out_dir, p.config_dict, config.save_final_only)
        if p.profiler:
            p.profiler.close()
        self.say(f"best val ADE {self.run.best_ade:.3f} m at epoch {self.run.best_epoch}; "
                 f"checkpoints in {p.out_dir}")
        return 0

    # --- one epoch of training -------------------------------------------------------------

    def train_epoch(self, epoch: int, stop: StopRequest) -> EpochTotals | None:
        """Trains one epoch (the rest of it after a mid-epoch resume); returns its totals over
        all ranks, or None when a stop signal ended it early (after saving ``_latest.pt``)."""
        p, config = self.parts, self.config
        start = self.epoch_start = time.perf_counter()
        skip = self.run.samples_in_epoch  # > 0: the epoch a stop interrupted goes on
        prior = (EpochTotals.from_list(self.run.epoch_sums) if self.d.is_main
                 else EpochTotals.zero())  # the interrupted part, counted once (rank 0)
        p.model.train()
        if config.freeze_bn:
            freeze_batchnorm(p.model)
        hard = config.hard_sampling_epochs is None or epoch <= config.hard_sampling_epochs
        p.train_loader.set_epoch(epoch, skip, p.sample_weights if hard else None)
        p.step.sums.zero_()
        self.last_log = ([0.0] * len(p.step.sums), 0, start)
        seen = 0  # this rank's samples in this session
        # A live bar on a terminal; in a log, one line with the epoch's expected time.
        bar = tqdm(p.train_loader, desc=f"epoch {epoch}/{config.max_epochs}", unit="batch",
                   dynamic_ncols=True, leave=False,
                   disable=not (sys.stderr.isatty() and self.d.is_main))
        p.optimizer.zero_grad(set_to_none=not p.accel.cuda_graphs)
        for i, batch in enumerate(fetched(bar)):
            done, stepped = self.train_step(batch, i, epoch, skip)
            seen += len(batch["clip_id"])
            if not stepped:
                continue
            if self.log_due(i):
                self.log_progress(bar, epoch, i, seen, start)
            if ((not self.d.enabled or self.run.step % STOP_CHECK_EVERY == 0)
                    and any_rank(stop.requested, self.d, self.device) and done < p.epoch_samples):
                totals = prior + EpochTotals.reduced(p.step.sums, seen,
                                                     time.perf_counter() - start, self.d)
                self.save_stopped(stop, epoch, done, totals)
                return None
        bar.close()
        return prior + EpochTotals.reduced(p.step.sums, seen, time.perf_counter() - start, self.d)

    def train_step(self, batch: dict, i: int, epoch: int, skip: int) -> tuple[int, bool]:
        """Micro-batch ``i`` of the epoch, and the optimizer step when it ends its group of
        --accumulation-steps. Returns (global samples of the epoch done, whether it stepped)."""
        p, config, d = self.parts, self.config, self.d
        batch = to_device(batch, self.device)
        # Micro-batches of one optimizer step; a short last group: by its size.
        first = i // config.accumulation_steps * config.accumulation_steps
        group = min(config.accumulation_steps, len(p.train_loader) - first)
        sync = i + 1 == first + group
        done = skip + min((i + 1) * p.global_batch, p.epoch_samples - skip)  # global samples
        self.rw = reasoning_weight(
            epoch - 1 + (done - len(batch["clip_id"]) * d.world_size) / p.epoch_samples,
            config.reasoning_weight, config.reasoning_warmup_epochs)
        p.step.reasoning_weight.fill_(self.rw)
        lr = self.lr = lr_at(epoch - 1 + done / p.epoch_samples, config.lr, config.warmup_epochs,
                             config.max_epochs, config.lr_schedule)
        if p.accel.cuda_graphs:  # one whole step per batch (--accumulation-steps 1)
            if self.graphed is None:
                self.graphed = GraphedStep(p.step.whole, batch, p.model, p.optimizer,
                                           p.step.state_tensors())
            set_lr(p.optimizer, lr)
            self.graphed(batch)
        else:
            p.step.micro(batch, 1.0 / group, sync)
            if sync:
                p.step.update(lr)
        if not sync:
            return done, False
        self.run.step += 1
        if p.profiler:
            p.profiler.step()
            if p.profiler.path:
                self.say(f"profile: {p.profiler.path} ({p.profile_steps} steps)")
                p.profiler = None
        return done, True

    def log_due(self, i: int) -> bool:
        """Whether the optimizer step that micro-batch ``i`` ends is a log interval's."""
        return ((i + 1) % LOG_EVERY < self.config.accumulation_steps
                or i + 1 == len(self.parts.train_loader))

    def log_progress(self, bar, epoch: int, i: int, seen: int, start: float) -> None:
        """At log intervals (one host read): the bar, the divergence guard, the epoch's ETA,
        the live curves."""
        p = self.parts
        sums, bad, in_a_row, grad_norm = p.step.read()
        now = time.perf_counter()
        elapsed = now - start
        if p.tensorboard:
            last_sums, last_seen, last_time = self.last_log
            p.tensorboard.log_step(
                self.run.step, [a - b for a, b in zip(sums, last_sums)], seen - last_seen,
                now - last_time, self.lr, self.rw, bad,
                grad_norm,
                ranks=self.d.world_size)
            self.last_log = (sums, seen, now)
        bar.set_postfix(loss=f"{sums[0] / max(seen, 1):.3f}",
                        samples_s=f"{seen / elapsed:.1f}", nonfinite=bad)
        if in_a_row >= self.config.max_nonfinite_steps:
            raise DivergedError(
                f"{in_a_row} non-finite losses or gradients in a row (epoch {epoch}, step {self.run.step}; "
                f"{bad} in the run), each skipped: the run diverged. The checkpoints of the "
                "last epoch are intact; try a lower --lr or --grad-clip")
        if bar.disable and not self.announced:  # a log file: the expected epoch time
            self.announced = True
            self.say(f"epoch {epoch}: {len(p.train_loader)} batches, about "
                     f"{elapsed * len(p.train_loader) / (i + 1):.0f} s each at "
                     f"{seen / elapsed:.1f} samples/s", flush=True)

    # --- validation, selection, saving -----------------------------------------------------

    def validate(self, epoch: int) -> dict:
        """The weights that would be saved (EMA when on) on the validation split; the ranks
        split it and all get the means."""
        p = self.parts
        images = (p.tensorboard is not None and p.tensorboard.images
                  and image_epoch(epoch, self.config.max_epochs))
        return run_validation(p.ema.model if p.ema else p.model, p.val_loader, p.cfg, p.stats,
                              loss_weights(self.config, epoch), self.device,
                              action_stats=self.config.log_action_stats, miss=p.miss, d=self.d,
                              scenarios=len(p.scenarios),
                              preview=PREVIEW_SAMPLES if images else 0)

    def end_epoch(self, epoch: int, trained: EpochTotals, val: dict) -> None:
        """Model selection (val ADE), the epoch's record, its log line and checkpoints."""
        p = self.parts
        score = selection_metric(val, p.cfg.num_modes)
        improved = score < self.run.best_ade
        if improved:
            self.run.best_ade, self.run.best_epoch, self.run.bad_epochs = score, epoch, 0
        else:
            self.run.bad_epochs += 1
        self.run.epoch = epoch
        record = outputs.epoch_record(epoch, self.run.step, self.lr, trained.means(), val,
                                      p.cv_ade, trained.samples_per_s,
                                      time.perf_counter() - self.epoch_start,
                                      p.step.guard.read()[0])
        if "action_stats" in val:
            record["action_stats"] = val["action_stats"]
        if val.get("scenario_ade"):
            record["val_scenario_ade"] = outputs.scenario_ades(p.scenarios, val["scenario_ade"])
        self.run.samples_in_epoch, self.run.epoch_sums = 0, []
        if self.d.is_main:
            p.metrics_log.append(record)
            self.say(outputs.epoch_line(record, self.config.max_epochs, self.run,
                                        p.cfg.num_modes), flush=True)
            if p.tensorboard:
                p.tensorboard.log_epoch(self.run.step, epoch, val, p.scenarios)
                if "preview" in val:
                    p.tensorboard.log_images(self.run.step, val["preview"])
            outputs.save_epoch(p.out_dir, p.config_dict, p.state_dict(record), epoch, improved,
                               self.config)

    def save_stopped(self, stop: StopRequest, epoch: int, done: int,
                     totals: EpochTotals) -> None:
        """``_latest.pt`` of a run stopped mid-epoch (rank 0), and how to resume it."""
        p = self.parts
        if not self.d.is_main:
            return
        self.run.samples_in_epoch, self.run.epoch_sums = done, totals.to_list()
        if p.tensorboard:
            p.tensorboard.flush()
        path = outputs.save_latest(p.out_dir, p.config_dict, p.state_dict(None))
        self.say(f"stopped by {stop.signal_name or 'a signal on another rank'} at epoch {epoch}, "
                 f"step {self.run.step} ({done}/{p.epoch_samples} samples of the epoch); resume "
                 f"with --resume {path}", flush=True)
