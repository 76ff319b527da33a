"""python -m distill.serve --checkpoint CKPT [--port P | --socket PATH] [--mode alpasim|carla]
[--camera-map RUNTIME_ID=OUR_CAMERA ...]

Serves a camera student as a driving policy over AlpaSim's egodriver gRPC contract
(carla-driver-interface, the [serve] extra): AlpaSim's runtime or a CARLA scenario runner sends
camera frames and egomotion, and each drive is answered with the student's plan (64 poses at
10 Hz). Stop signals (SIGTERM, SIGINT, SIGUSR1) stop it cleanly: exit 0. Exit codes: 2 bad
input (checkpoint, camera map, address), 128 + N a third stop signal N. docs/closed_loop.md."""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from .data.readers import one_line
from .data.stop import StopNow, StopRequest
from .training.runtime import pick_device
from .training.trained import load_student


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m distill.serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a camera student's checkpoint")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--port", type=int, default=50051, help="TCP port (0: any free one)")
    where.add_argument("--socket", help="serve on this Unix socket instead of a TCP port")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (0.0.0.0 in a container, for AlpaSim's runtime)")
    p.add_argument("--mode", choices=("alpasim", "carla"), default="alpasim",
                   help="the runtime on the other end: AlpaSim, or a CARLA scenario runner")
    p.add_argument("--camera-map", nargs="+", action="extend", default=[],
                   metavar="RUNTIME_ID=OUR_CAMERA",
                   help="read our camera from the runtime's camera RUNTIME_ID (default: the "
                        "runtime's camera of the same name)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--max-workers", type=int, default=8, help="gRPC handler threads")
    return p.parse_args(argv)


def start(args: argparse.Namespace):
    """(server, driver): the server started, and its line printed; ValueError or OSError (one
    line) for bad input."""
    from .serving import StudentDriver, build_server, camera_map

    ids = camera_map(args.camera_map)
    student = load_student(args.checkpoint, pick_device(args.device))
    driver = StudentDriver(student, ids)
    address = (f"unix://{Path(args.socket).resolve()}" if args.socket
               else f"{args.host}:{args.port}")
    server, port = build_server(driver, address, args.mode, args.max_workers)
    where = address if args.socket else f"{args.host}:{port}"
    server.start()
    cfg, config = student.cfg, student.config
    print(f"serving {driver.name} ({args.checkpoint}, {student.weights} weights, "
          f"{config.resolution} px, {driver.device}) on {where} in {args.mode} mode; cameras "
          f"(runtime id -> ours): {', '.join(f'{r} -> {o}' for o, r in ids.items())}; plans of "
          f"{cfg.horizon} poses every {cfg.dt:g} s", flush=True)
    return server, driver


def main(argv=None) -> int:
    args = parse_args(argv)
    cli = argv is None  # the command line: late copies of a stop signal must not kill it
    if cli:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                                                       "%(message)s")
    try:
        with StopRequest(linger=cli) as stop:
            server, driver = start(args)
            while not stop.requested:
                time.sleep(0.1)
            server.stop(grace=5.0).wait()
    except ModuleNotFoundError as e:
        print(f"error: python -m distill.serve needs {e.name.split('.')[0]}, which the [serve] "
              "extra installs (pip install -e '.[serve]')", file=sys.stderr)
        return 2
    except (ValueError, OSError) as e:  # CheckpointError and ConfigError are ValueErrors
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except StopNow as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print(f"stopped by {stop.signal_name} after {driver.drives} drives", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
