"""Shared fixtures: one small built-in world per test session."""
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
