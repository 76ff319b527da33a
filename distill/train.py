"""python -m distill.train: distill the teacher into a camera student.

Read top to bottom: flags -> (resume) -> data -> model and optimizer -> epochs of
(train, validate, log, checkpoint, early stop). Flags and defaults follow the training guide
(``python -m distill.train --help``). One process, or several under
``torchrun --nproc_per_node N -m distill.train ...`` (DDP; docs/scaling.md): every rank runs this
same code on its shard of each global batch; rank 0 logs and writes checkpoints."""
from __future__ import annotations

import sys
import time
from dataclasses import asdict

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from .datasets import miss_rule
from .data.readers import DataError, one_line
from .data.sampling import epoch_order, epoch_seed
from .kinematics import ActionStats
from .losses import reasoning_weight
from .ops import use_rollout
from .models import build_student
from .training import checkpoint, outputs
from .training.accel import apply_global, resolve
from .training.args import (ConfigError, absolute_paths, build_parser, check_combinations,
                            explicit_flags, resolve_resume, run_config)
from .training.cuda_graph import GraphedStep
from .training.data import ActionTargets, actions_cache_dir, load_datasets, make_loader
from .training.distributed import (all_reduce_sum, any_rank, close_distributed,
                                   init_distributed)
from .training.ema import EMA
from .training.engine import SUM_KEYS, TrainStep
from .training.guard import DivergedError, StopRequest
from .training.negatives import NegativeQueue
from .training.profiling import StepProfiler, fetched
from .training.runtime import (freeze_batchnorm, model_config, optimizer_for, pick_device,
                               seed_all, set_lr)
from .training.schedule import lr_at
from .training.step import LossWeights
from .training.validate import (constant_velocity_ade, run_validation, selection_metric,
                                to_device)

LOG_EVERY = 10  # batches between host reads of the running sums (progress bar, guard)
STOP_CHECK_EVERY = 10  # optimizer steps between the ranks' agreement on a stop signal (DDP)


def loss_weights(args, epoch: float) -> LossWeights:
    return LossWeights(yaw=args.yaw_weight, action=args.action_weight,
                       reasoning=reasoning_weight(epoch, args.reasoning_weight,
                                                  args.reasoning_warmup_epochs),
                       temperature=args.temperature, label_smoothing=args.label_smoothing,
                       multimodal=args.multimodal_loss)


