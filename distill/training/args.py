"""Command-line flags of ``python -m distill.train``: every flag of the training guide with its
default, plus the product's own (marked "distill:" in --help groups), one function per group.
``parse_config`` resolves them once into the typed ``RunConfig`` (on resume: the checkpoint's,
with the allowed overrides). Imports nothing of the implementation (no torch, DALI or
distill._C), so ``--help`` and a bad flag answer at once."""
from __future__ import annotations

import argparse
import importlib.util
import os

from ..constants import (ACTION_STATS_SOURCES, BENCHMARK_INPUT_TYPES, KINEMATICS_CHOICES,
                         MODEL_SIZES, ROLLOUTS)
from ..data.stop import DEFAULT_STOP_SIGNALS, parse_signals
from .config import DATA_PATHS, INVOCATION_ONLY, ConfigError, RunConfig, resolve_resume


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _float_where(text: str, ok, rule: str) -> float:
    """``text`` as a float when ``ok`` of it holds (NaN fails every rule), else argparse's
    one-line error "must be {rule}, got {text}"."""
    value = float(text)
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    return _float_where(text, lambda v: v >= 0, ">= 0")


def _positive_float(text: str) -> float:
    return _float_where(text, lambda v: v > 0, "> 0")


def _fraction(text: str) -> float:
    return _float_where(text, lambda v: 0 <= v < 1, "in [0, 1)")


def _unit_interval(text: str) -> float:
    return _float_where(text, lambda v: 0 <= v <= 1, "in [0, 1]")


def _signals(text: str):
    try:
        return parse_signals(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m distill.train",
        description="Distill the driving teacher into a camera student. Defaults follow the "
        "training guide; run from a folder made by `python -m distill.world` and the default "
        "data paths find its files.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _model_flags(p)
    _data_flags(p)
    _training_flags(p)
    _speed_flags(p)
    _losses_flags(p)
    _outputs_flags(p)
    _benchmarks_flags(p)
    _diagnostics_flags(p)
    _checkpoints_flags(p)
    return p


def _model_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", choices=("baseline", "reasoning"), default=None,
                   help="student model type (required, except with --resume: the checkpoint's)")
    g.add_argument("--model-size", choices=MODEL_SIZES, default="500m",
                   help="preset: 110m (ResNet-50), 500m (ResNet-101), tiny (CPU, minutes)")
    g.add_argument("--backbone-weights", default=None, metavar="PATH",
                   help="distill: local torchvision ResNet weights, inflated to 12 channels")


