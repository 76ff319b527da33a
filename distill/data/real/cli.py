"""What the data scripts share: their flags, their progress bars and one-line errors."""
from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from ..readers import DataError, one_line
from .layout import ROOT_ENV


class ScriptError(ValueError):
    """A refused request (finished output, a missing teacher package or GPU); one line."""


def add_dataset_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset-root", default=None, metavar="DIR",
                        help=f"local copy of PhysicalAI-Autonomous-Vehicles (default: ${ROOT_ENV})")


def progress(iterable=None, **kwargs) -> tqdm:
    return tqdm(iterable, dynamic_ncols=True, **kwargs)


def run(main, args) -> int:
    """Call ``main(args)``; bad data or a refused request prints one line and returns 2."""
    try:
        main(args)
    except (DataError, ScriptError, FileExistsError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    return 0
