"""The run's configuration: every flag of ``python -m distill.train`` that defines a run, typed,
resolved once from the command line (and, on resume, from the checkpoint).

Checkpoints store it as a plain dict (``RunConfig.to_dict``: strings, numbers, booleans and
None, so ``torch.load(weights_only=True)`` reads it) under ``"config"``, with ``schema`` =
CONFIG_SCHEMA. Older checkpoints (schema 1, before this dataclass: the parsed flags as a dict,
without the key) still load: fields they lack take the flags' defaults. ``distill.evaluate``
reads it back with ``RunConfig.from_dict``.

This module imports nothing of the package's implementation (the parser imports it).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

CONFIG_SCHEMA = 2

# Flags that may differ when resuming: they change how long or where a run goes, not what it is.
RESUMABLE_OVERRIDES = frozenset({"max_epochs", "patience", "output_dir", "num_workers", "device",
                                 "loader", "compile", "precision", "cuda_graphs",
                                 "max_nonfinite_steps"})
# Flags that are about this invocation, never part of a run's config.
INVOCATION_ONLY = frozenset({"resume", "overwrite", "rollout", "profile", "stop_signals",
                             "no_tensorboard"})
# Data paths, made absolute when parsed (a saved config finds its data from any folder).
DATA_PATHS = ("train_labels", "val_labels", "frames_dir", "ego_history_dir", "backbone_weights",
              "nuscenes_root", "argoverse2_root", "teacher_config")


class ConfigError(ValueError):
    """A bad combination of flags; the message is one line."""


@dataclass(frozen=True)
class RunConfig:
    """One field per flag (``--model-size`` -> ``model_size``); defaults live in the parser."""

    # model
    model: str
    model_size: str
    backbone_weights: str | None
    # data
    train_labels: str
    val_labels: str
    frames_dir: str
    ego_history_dir: str
    offline: bool
    resolution: int
    num_workers: int
    loader: str
    # training
    max_epochs: int
    patience: int
    batch_size: int
    accumulation_steps: int
    lr: float
    weight_decay: float
    warmup_epochs: float
    lr_schedule: str
    ema: bool
    ema_decay: float
    grad_clip: float
    hard_sampling: float
    hard_sampling_epochs: int | None
    seed: int
    compile: bool
    device: str
    # speed and scale
    precision: str
    cuda_graphs: bool
    max_nonfinite_steps: int
    # losses
    yaw_weight: float
    reasoning_weight: float
    reasoning_warmup_epochs: float
    temperature: float
    reasoning_negatives: str
    queue_size: int
    action_weight: float
    aux_xy_weight: float
    # outputs
    no_unicycle: bool
    discrete_actions: bool
    num_action_bins: int
    label_smoothing: float
    kinematics: str
    action_stats: str
    teacher_config: str | None
    # benchmarks
    benchmark: str | None
    input_type: str
    num_modes: int
    multimodal_loss: str
    nuscenes_root: str | None
    argoverse2_root: str | None
    # diagnostics
    freeze_bn: bool
    overfit_tiny: int
    max_train_samples: int
    max_val_samples: int
    log_action_stats: bool
    # checkpoints
    output_dir: str
    save_every: int
    keep_last: int
    save_final_only: bool

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_flags(cls, flags: dict) -> "RunConfig":
        """From parsed flags (``vars(namespace)``); invocation-only flags are left out."""
        return cls(**{name: flags[name] for name in cls.field_names()})

    @classmethod
    def from_dict(cls, saved: dict, defaults: dict) -> "RunConfig":
        """From a checkpoint's ``"config"`` (any schema up to CONFIG_SCHEMA); fields an older
        run did not have take ``defaults`` (the parser's)."""
        schema = saved.get("schema", 1)
        if schema > CONFIG_SCHEMA:
            raise ConfigError(f"checkpoint config schema {schema} is newer than this distill "
                              f"reads ({CONFIG_SCHEMA}); upgrade distill")
        return cls(**{name: saved.get(name, defaults[name]) for name in cls.field_names()})

    def to_dict(self) -> dict:
        return {"schema": CONFIG_SCHEMA, **dataclasses.asdict(self)}

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    @property
    def prefix(self) -> str:
        """``{model}_seed{seed}``: the prefix of every file of a run (the guide's names)."""
        return f"{self.model}_seed{self.seed}"


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def resolve_resume(flags: dict, explicit: set[str], saved: dict, checkpoint: str) -> RunConfig:
    """The checkpoint's config with the allowed explicit overrides (fields an older checkpoint
    lacks come from ``flags``); an explicit flag that differs from the saved run is refused
    (one-line ConfigError)."""
    run = RunConfig.from_dict(saved, flags)
    for name in sorted(explicit & set(saved) - RESUMABLE_OVERRIDES - INVOCATION_ONLY):
        if flags[name] != getattr(run, name):
            raise ConfigError(
                f"{checkpoint}: {flag(name)} {flags[name]} differs from the checkpoint's "
                f"{getattr(run, name)!r}; a resumed run keeps its config (only "
                f"{', '.join(flag(n) for n in sorted(RESUMABLE_OVERRIDES))} may change)")
    return run.replace(**{k: flags[k] for k in explicit & RESUMABLE_OVERRIDES})


def config_differences(a: dict, b: dict) -> list[str]:
    """``--flag old vs new`` for each run-defining field two saved configs disagree on."""
    keys = sorted((set(a) | set(b)) - RESUMABLE_OVERRIDES - {"schema"})
    return [f"{flag(k)} {a.get(k)!r} vs {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]