def _data_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--train-labels", default="teacher_labels/train_labels.npz")
    g.add_argument("--val-labels", default="teacher_labels/val_labels.npz")
    g.add_argument("--frames-dir", default="extracted_frames")
    g.add_argument("--ego-history-dir", default="teacher_labels",
                   help="folder of {split}_ego_history.npz (required)")
    g.add_argument("--offline", action="store_true",
                   help="no files: random images, labels from the built-in world's planner "
                   "(--max-train-samples, default 256 here)")
    g.add_argument("--resolution", type=positive_int, default=224,
                   help="distill: frame size the model sees (frames are resized if stored "
                   "otherwise)")
    g.add_argument("--num-workers", type=non_negative_int,
                   default=max(1, min(4, (os.cpu_count() or 2) // 2)),
                   help="data loading processes")
    g.add_argument("--loader", choices=("dali", "torch"), default=default_loader(),
                   help="distill: frame decoding: dali (NVIDIA DALI; nvJPEG on a GPU, its CPU "
                   "decoder otherwise) or torch (PIL in DataLoader workers); the default is dali "
                   "where DALI is installed. Same batches either way (docs/data_pipeline.md)")


def _training_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--max-epochs", type=positive_int, default=150)
    g.add_argument("--patience", type=positive_int, default=15,
                   help="early stopping: epochs without a better val ADE")
    g.add_argument("--batch-size", type=positive_int, default=48, help="batch size per GPU")
    g.add_argument("--accumulation-steps", type=positive_int, default=1)
    g.add_argument("--lr", type=_positive_float, default=1e-4)
    g.add_argument("--weight-decay", type=_non_negative_float, default=0.02)
    g.add_argument("--warmup-epochs", type=_non_negative_float, default=5)
    g.add_argument("--lr-schedule", choices=("cosine", "constant"), default="cosine")
    g.add_argument("--ema", action="store_true", help="keep an EMA of the weights")
    g.add_argument("--ema-decay", type=_fraction, default=0.999)
    g.add_argument("--grad-clip", type=_non_negative_float, default=0.0,
                   help="max gradient norm (0 = off)")
    g.add_argument("--hard-sampling", type=_unit_interval, default=0.0, metavar="A",
                   help="distill: each epoch draws its training samples with replacement, "
                   "sample i with probability in proportion to (1 - A) + A x e_i / mean(e), e_i "
                   "its constant-velocity error (how far the teacher's plan is from driving "
                   "straight on): the rare braking and turning samples come more often. 0: a "
                   "plain shuffle (docs/learning.md)")
    g.add_argument("--hard-sampling-epochs", type=positive_int, default=None, metavar="N",
                   help="distill: only the first N epochs draw by --hard-sampling, the later "
                   "ones are a plain shuffle that fits the samples' real mix again (default: "
                   "every epoch)")
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="distill: auto = cuda when available")


def _speed_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("speed and scale (distill; docs/scaling.md, docs/profiling.md)")
    g.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="bf16 autocast on a GPU that has it (auto), or fp32; CPUs train in fp32")
    g.add_argument("--cuda-graphs", action="store_true",
                   help="capture the whole training step in a CUDA graph and replay it "
                   "(GPU, --accumulation-steps 1, one process)")
    g.add_argument("--max-nonfinite-steps", type=positive_int, default=20,
                   help="stop after this many non-finite steps in a row (each is skipped)")
    g.add_argument("--profile", type=non_negative_int, default=0, metavar="N",
                   help="write a torch.profiler chrome trace of N steps after 3 warmup steps "
                   "to OUTPUT_DIR/profile_trace.json (0 = off)")


def _losses_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("losses")
    g.add_argument("--yaw-weight", type=_non_negative_float, default=0.3)
    g.add_argument("--reasoning-weight", type=_non_negative_float, default=0.25)
    g.add_argument("--reasoning-warmup-epochs", type=_non_negative_float, default=20)
    g.add_argument("--temperature", type=_positive_float, default=0.07)
    g.add_argument("--reasoning-negatives", choices=("batch", "queue"), default="batch",
                   help="distill: InfoNCE negatives: the batch's other teacher rows, or also a "
                   "queue of the last --queue-size training samples' (docs/reasoning.md)")
    g.add_argument("--queue-size", type=positive_int, default=4096,
                   help="distill: teacher rows kept by --reasoning-negatives queue")
    g.add_argument("--action-weight", type=_non_negative_float, default=0.0,
                   help="weight of action supervision (discrete mode: of the cross-entropy, "
                   "1 when this is 0)")
    g.add_argument("--aux-xy-weight", type=_non_negative_float, default=0.0,
                   help="distill: unicycle mode: weight of an auxiliary head's position loss, "
                   "a linear (x, y) per step from the decoder outputs, used in training only; "
                   "it gives the decoder the lateral gradient the actions' curvature does not "
                   "(docs/learning.md)")


def _outputs_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("outputs")
    g.add_argument("--no-unicycle", action="store_true",
                   help="direct mode: predict (x, y, sin yaw, cos yaw) instead of actions")
    g.add_argument("--discrete-actions", action="store_true",
                   help="unicycle mode: discrete action tokens")
    g.add_argument("--num-action-bins", type=positive_int, default=256)
    g.add_argument("--label-smoothing", type=_fraction, default=0.1)
    g.add_argument("--rollout", choices=ROLLOUTS, default="fused",
                   help="distill: unicycle rollout implementation: the compiled op, or plain "
                   "PyTorch (same results, for A/B; docs/compiled_ops.md)")
    g.add_argument("--kinematics", choices=KINEMATICS_CHOICES, default="auto",
                   help="distill: estimators of the speed at t0 and of the action targets: ours "
                   "or the teacher's (Alpamayo-R1's); auto: the teacher's when the training "
                   "labels' provenance names Alpamayo-R1 (docs/teacher_kinematics.md)")
    g.add_argument("--action-stats", choices=ACTION_STATS_SOURCES, default="labels",
                   help="distill: action normalisation from the training labels' actions, or "
                   "from the teacher checkpoint's action space (--teacher-config)")
    g.add_argument("--teacher-config", default=None, metavar="PATH",
                   help="distill: the teacher checkpoint's config.json (or its folder), read "
                   "by --action-stats teacher")


