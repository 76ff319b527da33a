"""Stop signals to every process of a run, as clusters send them (Slurm: every process of the
step; ``timeout`` and launch wrappers: the process group; Ctrl-C: the foreground group): each
run starts in its own session, pauses mid-epoch 2 at a fixed step (``signal_run.py``, the hook
that travels to the run's processes) and is signalled with ``os.killpg``. The main process
saves ``_latest.pt`` at the next step boundary and exits 0 (under torchrun every rank does, at
the same step); the checkpoint loads with ``weights_only=True``; resumed, the run ends with the
weights of a straight run. The same for the extraction script (its worker pool, signalled as
a group) and, in this process, the labelling and ego-history scripts; then a second and a third
signal, the atomic save, and the ``--stop-signals`` flag.

The default run covers one cell of each kind (about 3 minutes on 2 cores); the rest of the
signal x loader x launcher matrix is marked slow (``pytest --slow``)."""
from __future__ import annotations

import importlib.util
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import pai_layout
import signal_run as sr
from distill.data.readers import read_frames
from distill.data.stop import StopNow, StopRequest, parse_signals
from distill.training import checkpoint
from distill.training.args import build_parser, parse_config
from distill.training.config import INVOCATION_ONLY, RunConfig

LATEST = "baseline_seed42_latest.pt"
FAST = {("plain", "torch", "SIGTERM"), ("plain", "torch", "SIGINT"), ("plain", "dali", "SIGUSR1"),
        ("torchrun", "torch", "SIGTERM")}
CELLS = [pytest.param(*cell, id="-".join(cell), marks=() if cell in FAST else pytest.mark.slow)
         for cell in ((launcher, loader, name) for launcher in ("plain", "torchrun")
                      for loader in ("torch", "dali") for name in ("SIGTERM", "SIGINT", "SIGUSR1"))]


def nproc(launcher: str) -> int:
    return 2 if launcher == "torchrun" else 0


@pytest.fixture(scope="module")
def straight(world, tmp_path_factory):
    """The final state of an uninterrupted run per (launcher, loader), made once."""
    runs = {}

    def get(launcher: str, loader: str) -> dict:
        if (launcher, loader) not in runs:
            out = tmp_path_factory.mktemp(f"straight-{launcher}-{loader}")
            n = nproc(launcher)
            done = sr.finish(sr.start_train(world, out, sr.FLAGS + sr.loader_flags(loader, n), n,
                                            pause_at=0), ranks=n)
            assert done.code == 0, done.err[-3000:]
            runs[launcher, loader] = sr.latest_state(out)
        return runs[launcher, loader]
    return get


def assert_stopped(done: sr.Outcome, out: Path, said: str, n: int, launcher_code: int = 0):
    """Exit codes (torchrun's own, ``launcher_code``, and each rank's 0), the one stop line,
    no dead worker, and a mid-epoch-2 ``_latest.pt`` that loads with weights_only=True."""
    assert done.code == launcher_code, done.err[-3000:]
    assert done.ranks == {r: 0 for r in range(max(n, 1))}, done.err[-3000:]
    if not n:
        assert "Traceback" not in done.err, done.err[-3000:]
    assert "killed by signal" not in done.err and "Error" not in done.out
    stops = [line for line in done.out.splitlines() if line.startswith("stopped by")]
    assert len(stops) == 1 and stops[0].startswith(f"stopped by {said} at epoch 2, step "), stops
    assert f"--resume {out / LATEST}" in stops[0]
    state = sr.latest_state(out)
    assert state["run"]["epoch"] == 1 and 0 < state["run"]["samples_in_epoch"] < 48
    # one process checks every step (the pause is after step 14); ranks agree every 10 steps
    assert state["run"]["step"] == (20 if n else sr.PAUSE_AT)


