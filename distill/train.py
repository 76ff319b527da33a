"""python -m distill.train: distill the teacher into a camera student.

Read top to bottom: flags -> (resume) -> data -> model and optimizer -> epochs of
(train, validate, log, checkpoint, early stop). Flags and defaults follow the training guide
(``python -m distill.train --help``)."""
from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict

import torch
from tqdm import tqdm

from .benchmarks import miss_rule
from .data.readers import DataError, one_line
from .data.sampling import epoch_seed
from .kinematics import ActionStats
from .losses import reasoning_weight
from .ops import use_rollout
from .models import build_student
from .training import checkpoint, outputs
from .training.args import (ConfigError, absolute_paths, build_parser, check_combinations,
                            explicit_flags, resolve_resume, run_config)
from .training.data import ActionTargets, actions_cache_dir, load_datasets, make_loader
from .training.ema import EMA
from .training.negatives import NegativeQueue
from .training.runtime import freeze_batchnorm, model_config, optimizer_for, pick_device, seed_all
from .training.schedule import lr_at
from .training.step import LossWeights, loss_terms, predict
from .training.validate import (constant_velocity_ade, run_validation, selection_metric,
                                to_device)


def loss_weights(args, epoch: float) -> LossWeights:
    return LossWeights(yaw=args.yaw_weight, action=args.action_weight,
                       reasoning=reasoning_weight(epoch, args.reasoning_weight,
                                                  args.reasoning_warmup_epochs),
                       temperature=args.temperature, label_smoothing=args.label_smoothing,
                       multimodal=args.multimodal_loss)