def _benchmarks_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("benchmarks (docs/datasets.md)")
    g.add_argument("--benchmark", choices=tuple(BENCHMARK_INPUT_TYPES), default=None,
                   help="train on a standard benchmark instead of the teacher's labels")
    g.add_argument("--input-type", choices=("camera", "raster", "vector"), default="camera",
                   help="input modality: camera (the guide's data), raster (nuScenes BEV), "
                   "vector (Argoverse 2 polylines)")
    g.add_argument("--num-modes", type=int, choices=range(1, 26), default=1, metavar="K",
                   help="number of predicted trajectory modes, 1 to 25 (nuScenes scores up to "
                   "25); 1 or 6 are the usual choices (docs/datasets.md)")
    g.add_argument("--multimodal-loss", choices=("wta", "nll"), default="wta",
                   help="wta: best mode regressed + mode cross-entropy; nll: Laplace mixture "
                   "likelihood")
    roots = {"nuscenes": "nuScenes root (v1.0-trainval/ or v1.0-mini/ and maps/)",
             "argoverse2": "Argoverse 2 motion forecasting root (train/ and val/)"}
    for benchmark, root in roots.items():
        g.add_argument(f"--{benchmark}-root", default=None, metavar="PATH", help=root)


def _diagnostics_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("diagnostics")
    g.add_argument("--freeze-bn", action="store_true",
                   help="BatchNorm layers in eval mode (frozen statistics)")
    g.add_argument("--overfit-tiny", type=non_negative_int, default=0,
                   help="train and validate on the first N training samples")
    g.add_argument("--max-train-samples", type=non_negative_int, default=0, help="0 = all")
    g.add_argument("--max-val-samples", type=non_negative_int, default=0, help="0 = all")
    g.add_argument("--log-action-stats", action="store_true",
                   help="log predicted vs teacher action statistics at validation")


def _checkpoints_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("checkpoints")
    g.add_argument("--output-dir", default="checkpoints")
    g.add_argument("--save-every", type=positive_int, default=5,
                   help="write {model}_seed{seed}_epoch{N}.pt every N epochs")
    g.add_argument("--keep-last", type=non_negative_int, default=3,
                   help="distill: periodic checkpoints kept (0 = all)")
    g.add_argument("--save-final-only", action="store_true",
                   help="keep only _best.pt after a clean finish")
    g.add_argument("--resume", default=None, metavar="PATH", help="checkpoint to resume from")
    g.add_argument("--no-tensorboard", action="store_true",
                   help="distill: no live curves in OUTPUT_DIR/tensorboard/{model}_seed{seed}/ "
                   "(on by default; may differ on resume)")
    g.add_argument("--overwrite", action="store_true",
                   help="distill: replace this run's checkpoints in --output-dir")
    g.add_argument("--stop-signals", type=_signals, default=DEFAULT_STOP_SIGNALS,
                   metavar="LIST",
                   help="distill: signals (names or numbers, comma-separated) that stop the run "
                   "at the next step with _latest.pt and exit 0, whichever of its processes "
                   "they reach; a third exits at once (docs/scaling.md: running on a cluster)")


def default_loader() -> str:
    """``--loader``'s default: dali where DALI is installed, torch otherwise (found without
    importing it)."""
    try:
        return "dali" if importlib.util.find_spec("nvidia.dali") else "torch"
    except ModuleNotFoundError:  # no nvidia namespace package at all
        return "torch"


def absolute_paths(args: argparse.Namespace) -> argparse.Namespace:
    """Data paths made absolute, so a saved config finds its data from any folder (resume,
    evaluate) and a relative flag on resume compares equal to the saved one."""
    for name in DATA_PATHS:
        if getattr(args, name) is not None:
            setattr(args, name, os.path.abspath(getattr(args, name)))
    return args