def assert_resumes_exactly(world, out: Path, n: int, straight_state: dict):
    proc = sr.start_train(world, out, ["--resume", str(out / LATEST)], n, pause_at=0,
                          tag="resumed")
    done = sr.finish(proc, ranks=n)
    assert done.code == 0, done.err[-3000:]
    state = sr.latest_state(out)
    assert state["run"]["epoch"] == 2 and state["run"]["step"] == straight_state["run"]["step"]
    for key, value in straight_state["model"].items():
        assert torch.equal(value, state["model"][key]), key


@pytest.mark.parametrize("launcher,loader,name", CELLS)
def test_a_signal_to_the_group_stops_the_run_and_it_resumes_exactly(world, straight, tmp_path,
                                                                    launcher, loader, name):
    """killpg mid-epoch 2. Under torchrun the group is the launcher's (its ranks run in
    sessions of their own): its agent forwards the signal to them (SIGUSR1 once told to:
    ``--signals-to-handle``, docs/scaling.md) and exits 1 after they exit."""
    n, out = nproc(launcher), tmp_path / "run"
    done = sr.run_signalled(world, out, sr.FLAGS + sr.loader_flags(loader, n),
                            signal.Signals[name], n,
                            torchrun_flags=sr.WITH_USR1 if name == "SIGUSR1" and n else ())
    assert_stopped(done, out, name, n, launcher_code=1 if n else 0)
    if n:  # the agent re-raises the signal it got, once its ranks have exited
        assert "SignalException" in done.err
    assert_resumes_exactly(world, out, n, straight(launcher, loader))