def train(args, explicit: set[str]) -> int:
    # --- config: a resumed run restores its own, with only the allowed overrides ---------------
    resumed = None
    if args.resume:
        resumed = checkpoint.load(args.resume)
        args = resolve_resume(args, explicit, resumed["config"], args.resume)
    check_combinations(args)
    config = run_config(args)
    device = pick_device(args.device)
    out_dir = outputs.prepare(args.output_dir, config, resuming=resumed is not None,
                              overwrite=args.overwrite)
    seed_all(args.seed)
    cfg = model_config(args)  # horizon, history length and dt: the benchmark's when given

    # --- data ----------------------------------------------------------------------------------
    train_set, val_set = load_datasets(args)
    cache = actions_cache_dir(args)
    train_actions = ActionTargets(train_set.data, cache, cfg.dt)
    val_actions = ActionTargets(val_set.data, cache, cfg.dt)
    stats = (ActionStats.from_dict(resumed["action_stats"]) if resumed else
             ActionStats.from_actions(train_actions.actions[..., 0], train_actions.actions[..., 1]))
    stats = stats.to(device)
    cv_ade = constant_velocity_ade(val_set, cfg.dt)
    steps_per_epoch = math.ceil(math.ceil(len(train_set) / args.batch_size)
                                / args.accumulation_steps)
    print(f"data: {len(train_set)} train / {len(val_set)} val samples"
          f"{' (offline: random images)' if args.offline else ''}; device {device}")

    # --- model, optimizer, EMA -----------------------------------------------------------------
    model = build_student(args.model, cfg).to(device)
    if args.backbone_weights and resumed is None:
        from .models.backbone import load_backbone_weights
        load_backbone_weights(model.image_trunk, args.backbone_weights)
    optimizer = optimizer_for(model, args.lr, args.weight_decay, device)
    ema = EMA(model, args.ema_decay) if args.ema else None
    negatives = (NegativeQueue(args.queue_size, cfg.embed_dim, device)
                 if args.reasoning_negatives == "queue" else None)
    run = outputs.RunState()
    if resumed:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        if ema:
            ema.load_state_dict(resumed["ema"])
        if negatives is not None:
            negatives.load_state_dict(resumed["negatives"])
        run = outputs.RunState(**resumed["run"])
        checkpoint.set_rng_state(resumed["rng"])  # last: everything above may draw numbers
        print(f"resumed {args.resume} at epoch {run.epoch}, step {run.step}")
    forward_model = torch.compile(model) if args.compile else model
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {args.model} {args.model_size} ({n_params / 1e6:.1f}M parameters), "
          f"{'direct' if args.no_unicycle else 'unicycle'} output"
          f"{', discrete actions' if args.discrete_actions else ''}"
          f"{f', {cfg.num_modes} modes ({args.multimodal_loss})' if cfg.num_modes > 1 else ''}"
          f"{f', {cfg.input_type} input' if cfg.input_type != 'camera' else ''}"
          f"{', torch.compile' if args.compile else ''}")
    metrics_log = outputs.MetricsLog(out_dir, config, keep_epochs=run.epoch)

    # --- epochs --------------------------------------------------------------------------------
    for epoch in range(run.epoch + 1, args.max_epochs + 1):
        start = time.perf_counter()
        model.train()
        if args.freeze_bn:
            freeze_batchnorm(model)
        loader = make_loader(train_set, args.batch_size, args.num_workers,
                             shuffle_seed=epoch_seed(args.seed, epoch),
                             pin_memory=device.type == "cuda", kind=args.loader, device=device)
        sums = torch.zeros(5, device=device)  # loss, pos, yaw, action, reasoning (x samples)
        seen = 0
        # A live bar on a terminal; in a log, one line with the epoch's expected time instead.
        bar = tqdm(loader, desc=f"epoch {epoch}/{args.max_epochs}", unit="batch",
                   dynamic_ncols=True, leave=False, disable=not sys.stderr.isatty())
        optimizer.zero_grad(set_to_none=True)
        for i, batch in enumerate(bar):
            # Micro-batches of one optimizer step; a short last group is weighted by its size.
            group = min(args.accumulation_steps, len(loader) - i // args.accumulation_steps
                        * args.accumulation_steps)
            target = train_actions.lookup(batch["clip_id"], batch["t0_us"]).to(device)
            batch = to_device(batch, device)
            weights = loss_weights(args, epoch - 1 + i / len(loader))
            terms = loss_terms(predict(forward_model, batch, cfg, stats), batch, target, cfg,
                               stats, weights, negatives)
            if negatives is not None:
                negatives.push(batch["coc_embedding"], batch["coc_id"])
            (terms["loss"] / group).backward()
            n = len(batch["clip_id"])
            sums += torch.stack([terms[k].detach() for k in
                                 ("loss", "pos", "yaw", "action", "reasoning")]) * n
            seen += n
            if (i + 1) % args.accumulation_steps == 0 or i + 1 == len(loader):
                lr = lr_at(run.step, args.lr, steps_per_epoch, args.warmup_epochs,
                           args.max_epochs, args.lr_schedule)
                for g in optimizer.param_groups:
                    g["lr"] = lr
                if args.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if ema:
                    ema.update(model)
                run.step += 1
            if (i + 1) % 10 == 0 or i + 1 == len(loader):  # one host read per 10 batches
                elapsed = time.perf_counter() - start
                bar.set_postfix(loss=f"{float(sums[0]) / seen:.3f}",
                                samples_s=f"{seen / elapsed:.1f}")
                if bar.disable and i + 1 == min(10, len(loader)) and epoch == run.epoch + 1:
                    print(f"epoch {epoch}: {len(loader)} batches, about "
                          f"{elapsed * len(loader) / (i + 1):.0f} s each at "
                          f"{seen / elapsed:.1f} samples/s", flush=True)
        bar.close()
        train_time = time.perf_counter() - start
        train_means = (sums / seen).tolist()

        # --- validate the weights that would be saved (EMA when on) ---------------------------
        eval_model = ema.model if ema else model
        val = run_validation(eval_model, make_loader(val_set, args.batch_size, args.num_workers,
                                                      kind=args.loader, device=device),
                             cfg, stats, val_actions, loss_weights(args, epoch), device,
                             action_stats=args.log_action_stats, miss=miss_rule(args.benchmark))
        score = selection_metric(val, cfg.num_modes)
        improved = score < run.best_ade
        if improved:
            run.best_ade, run.best_epoch, run.bad_epochs = score, epoch, 0
        else:
            run.bad_epochs += 1
        run.epoch = epoch
        record = outputs.epoch_record(epoch, run.step, optimizer.param_groups[0]["lr"],
                                      train_means, val, cv_ade, seen / train_time,
                                      time.perf_counter() - start)
        if "action_stats" in val:
            record["action_stats"] = val["action_stats"]
        metrics_log.append(record)
        print(outputs.epoch_line(record, args.max_epochs, run, cfg.num_modes), flush=True)

        # --- checkpoints -----------------------------------------------------------------------
        state = {"config": config, "model_config": asdict(cfg), "model": model.state_dict(),
                 "ema": ema.state_dict() if ema else None, "optimizer": optimizer.state_dict(),
                 "negatives": negatives.state_dict() if negatives is not None else None,
                 "scheduler": {"schedule": args.lr_schedule, "step": run.step},
                 "run": run.as_dict(), "rng": checkpoint.rng_state(),
                 "action_stats": stats.to_dict(), "metrics": record}
        outputs.save_epoch(out_dir, config, state, epoch, improved, args)
        if run.bad_epochs >= args.patience:
            print(f"early stop: no better val ADE for {args.patience} epochs "
                  f"(best {run.best_ade:.3f} m at epoch {run.best_epoch})")
            break
    outputs.finish(out_dir, config, args.save_final_only)
    print(f"best val ADE {run.best_ade:.3f} m at epoch {run.best_epoch}; "
          f"checkpoints in {out_dir}")
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = absolute_paths(parser.parse_args(argv))
    try:
        with use_rollout(args.rollout):
            return train(args, explicit_flags(parser, argv))
    except (DataError, ConfigError, checkpoint.CheckpointError, FileExistsError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