def explicit_flags(parser: argparse.ArgumentParser, argv) -> set[str]:
    """Names of the options given on the command line (not left at their defaults)."""
    shadow = argparse.ArgumentParser(add_help=False)
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            kwargs = dict(dest=action.dest, default=argparse.SUPPRESS)
            if action.nargs == 0:
                shadow.add_argument(*action.option_strings, action="store_const", const=True,
                                    **kwargs)
            else:
                shadow.add_argument(*action.option_strings, **kwargs)
    return set(vars(shadow.parse_known_args(argv)[0]))


def parser_defaults() -> dict:
    """Every flag's default (what an older checkpoint's config lacks is read as)."""
    return vars(build_parser().parse_args([]))


def parse_config(parser: argparse.ArgumentParser, argv,
                 saved: dict | None = None, checkpoint: str = "") -> RunConfig:
    """The run's config from the command line; with ``saved`` (a resumed checkpoint's config),
    that config with the flags allowed to change on resume, refusing any other that differs.
    Then the combinations are checked (one-line ConfigError)."""
    flags = vars(absolute_paths(parser.parse_args(argv)))
    if saved is None:
        config = RunConfig.from_flags(flags)
    else:
        config = resolve_resume(flags, explicit_flags(parser, argv) - INVOCATION_ONLY, saved,
                                checkpoint)
    check_combinations(config)
    return config


def check_combinations(config: RunConfig) -> None:
    if config.discrete_actions and config.no_unicycle:
        raise ConfigError("--discrete-actions needs unicycle mode; drop --no-unicycle")
    if config.aux_xy_weight > 0 and config.no_unicycle:
        raise ConfigError("--aux-xy-weight needs unicycle mode (--no-unicycle already regresses "
                          "x, y); drop one of them")
    if config.hard_sampling_epochs is not None and config.hard_sampling == 0:
        raise ConfigError("--hard-sampling-epochs needs --hard-sampling A > 0")
    if config.reasoning_negatives == "queue" and config.model != "reasoning":
        raise ConfigError("--reasoning-negatives queue needs --model reasoning")
    if (config.action_stats == "teacher") != (config.teacher_config is not None):
        raise ConfigError("--action-stats teacher needs --teacher-config PATH" if
                          config.teacher_config is None else
                          "--teacher-config is only read with --action-stats teacher")
    if config.overfit_tiny and (config.max_train_samples or config.max_val_samples):
        raise ConfigError("--overfit-tiny sets both splits; drop --max-train/val-samples")
    check_benchmark(config)


def check_benchmark(config: RunConfig) -> None:
    """--benchmark, --input-type and the dataset roots must agree (one-line ConfigError)."""
    for name, input_type in BENCHMARK_INPUT_TYPES.items():
        root = f"{name}_root"  # the flag that locates the benchmark's data
        flag = "--" + root.replace("_", "-")
        if config.benchmark == name:
            if getattr(config, root) is None:
                raise ConfigError(f"--benchmark {name} needs {flag} PATH")
            if config.input_type != input_type:
                raise ConfigError(f"--benchmark {name} needs --input-type {input_type} "
                                  f"(got {config.input_type})")
        elif getattr(config, root) is not None:
            raise ConfigError(f"{flag} is only read with --benchmark {name}")
    if config.benchmark is None and config.input_type != "camera":
        needs = next(n for n, t in BENCHMARK_INPUT_TYPES.items() if t == config.input_type)
        raise ConfigError(f"--input-type {config.input_type} needs --benchmark {needs}")
    if config.benchmark and config.model == "reasoning":
        raise ConfigError(f"--benchmark {config.benchmark} has no teacher reasoning to distill; "
                          "use --model baseline")
    if config.benchmark and config.offline:
        raise ConfigError(f"--offline has no {config.benchmark} data; drop one of them")
    if config.input_type == "vector" and config.backbone_weights:
        raise ConfigError("--backbone-weights loads a ResNet; --input-type vector has none")