@pytest.mark.parametrize("times", [pytest.param(2, marks=pytest.mark.slow), 3])
def test_a_second_signal_is_ignored_and_a_third_exits_at_once(world, tmp_path, times):
    """Signals 0.2 s apart, all before the paused run goes on: two stop it as one does; the
    third exits at once, without saving, and the last checkpoint (epoch 1's) stays whole."""
    out = tmp_path / "run"
    done = sr.run_signalled(world, out, sr.FLAGS + sr.loader_flags("torch", 0), signal.SIGTERM,
                            times=times)
    if times == 2:
        assert_stopped(done, out, "SIGTERM", 0)
        return
    assert done.code == 128 + signal.SIGTERM and "Traceback" not in done.err
    errors = [line for line in done.err.splitlines() if line.startswith("error:")]
    assert errors == ["error: a third SIGTERM: stopped at once, without saving; the files "
                      "written before are intact"]
    state = sr.latest_state(out)
    assert state["run"]["epoch"] == 1 and state["run"]["samples_in_epoch"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("target", ["all", "rank1"])
def test_torchrun_every_process_or_one_rank_signalled(world, straight, tmp_path, target):
    """"all": Slurm signals every process (the launcher, each rank and its loader workers), so
    each rank gets it twice (from Slurm and forwarded): the second is ignored. "rank1": the
    other rank learns of it at the next agreement; torchrun, not signalled, exits 0."""
    out = tmp_path / "run"
    done = sr.run_signalled(world, out, sr.FLAGS + sr.loader_flags("torch", 2), signal.SIGTERM,
                            2, target=target)
    assert_stopped(done, out, "SIGTERM" if target == "all" else "a signal on another rank", 2,
                   launcher_code=1 if target == "all" else 0)
    assert_resumes_exactly(world, out, 2, straight("torchrun", "torch"))


@pytest.mark.slow
def test_ranks_stop_when_the_launcher_dies_of_a_signal_it_does_not_handle(world, straight,
                                                                          tmp_path):
    """torchrun without --signals-to-handle ...SIGUSR1 dies of SIGUSR1; its ranks, watching it,
    send themselves SIGTERM and stop as one, instead of training on unseen."""
    out = tmp_path / "run"
    done = sr.run_signalled(world, out, sr.FLAGS + sr.loader_flags("torch", 2), signal.SIGUSR1,
                            2)
    assert_stopped(done, out, "SIGTERM", 2, launcher_code=-signal.SIGUSR1)
    assert_resumes_exactly(world, out, 2, straight("torchrun", "torch"))


# --- the data scripts ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pai_copy(tmp_path_factory):
    """12 training clips, and their frames extracted without a stop."""
    root = tmp_path_factory.mktemp("pai")
    pai_layout.build_copy(root, train=12)
    done = sr.finish(sr.start(root, root / "straight.run", extract_args(root, root / "straight")))
    assert done.code == 0, done.err[-3000:]
    return root


def extract_args(root: Path, out: Path) -> list[str]:
    return ["script", "extract_frames", "--dataset-root", str(root), "--out", str(out),
            "--resolution", "0", "--workers", "2"]


@pytest.mark.parametrize("name", ["SIGTERM", pytest.param("SIGINT", marks=pytest.mark.slow),
                                  pytest.param("SIGUSR1", marks=pytest.mark.slow)])
def test_extraction_stops_with_whole_files_and_a_rerun_goes_on(pai_copy, tmp_path, name):
    """Signalled after 2 samples: the pool's workers finish the samples they hold, the script
    says how far it got and exits 0; a rerun extracts the rest, equal to a straight run's."""
    out, args = tmp_path / "frames", extract_args(pai_copy, tmp_path / "frames")
    proc = sr.start(pai_copy, tmp_path / "stopped.run", args, pause_at=2)
    assert sr.signal_when_paused(proc, signal.Signals[name])
    done = sr.finish(proc)
    assert done.code == 0 and "Traceback" not in done.err, done.err[-3000:]
    assert f"stopped by {name}: " in done.out and "run the same command again" in done.out
    written = sorted((out / "train").glob("sample_*.npz"))
    assert 2 <= len(written) < 12 and not list((out / "train").glob(".*"))
    for path in written:
        read_frames(path)  # whole
    again = sr.finish(sr.start(pai_copy, tmp_path / "again.run", args))
    assert again.code == 0 and f"resuming: {len(written)} samples" in again.out, again.err
    straight = sorted((pai_copy / "straight" / "train").glob("sample_*.npz"))
    assert [p.name for p in straight] == [p.name for p in sorted((out / "train").glob("*.npz"))]
    for path in straight:
        assert path.read_bytes() == (out / "train" / path.name).read_bytes(), path.name


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, sr.SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_labelling_and_ego_history_stop_whole_and_go_on(world, pai_copy, tmp_path, monkeypatch,
                                                        capsys):
    """SIGTERM (to this process) while the second batch is labelled: that part is written,
    then the script stops (exit 0) and --resume goes on to the straight run's labels. The ego
    history stopped mid-split writes nothing; the rerun writes it."""
    from distill.data.readers import load_ego_history, load_labels
    from distill.data.real.ego_history import EgomotionHistory
    from distill.teachers.world import WorldTeacher

    argv = ["--teacher", "world", "--frames-dir", str(world / "extracted_frames"), "--split",
            "val", "--batch-size", "4", "--out-dir", str(tmp_path)]
    real, calls = WorldTeacher.label, []

    def label(self, samples):
        calls.append(len(samples))
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, samples)

    monkeypatch.setattr(WorldTeacher, "label", label)
    labels = load_script("generate_teacher_labels").main
    assert labels(argv) == 0
    assert "stopped by SIGTERM: 8 of 16 samples labelled" in capsys.readouterr().out
    assert labels([*argv, "--resume"]) == 0 and calls == [4, 4, 4, 4]
    mine = load_labels(tmp_path / "val_labels.npz")
    straight = load_labels(world / "teacher_labels" / "val_labels.npz")
    assert mine.keys == straight.keys
    assert (mine.arrays["trajectory_xyz"] == straight.arrays["trajectory_xyz"]).all()
    assert np.allclose(mine.arrays["coc_embeddings"], straight.arrays["coc_embeddings"],
                       atol=1e-6)

    real_history, seen = EgomotionHistory.__call__, []

    def history(self, *args):
        seen.append(args[0])
        if len(seen) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_history(self, *args)

    monkeypatch.setattr(EgomotionHistory, "__call__", history)
    ego = load_script("generate_ego_history").main
    argv = ["--dataset-root", str(pai_copy), "--frames-dir", str(pai_copy / "straight"),
            "--split", "train", "--out-dir", str(tmp_path / "ego")]
    assert ego(argv) == 0 and "stopped by SIGTERM during split train" in capsys.readouterr().out
    assert not (tmp_path / "ego").exists() or not list((tmp_path / "ego").iterdir())
    assert ego(argv) == 0
    assert len(load_ego_history(tmp_path / "ego" / "train_ego_history.npz").keys) == 12


