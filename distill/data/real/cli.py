"""What the data scripts share: their flags, their progress bars, one-line errors, the stop
signals (``--stop-signals``: what is written is whole, a rerun or ``--resume`` goes on) and a
worker pool that stops cleanly."""
from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import queue
import sys
from collections.abc import Iterator

from tqdm import tqdm

from ..readers import DataError, one_line
from ..stop import (DEFAULT_STOP_SIGNALS, StopNow, StopRequest, Stopped, ignore_in_child,
                    parse_signals, shielded, stop_requested, stop_signals)


class ScriptError(ValueError):
    """A refused request (finished output, a missing package or GPU, the environment); one
    line."""


def _signals(text: str):
    try:
        return parse_signals(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_stop_signals(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stop-signals", type=_signals, default=DEFAULT_STOP_SIGNALS,
                        metavar="LIST", help="signals (names or numbers, comma-separated) that "
                        "stop the run once the files being written are whole, whichever of its "
                        f"processes they reach; a third exits at once (default "
                        f"{DEFAULT_STOP_SIGNALS})")


def progress(iterable=None, **kwargs) -> tqdm:
    return tqdm(iterable, dynamic_ncols=True, **kwargs)


def pool_map(fn, jobs, workers: int) -> Iterator:
    """``fn(job)`` of each job in ``workers`` spawned processes, results in the order they end.
    The workers ignore the stop signals (``stop.py``); once one reaches this process no new job
    starts and the running ones finish (at most 2 per worker), then the iteration ends."""
    with shielded():
        pool = mp.get_context("spawn").Pool(workers, initializer=ignore_in_child,
                                             initargs=(tuple(map(int, stop_signals())),))
    ended, todo, running = queue.SimpleQueue(), iter(jobs), 0
    with pool:  # leaving early (an error, a third signal) terminates the workers
        for job in itertools.islice(todo, 2 * workers):
            pool.apply_async(fn, (job,), callback=ended.put, error_callback=ended.put)
            running += 1
        while running:
            result = ended.get()
            running -= 1
            if isinstance(result, BaseException):
                raise result
            yield result
            for job in itertools.islice(todo, 0 if stop_requested() else 1):
                pool.apply_async(fn, (job,), callback=ended.put, error_callback=ended.put)
                running += 1


def run(main, args) -> int:
    """Call ``main(args)`` with the stop signals handled; bad data or a refused request prints
    one line and returns 2; a stop prints what is done and how to go on and returns 0."""
    try:
        with StopRequest(getattr(args, "stop_signals", None)):
            main(args)
    except Stopped as e:
        print(e, flush=True)
    except (DataError, ScriptError, FileExistsError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except StopNow as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return 0