def train(args, explicit: set[str], d, device: torch.device) -> int:
    # --- config: a resumed run restores its own, with only the allowed overrides ---------------
    say = print if d.is_main else (lambda *a, **k: None)  # rank 0 speaks and writes
    resumed = None
    if args.resume:
        resumed = checkpoint.load(args.resume)
        args = resolve_resume(args, explicit, resumed["config"], args.resume)
    check_combinations(args)
    config = run_config(args)
    out_dir = (outputs.prepare(args.output_dir, config, resuming=resumed is not None,
                               overwrite=args.overwrite) if d.is_main else None)
    seed_all(args.seed + d.rank)  # rank 0 draws what one process would; DDP copies its weights
    cfg = model_config(args)  # horizon, history length and dt: the benchmark's when given
    accel = resolve(args.precision, args.cuda_graphs, args.compile, args.accumulation_steps,
                    device.type, device.type == "cuda" and torch.cuda.is_bf16_supported(),
                    d.enabled, args.reasoning_negatives == "queue")
    apply_global(accel)
    for note in accel.notes:
        say(note)

    # --- data ----------------------------------------------------------------------------------
    train_set, val_set = load_datasets(args)
    cache = actions_cache_dir(args)
    train_actions = ActionTargets(train_set.data, cache, cfg.dt)
    val_actions = ActionTargets(val_set.data, cache, cfg.dt)
    stats = (ActionStats.from_dict(resumed["action_stats"]) if resumed else
             ActionStats.from_actions(train_actions.actions[..., 0], train_actions.actions[..., 1]))
    stats = stats.to(device)
    cv_ade = constant_velocity_ade(val_set, cfg.dt)
    # Every rank must run the same steps: under DDP (and for a graph's static shapes) the last
    # incomplete global batch of an epoch is dropped.
    drop_last = d.enabled or accel.cuda_graphs
    global_batch = d.world_size * args.batch_size
    epoch_samples = len(epoch_order(len(train_set), None, 0, 1, drop_last, global_batch))
    if epoch_samples == 0 or len(val_set) < d.world_size:
        raise ConfigError(f"{len(train_set)} training / {len(val_set)} validation samples: "
                          f"fewer than one global batch of {global_batch} "
                          f"({d.world_size} ranks x --batch-size {args.batch_size}) or one "
                          "validation sample per rank")
    say(f"data: {len(train_set)} train / {len(val_set)} val samples"
        f"{' (offline: random images)' if args.offline else ''}; device {device}"
        f"{f', {d.world_size} ranks' if d.enabled else ''}")

    # --- model, optimizer, EMA -----------------------------------------------------------------
    model = build_student(args.model, cfg).to(device)
    if accel.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if args.backbone_weights and resumed is None:
        from .models.backbone import load_backbone_weights
        load_backbone_weights(model.image_trunk, args.backbone_weights)
    optimizer = optimizer_for(model, args.lr, args.weight_decay, device, accel.cuda_graphs)
    negatives = (NegativeQueue(args.queue_size, cfg.embed_dim, device)
                 if args.reasoning_negatives == "queue" else None)
    run = outputs.RunState()
    if resumed:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        if negatives is not None:
            negatives.load_state_dict(resumed["negatives"])
        run = outputs.RunState(**resumed["run"])
        if d.is_main:
            checkpoint.set_rng_state(resumed["rng"])  # last: everything above may draw numbers
        else:  # the other ranks' streams (dropout) are not saved: a fresh one per rank and step
            seed_all(args.seed + d.rank + 7919 * run.step)
        say(f"resumed {args.resume} at epoch {run.epoch}, step {run.step}"
            + (f", {run.samples_in_epoch} samples into epoch {run.epoch + 1}"
               if run.samples_in_epoch else ""))
    ddp = (DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                   else None) if d.enabled else None)  # broadcasts rank 0's
    ema = EMA(model, args.ema_decay) if args.ema else None  # after DDP: the same on every rank
    if resumed and ema:
        ema.load_state_dict(resumed["ema"])
    forward_model = torch.compile(ddp or model) if args.compile else (ddp or model)
    engine = TrainStep(forward_model, model, ddp, optimizer, ema, cfg, stats, accel,
                       loss_weights(args, 0.0), args.grad_clip, d, negatives, device)
    if resumed and resumed.get("guard"):
        engine.guard.load_state_dict(resumed["guard"])
    graphed = None  # --cuda-graphs: captured at the first batch
    n_params = sum(p.numel() for p in model.parameters())
    say(f"model: {args.model} {args.model_size} ({n_params / 1e6:.1f}M parameters), "
        f"{'direct' if args.no_unicycle else 'unicycle'} output"
        f"{', discrete actions' if args.discrete_actions else ''}"
        f"{f', {cfg.num_modes} modes ({args.multimodal_loss})' if cfg.num_modes > 1 else ''}"
        f"{f', {cfg.input_type} input' if cfg.input_type != 'camera' else ''}"
        f"{', torch.compile' if args.compile else ''}")
    metrics_log = outputs.MetricsLog(out_dir, config, keep_epochs=run.epoch) if d.is_main else None
    profiler = (StepProfiler(args.profile, out_dir / "profile_trace.json", device)
                if args.profile and d.is_main else None)

    def state(record, samples_in_epoch=0, epoch_sums=()):
        run.samples_in_epoch, run.epoch_sums = samples_in_epoch, list(epoch_sums)
        return {"config": config, "model_config": asdict(cfg), "model": model.state_dict(),
                "ema": ema.state_dict() if ema else None, "optimizer": optimizer.state_dict(),
                "negatives": negatives.state_dict() if negatives is not None else None,
                "guard": engine.guard.state_dict(),
                "scheduler": {"schedule": args.lr_schedule, "step": run.step},
                "run": run.as_dict(), "rng": checkpoint.rng_state(),
                "action_stats": stats.to_dict(), "metrics": record}

    # --- epochs --------------------------------------------------------------------------------
    announced = False
    with StopRequest() as stop:
        for epoch in range(run.epoch + 1, args.max_epochs + 1):
            start = time.perf_counter()
            skip = run.samples_in_epoch  # > 0: the epoch a stop interrupted goes on
            # (SUM_KEYS sums, samples, seconds) of the interrupted part, counted once (rank 0)
            prior = torch.tensor(run.epoch_sums if run.epoch_sums and d.is_main else
                                 [0.0] * (len(SUM_KEYS) + 2), dtype=torch.float64)
            model.train()
            if args.freeze_bn:
                freeze_batchnorm(model)
            loader = make_loader(train_set, args.batch_size, args.num_workers,
                                 shuffle_seed=epoch_seed(args.seed, epoch), drop_last=drop_last,
                                 pin_memory=device.type == "cuda", kind=args.loader,
                                 device=device, rank=d.rank, world_size=d.world_size, skip=skip)
            engine.sums.zero_()
            seen = 0  # this rank's samples in this session
            # A live bar on a terminal; in a log, one line with the epoch's expected time.
            bar = tqdm(loader, desc=f"epoch {epoch}/{args.max_epochs}", unit="batch",
                       dynamic_ncols=True, leave=False,
                       disable=not (sys.stderr.isatty() and d.is_main))
            optimizer.zero_grad(set_to_none=not accel.cuda_graphs)
            for i, batch in enumerate(fetched(bar)):
                target = train_actions.lookup(batch["clip_id"], batch["t0_us"])
                target = target.to(device, non_blocking=True)
                batch = to_device(batch, device)
                # Micro-batches of one optimizer step; a short last group: by its size.
                first = i // args.accumulation_steps * args.accumulation_steps
                group = min(args.accumulation_steps, len(loader) - first)
                sync = i + 1 == first + group
                done = skip + min((i + 1) * global_batch, epoch_samples - skip)  # global samples
                engine.reasoning_weight.fill_(reasoning_weight(
                    epoch - 1 + (done - len(batch["clip_id"]) * d.world_size) / epoch_samples,
                    args.reasoning_weight, args.reasoning_warmup_epochs))
                lr = lr_at(epoch - 1 + done / epoch_samples, args.lr, args.warmup_epochs,
                           args.max_epochs, args.lr_schedule)
                if accel.cuda_graphs:  # one whole step per batch (--accumulation-steps 1)
                    inputs = {**batch, "target": target}
                    if graphed is None:
                        graphed = GraphedStep(engine.whole, inputs, model, optimizer,
                                              engine.state_tensors())
                    set_lr(optimizer, lr)
                    graphed(inputs)
                else:
                    engine.micro(batch, target, 1.0 / group, sync)
                    if sync:
                        engine.update(lr)
                seen += len(batch["clip_id"])
                if not sync:
                    continue
                run.step += 1
                if profiler:
                    profiler.step()
                    if profiler.path:
                        say(f"profile: {profiler.path} ({args.profile} steps)")
                        profiler = None
                if (i + 1) % LOG_EVERY < args.accumulation_steps or i + 1 == len(loader):
                    bad, in_a_row = engine.guard.read()  # one host read per log interval
                    elapsed = time.perf_counter() - start
                    bar.set_postfix(loss=f"{float(engine.sums[0]) / max(seen, 1):.3f}",
                                    samples_s=f"{seen / elapsed:.1f}", nonfinite=bad)
                    if in_a_row >= args.max_nonfinite_steps:
                        raise DivergedError(
                            f"{in_a_row} non-finite losses in a row (epoch {epoch}, step "
                            f"{run.step}; {bad} in the run), each skipped: the run diverged. "
                            "The checkpoints of the last epoch are intact; try a lower --lr "
                            "or --grad-clip")
                    if bar.disable and not announced:  # a log file: the expected epoch time
                        announced = True
                        say(f"epoch {epoch}: {len(loader)} batches, about "
                            f"{elapsed * len(loader) / (i + 1):.0f} s each at "
                            f"{seen / elapsed:.1f} samples/s", flush=True)
                if ((not d.enabled or run.step % STOP_CHECK_EVERY == 0)
                        and any_rank(stop.requested, d, device) and done < epoch_samples):
                    sums = all_reduce_sum(torch.cat([engine.sums.double().cpu(), torch.tensor(
                        [seen, time.perf_counter() - start], dtype=torch.float64)]).to(device),
                        d).cpu() + prior
                    if d.is_main:
                        path = outputs.save_latest(out_dir, config,
                                                   state(None, done, sums.tolist()))
                        say(f"stopped by {stop.signal_name or 'a signal on another rank'} at "
                            f"epoch {epoch}, step {run.step} ({done}/{epoch_samples} samples "
                            f"of the epoch); resume with --resume {path}", flush=True)
                    return 0
            bar.close()
            totals = all_reduce_sum(torch.cat([engine.sums.double(), torch.tensor(
                [seen, time.perf_counter() - start], dtype=torch.float64, device=device)]),
                d).cpu()
            totals[-1] /= d.world_size  # seconds: each rank's, averaged
            totals += prior
            train_time = float(totals[-1])
            train_means = (totals[:len(SUM_KEYS)] / totals[len(SUM_KEYS)]).tolist()
            samples_per_s = float(totals[len(SUM_KEYS)]) / train_time

            # --- validate the weights that would be saved (EMA when on); ranks split it -------
            eval_model = ema.model if ema else model
            val = run_validation(eval_model, make_loader(val_set, args.batch_size,
                                                         args.num_workers, kind=args.loader,
                                                         device=device, rank=d.rank,
                                                         world_size=d.world_size),
                                 cfg, stats, val_actions, loss_weights(args, epoch), device,
                                 action_stats=args.log_action_stats,
                                 miss=miss_rule(args.benchmark), d=d)
            score = selection_metric(val, cfg.num_modes)
            improved = score < run.best_ade
            if improved:
                run.best_ade, run.best_epoch, run.bad_epochs = score, epoch, 0
            else:
                run.bad_epochs += 1
            run.epoch = epoch
            record = outputs.epoch_record(epoch, run.step, lr, train_means, val, cv_ade,
                                          samples_per_s, time.perf_counter() - start,
                                          engine.guard.read()[0])
            if "action_stats" in val:
                record["action_stats"] = val["action_stats"]
            if d.is_main:
                metrics_log.append(record)
                say(outputs.epoch_line(record, args.max_epochs, run, cfg.num_modes), flush=True)
                outputs.save_epoch(out_dir, config, state(record), epoch, improved, args)
            else:
                run.samples_in_epoch, run.epoch_sums = 0, []
            if run.bad_epochs >= args.patience:
                say(f"early stop: no better val ADE for {args.patience} epochs "
                    f"(best {run.best_ade:.3f} m at epoch {run.best_epoch})")
                break
            if any_rank(stop.requested, d, device):
                say(f"stopped by {stop.signal_name or 'a signal on another rank'} after epoch "
                    f"{epoch}; resume with --resume "
                    f"{checkpoint.checkpoint_path(out_dir, config, 'latest')}")
                return 0
    if d.is_main:
        outputs.finish(out_dir, config, args.save_final_only)
    if profiler:
        profiler.close()
    say(f"best val ADE {run.best_ade:.3f} m at epoch {run.best_epoch}; "
        f"checkpoints in {out_dir}")
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = absolute_paths(parser.parse_args(argv))
    if args.model is None and not args.resume:
        parser.error("the following arguments are required: --model")
    d = None
    try:
        device = pick_device(args.device)
        d = init_distributed(device.type)
        if d.enabled and device.type == "cuda":
            device = torch.device("cuda", d.local_rank)
        with use_rollout(args.rollout):
            return train(args, explicit_flags(parser, argv), d, device)
    except (DataError, ConfigError, checkpoint.CheckpointError, FileExistsError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except DivergedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    finally:
        if d is not None:
            close_distributed(d)


if __name__ == "__main__":
    sys.exit(main())