# --- in one process: the handler, the atomic save, the flag -----------------------------------

def test_the_handler_counts_the_signals():
    with StopRequest(parse_signals("USR1")) as stop:
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGUSR1)
        assert stop.requested and stop.signal_name == "SIGUSR1" and stop.received == 2
        with pytest.raises(StopNow) as raised:
            os.kill(os.getpid(), signal.SIGUSR1)
            for _ in range(100):  # the handler runs between bytecodes
                pass
    assert raised.value.exit_code == 128 + signal.SIGUSR1
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_a_signal_during_the_save_second_ignored_third_leaves_the_old_checkpoint(tmp_path,
                                                                                 monkeypatch):
    """SIGUSR1 after the temp file is written, before the rename: the second is ignored and the
    save completes; the third stops it at once and the previous checkpoint stays."""
    real = torch.save

    def save_and_signal(obj, f):
        real(obj, f)
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.05)  # the handler runs here

    path = checkpoint.save(tmp_path / LATEST, {"weights": torch.ones(3)})
    monkeypatch.setattr(torch, "save", save_and_signal)
    with StopRequest(parse_signals("SIGUSR1")) as stop:
        os.kill(os.getpid(), signal.SIGUSR1)  # the first: the stop
        checkpoint.save(path, {"weights": torch.full((4,), 2.0)})
        assert stop.received == 2
        assert torch.equal(checkpoint.load(path)["weights"], torch.full((4,), 2.0))
        with pytest.raises(StopNow):
            checkpoint.save(path, {"weights": torch.zeros(4)})
    assert torch.equal(checkpoint.load(path)["weights"], torch.full((4,), 2.0))
    assert [p.name for p in tmp_path.iterdir()] == [LATEST]  # no temp file left


def test_after_a_stop_a_command_line_ignores_late_copies_of_the_signal():
    previous = signal.getsignal(signal.SIGUSR1)
    with StopRequest(parse_signals("SIGUSR1"), linger=True):
        os.kill(os.getpid(), signal.SIGUSR1)
    try:
        assert signal.getsignal(signal.SIGUSR1) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_stop_signals_flag(capsys):
    parser = build_parser()
    assert parser.parse_args([]).stop_signals == (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
    assert parser.parse_args(["--stop-signals", "term,12"]).stop_signals == (signal.SIGTERM,
                                                                             signal.SIGUSR2)
    extract = load_script("extract_frames")
    for parse, prog in ((parser.parse_args, "python -m distill.train"),
                        (extract.parse_args, "python scripts/extract_frames.py")):
        for bad in ("TERMINATE", "KILL", ""):
            with pytest.raises(SystemExit):
                parse(["--stop-signals", bad])
            lines = capsys.readouterr().err.strip().splitlines()
            assert lines[-1].startswith(f"{prog}: error: argument --stop-signals: "), lines
    # invocation-only: not in the run's config, and a resumed run may change it
    assert "stop_signals" in INVOCATION_ONLY and "stop_signals" not in RunConfig.field_names()
    argv = ["--model", "baseline", "--offline"]
    saved = parse_config(parser, argv).to_dict()
    assert parse_config(parser, [*argv, "--stop-signals", "USR2"], saved, "x.pt").to_dict() \
        == saved
