"""python -m distill.train: distill the teacher into a student.

Flags and defaults follow the training guide (``python -m distill.train --help``; the parser is
distill/training/args.py). This module resolves them into the run's config (on resume, the
checkpoint's), sets up the device and the process group, and hands the run to
``distill.training.trainer.Trainer``. One process, or several under
``torchrun --nproc_per_node N -m distill.train ...`` (DDP; docs/scaling.md). Exit codes: 0 done
or stopped by a signal (``--stop-signals``; resumable), 2 bad input, 3 the run diverged,
128 + N a third stop signal N (stopped at once, without saving)."""
from __future__ import annotations

import sys

import torch

from .data.readers import DataError, one_line
from .ops import use_rollout
from .training import checkpoint
from .training.args import build_parser, parse_config
from .training.config import ConfigError
from .training.distributed import close_distributed, init_distributed
from .training.guard import DivergedError, StopNow, StopRequest
from .training.runtime import pick_device
from .training.trainer import Trainer


def main(argv=None) -> int:
    parser = build_parser()
    cli = argv is None  # the command line (not a call from Python): exits after this
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.model is None and not args.resume:
        parser.error("the following arguments are required: --model")
    d = None
    try:
        # From here on a stop signal to any process of the run stops it at the next step.
        with StopRequest(args.stop_signals, linger=cli) as stop, use_rollout(args.rollout):
            resumed = checkpoint.load(args.resume) if args.resume else None
            config = parse_config(parser, argv, resumed and resumed["config"], args.resume or "")
            device = pick_device(args.device)  # this invocation's (a resumed run may move)
            d = init_distributed(device.type, args.stop_signals[0])
            if d.enabled and device.type == "cuda":
                device = torch.device("cuda", d.local_rank)
            trainer = Trainer(config, d, device, resumed, args.resume, args.overwrite,
                              args.profile, not args.no_tensorboard)
            return trainer.fit(stop)
    except (DataError, ConfigError, checkpoint.CheckpointError, FileExistsError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except DivergedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except StopNow as e:  # a third stop signal
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    finally:
        if d is not None:
            close_distributed(d)


if __name__ == "__main__":
    sys.exit(main())
