"""Shared fixtures: one small built-in world and one pair of tiny benchmark datasets per test
session; ``--slow`` runs the tests marked slow (skipped by default)."""
from __future__ import annotations

import pytest

from distill.world.generate import generate_world

WORLD = dict(train=48, val=16, seed=0, resolution=64)


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """A small world: DIR/extracted_frames/{train,val} and DIR/teacher_labels (64 px)."""
    out = tmp_path_factory.mktemp("world")
    generate_world(out, WORLD["train"], WORLD["val"], WORLD["seed"], WORLD["resolution"],
                   workers=1)
    return out


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """Both tiny benchmark datasets (DIR/argoverse2, DIR/nuscenes), written by the CLI a user
    would run (needs the [bench] devkits: the modules using it skip without them)."""
    from distill.datasets import tiny
    out = tmp_path_factory.mktemp("bench")
    assert tiny.main(["--out", str(out), "--av2-train", "8", "--av2-val", "4",
                      "--nuscenes-train-scenes", "2", "--nuscenes-val-scenes", "1"]) == 0
    return out


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", help="also run the tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with pytest --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
