"""What a run is made of, built once before its first epoch (``build_run``): the output folder,
data and loaders, action targets and their statistics, the student, optimizer, EMA, DDP wrapper
and the training step; a resumed run's state restored into them."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from ..data.provenance import is_alpamayo
from ..data.sampling import epoch_order
from ..datasets import miss_rule
from ..kinematics import ActionNormalization
from ..models import ModelConfig, build_student
from ..teachers.action_space import teacher_action_normalization
from . import checkpoint, outputs
from .accel import Accel, apply_global, resolve
from .config import ConfigError, RunConfig
from .data import (actions_cache_dir, attach_action_targets, attach_scenarios, load_dataset,
                   make_loader)
from .distributed import Dist
from .ema import EMA, ema_lag_note
from .negatives import NegativeQueue
from .objective import loss_weights
from .profiling import StepProfiler
from .runtime import model_config, optimizer_for, seed_all
from .step import TrainStep
from .tensorboard import TensorBoardLog
from .validate import constant_velocity_errors


@dataclass
class RunParts:
    config_dict: dict  # the config as checkpoints store it
    out_dir: Path | None  # rank 0's output folder (None on the other ranks)
    cfg: ModelConfig
    accel: Accel
    train_loader: object  # DaliLoader or TorchLoader: set_epoch(n), len, iter
    val_loader: object
    stats: ActionNormalization  # action normalisation (training labels' or the teacher's)
    cv_ade: float  # constant-velocity ADE of the validation split
    global_batch: int  # samples per optimizer step over all ranks (per micro-batch)
    epoch_samples: int  # global samples per epoch
    miss: str  # the miss rule of MR_k
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    ema: EMA | None
    negatives: NegativeQueue | None
    step: TrainStep
    run: outputs.RunState = field(default_factory=outputs.RunState)
    metrics_log: outputs.MetricsLog | None = None
    profiler: StepProfiler | None = None
    profile_steps: int = 0
    scenarios: list = field(default_factory=list)  # the validation split's scenario names
    sample_weights: np.ndarray | None = None  # --hard-sampling's draw weights (None: a shuffle)
    tensorboard: TensorBoardLog | None = None  # rank 0's live curves (--no-tensorboard: None)
    provenance: dict | None = None  # the training labels' (None: they have none)

    def state_dict(self, record: dict | None) -> dict:
        """The whole run as a checkpoint (``record``: the epoch's metrics, None mid-epoch)."""
        return {"config": self.config_dict, "model_config": asdict(self.cfg),
                "model": self.model.state_dict(),
                "ema": self.ema.state_dict() if self.ema else None,
                "optimizer": self.optimizer.state_dict(),
                "negatives": self.negatives.state_dict() if self.negatives is not None else None,
                "guard": self.step.guard.state_dict(),
                "scheduler": {"schedule": self.config_dict["lr_schedule"],
                              "step": self.run.step},
                "run": self.run.as_dict(), "rng": checkpoint.rng_state(),
                "action_stats": self.stats.to_dict(), "provenance": self.provenance,
                "metrics": record}


def build_run(config: RunConfig, d: Dist, device: torch.device, resumed: dict | None,
              resume_path: str | None, overwrite: bool, profile_steps: int, say,
              tensorboard: bool = True) -> RunParts:
    config_dict = config.to_dict()
    out_dir = (outputs.prepare(config.output_dir, config_dict, resuming=resumed is not None,
                               overwrite=overwrite) if d.is_main else None)
    seed_all(config.seed + d.rank)  # rank 0 draws what one process would; DDP copies its weights
    splits = load_dataset(config, "train"), load_dataset(config, "val")
    provenance = splits[0].data.provenance
    cfg = replace(model_config(config),  # horizon, history length and dt: the benchmark's
                  kinematics=run_kinematics(config.kinematics, provenance, resumed, say))
    accel = resolve(config.precision, config.cuda_graphs, config.accumulation_steps, device.type,
                    device.type == "cuda" and torch.cuda.is_bf16_supported(), d.enabled,
                    config.reasoning_negatives == "queue")
    apply_global(accel)
    for note in accel.notes:
        say(note)
    data = _build_data(config, cfg, accel, d, device, resumed, splits, say)
    model, optimizer, ema, negatives, step = _build_model(config, cfg, accel, d, device,
                                                          data["stats"], resumed, say)
    parts = RunParts(config_dict, out_dir, cfg, accel, model=model, optimizer=optimizer,
                     ema=ema, negatives=negatives, step=step, miss=miss_rule(config.benchmark),
                     profile_steps=profile_steps, provenance=provenance, **data)
    if resumed:
        parts.run = outputs.RunState(**resumed["run"])
        if d.is_main:
            checkpoint.set_rng_state(resumed["rng"])  # last: everything above may draw numbers
        else:  # the other ranks' streams (dropout) are not saved: a fresh one per rank and step
            seed_all(config.seed + d.rank + 7919 * parts.run.step)
        say(f"resumed {resume_path} at epoch {parts.run.epoch}, step {parts.run.step}"
            + (f", {parts.run.samples_in_epoch} samples into epoch {parts.run.epoch + 1}"
               if parts.run.samples_in_epoch else ""))
    _describe_model(config, cfg, model, say)
    if ema:
        steps = math.ceil(len(data["train_loader"]) / config.accumulation_steps) * config.max_epochs
        if note := ema_lag_note(config.ema_decay, steps):
            say(note)
    if d.is_main:
        parts.metrics_log = outputs.MetricsLog(out_dir, config_dict, keep_epochs=parts.run.epoch)
        if profile_steps:
            parts.profiler = StepProfiler(profile_steps, out_dir / "profile_trace.json", device)
        if tensorboard:  # a resumed run's curves go on; later steps of a previous try: purged
            parts.tensorboard = TensorBoardLog.open(out_dir, config.prefix, parts.run.step, say)
    return parts


def run_kinematics(flag: str, provenance: dict | None, resumed: dict | None, say) -> str:
    """The estimators of v0 and the action targets (``--kinematics``; ``auto``: the teacher's
    for Alpamayo-R1 labels, else ours); a resumed run keeps its checkpoint's (ours when it
    predates the choice)."""
    if resumed:
        return resumed["model_config"].get("kinematics", "distill")
    kind = flag if flag != "auto" else "teacher" if is_alpamayo(provenance) else "distill"
    source = (provenance or {}).get("teacher_model", "unknown teacher")
    whose = "the teacher's" if kind == "teacher" else "our"
    why = f"--kinematics {flag}" if flag != "auto" else f"labels by {source}"
    say(f"kinematics: {whose} estimators of v0 and the action targets ({why})")
    return kind


def action_normalization(config: RunConfig, cfg: ModelConfig, train_actions: torch.Tensor,
                         resumed: dict | None) -> ActionNormalization:
    """The checkpoint's on resume, else the teacher config's (``--action-stats teacher``) or
    the training labels' actions' mean and std."""
    if resumed:
        return ActionNormalization.from_dict(resumed["action_stats"])
    if config.action_stats == "teacher":
        return teacher_action_normalization(config.teacher_config, cfg.dt, cfg.horizon)
    return ActionNormalization.from_actions(train_actions[..., 0], train_actions[..., 1])


def _build_data(config: RunConfig, cfg: ModelConfig, accel: Accel, d: Dist,
                device: torch.device, resumed: dict | None, splits: tuple, say) -> dict:
    """The loaders, action statistics and the epoch's sizes (RunParts' data fields)."""
    train_set, val_set = splits
    cache = actions_cache_dir(config)
    train_actions = torch.from_numpy(attach_action_targets(train_set, cache, cfg.dt,
                                                           cfg.kinematics))
    attach_action_targets(val_set, cache, cfg.dt, cfg.kinematics)
    scenarios = attach_scenarios(val_set)
    stats = action_normalization(config, cfg, train_actions, resumed)
    # Every rank must run the same steps: under DDP (and for a graph's static shapes) the last
    # incomplete global batch of an epoch is dropped.
    drop_last = d.enabled or accel.cuda_graphs
    global_batch = d.world_size * config.batch_size
    train_loader = make_loader(train_set, config.batch_size, config.num_workers, config.seed,
                               drop_last, device.type == "cuda", config.loader, device, d.rank,
                               d.world_size)
    epoch_samples = len(epoch_order(len(train_set), None, 0, 1, drop_last, global_batch))
    if epoch_samples == 0 or len(val_set) < d.world_size:
        raise ConfigError(f"{len(train_set)} training / {len(val_set)} validation samples: "
                          f"fewer than one global batch of {global_batch} "
                          f"({d.world_size} ranks x --batch-size {config.batch_size}) or one "
                          "validation sample per rank")
    val_loader = make_loader(val_set, config.batch_size, config.num_workers, kind=config.loader,
                             device=device, rank=d.rank, world_size=d.world_size)
    say(f"data: {len(train_set)} train / {len(val_set)} val samples"
        f"{' (offline: random images)' if config.offline else ''}; device {device}"
        f"{f', {d.world_size} ranks' if d.enabled else ''}")
    weights = hard_sampling_weights(train_set.data, config.hard_sampling, cfg, say,
                                    config.hard_sampling_epochs)
    return dict(train_loader=train_loader, val_loader=val_loader, stats=stats.to(device),
                cv_ade=float(constant_velocity_errors(val_set.data, cfg.dt, cfg.kinematics).mean()),
                global_batch=global_batch, epoch_samples=epoch_samples, scenarios=scenarios,
                sample_weights=weights)


def hard_sampling_weights(data, share: float, cfg: ModelConfig, say,
                          epochs: int | None = None) -> np.ndarray | None:
    """``--hard-sampling``'s ``(N,)`` draw weights of the training split ``data``: ``(1 -
    share) + share * e / mean(e)``, ``e`` each sample's constant-velocity ADE (from its
    labels; they choose how often a sample is drawn, never what the student sees); None for
    ``share`` 0 (a plain shuffle)."""
    if share == 0:
        return None
    errors = constant_velocity_errors(data, cfg.dt, cfg.kinematics).mean(-1).numpy()
    mean = float(errors.mean())  # 0: no sample is harder than another; all drawn alike
    weights = (1 - share) + share * (errors / mean if mean > 0 else np.ones_like(errors))
    say(f"hard sampling {share:g}: each training sample drawn {weights.min():.2f} to "
        f"{weights.max():.2f} times per epoch on average (constant-velocity error "
        f"{errors.min():.2f} to {errors.max():.2f} m)"
        f"{f' in epochs 1-{epochs}, then a plain shuffle' if epochs else ''}")
    return weights


def _build_model(config: RunConfig, cfg: ModelConfig, accel: Accel, d: Dist,
                 device: torch.device, stats: ActionNormalization, resumed: dict | None, say):
    """(model, optimizer, EMA, negatives queue, TrainStep), with a resumed run's state."""
    model = build_student(config.model, cfg).to(device)
    if accel.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if config.backbone_weights and resumed is None:
        from ..models.backbone import load_backbone_weights
        load_backbone_weights(model.image_trunk, config.backbone_weights)
    optimizer = optimizer_for(model, config.lr, config.weight_decay, device, accel.cuda_graphs)
    negatives = (NegativeQueue(config.queue_size, cfg.embed_dim, device)
                 if config.reasoning_negatives == "queue" else None)
    if resumed:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        model.per_step_optimizer_state(optimizer)
        if negatives is not None:
            negatives.load_state_dict(resumed["negatives"])
    ddp = (DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                   else None) if d.enabled else None)  # broadcasts rank 0's
    ema = EMA(model, config.ema_decay) if config.ema else None  # after DDP: the same everywhere
    if resumed and ema:
        ema.load_state_dict(resumed["ema"])
    forward_model = torch.compile(ddp or model) if config.compile else (ddp or model)
    step = TrainStep(forward_model, model, ddp, optimizer, ema, cfg, stats, accel,
                     loss_weights(config, 0.0), config.grad_clip, d, negatives, device)
    if resumed and resumed.get("guard"):
        step.guard.load_state_dict(resumed["guard"])
    return model, optimizer, ema, negatives, step


def _describe_model(config: RunConfig, cfg: ModelConfig, model, say) -> None:
    n_params = sum(p.numel() for p in model.parameters())
    say(f"model: {config.model} {config.model_size} ({n_params / 1e6:.1f}M parameters), "
        f"{'direct' if config.no_unicycle else 'unicycle'} output"
        f"{', discrete actions' if config.discrete_actions else ''}"
        f"{f', {cfg.num_modes} modes ({config.multimodal_loss})' if cfg.num_modes > 1 else ''}"
        f"{f', {cfg.input_type} input' if cfg.input_type != 'camera' else ''}"
        f"{', torch.compile' if config.compile else ''}")
