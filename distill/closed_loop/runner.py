"""Many episodes: each driven by the policy under test and by the references on the same scene,
in this process or in ``workers`` spawned processes (the same results either way: episodes are
independent and each runs its network on one thread), with a progress bar."""
from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from tqdm import tqdm

from .episode import EpisodeSpec, Rollout, episode_scene, run_episode
from .metrics import episode_metrics
from .policies import reference_policy


@dataclass(frozen=True)
class DriveSetup:
    replan_every: int = 1
    resolution: int = 64
    references: tuple[str, ...] = ()  # reference policies driven on the same scenes


@dataclass
class Episode:
    record: dict  # index, scenario, clip id, and the metrics of every policy by its name
    rollout: Rollout  # the policy under test's


def drive_one(spec: EpisodeSpec, policy, setup: DriveSetup) -> Episode:
    """One scene driven by ``policy`` and by each reference (these plan only the steps they
    execute: their plans are not drawn)."""
    clip_id, scene, _ = episode_scene(spec)
    record = {"index": spec.index, "scenario": scene.behaviour, "clip_id": clip_id}
    rollouts = []
    for p in (policy, *(reference_policy(r, setup.replan_every) for r in setup.references)):
        scene, teacher, rollout = run_episode(spec, p, setup.replan_every, setup.resolution)
        record[p.name] = episode_metrics(scene, teacher, rollout)
        rollouts.append(rollout)
    return Episode(record, rollouts[0])


@contextmanager
def one_thread():
    """torch on one thread: a batch of one gains little from more, and results then do not
    depend on how many processes share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_WORKER: dict = {}


def _start_worker(make_policy: Callable, setup: DriveSetup) -> None:
    torch.set_num_threads(1)
    _WORKER.update(policy=make_policy(), setup=setup)


def _drive_in_worker(spec: EpisodeSpec) -> Episode:
    return drive_one(spec, _WORKER["policy"], _WORKER["setup"])


def drive_episodes(specs: list[EpisodeSpec], make_policy: Callable, setup: DriveSetup,
                   workers: int = 1, progress: bool = True) -> tuple[list[Episode], float]:
    """Every episode of ``specs`` in order, and the seconds they took. ``make_policy`` builds
    the policy under test (in each worker: it must pickle, e.g. a module-level function)."""
    start = time.perf_counter()
    bar = dict(total=len(specs), desc="drive", unit="episode", dynamic_ncols=True,
               disable=not progress)
    if workers <= 1:
        policy = make_policy()
        with one_thread():
            episodes = list(tqdm((drive_one(s, policy, setup) for s in specs), **bar))
    else:
        with mp.get_context("spawn").Pool(min(workers, len(specs)), _start_worker,
                                          (make_policy, setup)) as pool:
            episodes = list(tqdm(pool.imap(_drive_in_worker, specs), **bar))
    return episodes, time.perf_counter() - start
