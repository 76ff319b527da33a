"""Runs signalled the way a cluster signals them: started in their own session
(``start_new_session=True``, as ``setsid``), paused at a chosen point, then the whole process
group is signalled (``os.killpg``: ``timeout``, launch wrappers, a terminal's Ctrl-C), or every
process of the run (Slurm), and what happened is recorded (exit code, the clean stop line or
the error, the mid-epoch ``_latest.pt``).

    python tests/signal_run.py table [--loaders torch,dali] [--launchers plain,torchrun]
                                     [--signals SIGTERM,SIGINT,SIGUSR1] [--scripts]
        the signal x loader x launcher table (and the extraction script's rows), in markdown
    python tests/signal_run.py train ARGS...
        ``python -m distill.train ARGS`` whose process pauses after its SIGNAL_RUN_PAUSE_AT-th
        optimizer step: it writes SIGNAL_RUN_MARKS/paused.RANK (its pid) and waits until a stop
        signal reached it (or SIGNAL_RUN_MARKS/go exists; at most 60 s), so the signal lands at
        the same step in every run; at the end it writes its exit code to exit.RANK
    python tests/signal_run.py script NAME ARGS...
        ``python scripts/NAME.py ARGS`` pausing in the same way after SIGNAL_RUN_PAUSE_AT
        finished samples (its progress bar's updates)

(The hook travels as this script: a test's monkeypatch does not reach another process.) The
helpers below (``start``, ``signal_when_paused``, ``finish``, ``run_signalled``) are the ones
tests/test_preemption.py uses."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

DRIVER = Path(__file__).resolve()
SCRIPTS = DRIVER.parents[1] / "scripts"
# A tiny baseline at 32 px; 48 samples in global batches of 4: 12 optimizer steps per epoch.
FLAGS = ["--model", "baseline", "--model-size", "tiny", "--resolution", "32", "--device", "cpu",
         "--lr", "1e-3", "--warmup-epochs", "0.5", "--max-train-samples", "48",
         "--max-val-samples", "8", "--max-epochs", "2", "--save-every", "1", "--keep-last", "0"]
PAUSE_AT = 14  # epoch 2, its second step (DDP agrees every 10 steps: the stop is at step 20)
TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
# torchrun's agent handles (and forwards to the ranks) only these unless told otherwise
WITH_USR1 = ("--signals-to-handle", "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1")


def loader_flags(loader: str, nproc: int, workers: int = 1) -> list[str]:
    return ["--loader", loader, "--num-workers", str(workers),
            "--batch-size", str(4 // max(nproc, 1))]


# --- the drivers (in the run's processes) ----------------------------------------------------

def _pause(marks: Path) -> None:
    """Marks the pause and waits until SIGNAL_RUN_SIGNALS (default 1) stop signals reached
    this process (or the go file exists, or 60 s passed)."""
    rank, want = os.environ.get("RANK", "0"), int(os.environ.get("SIGNAL_RUN_SIGNALS", "1"))
    (marks / f".paused.{rank}").write_text(str(os.getpid()))
    os.replace(marks / f".paused.{rank}", marks / f"paused.{rank}")  # whole when it appears
    deadline = time.monotonic() + 60
    while _received() < want and not (marks / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    (marks / f"seen.{rank}").touch()


def _received() -> int:
    """Stop signals this process's handler counted (0 before ``data/stop.py`` existed)."""
    try:
        from distill.data.stop import _active
    except ImportError:  # the code before stop.py: nothing counts them
        return 0
    return _active[-1].received if _active else 0


def _drive_train(argv: list[str], pause_at: int, marks: Path) -> int:
    from distill.train import main
    from distill.training.step import TrainStep

    calls, update = [0], TrainStep.update

    def paused(self, lr):
        out = update(self, lr)
        calls[0] += 1
        if calls[0] == pause_at:
            _pause(marks)
        return out

    TrainStep.update = paused
    return main(argv)


def _drive_script(name: str, argv: list[str], pause_at: int, marks: Path) -> int:
    import importlib.util

    from distill.data.real import cli

    bar_class = type(cli.progress(total=0, disable=True))

    class Paused(bar_class):
        def update(self, n=1):
            out = super().update(n)
            if self.n >= pause_at > 0 and not getattr(self, "done_pausing", False):
                self.done_pausing = True
                _pause(marks)
            return out

    cli.progress = lambda iterable=None, **kw: Paused(iterable, dynamic_ncols=True, **kw)
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


def _drive(mode: str, argv: list[str]) -> int:
    pause_at = int(os.environ.get("SIGNAL_RUN_PAUSE_AT", "0"))
    marks = Path(os.environ.get("SIGNAL_RUN_MARKS", "."))
    code = 1
    try:
        code = (_drive_train(argv, pause_at, marks) if mode == "train" else
                _drive_script(argv[0], argv[1:], pause_at, marks))
    finally:
        (marks / f"exit.{os.environ.get('RANK', '0')}").write_text(str(code))
    return code


# --- the helpers (in the test's process) -----------------------------------------------------

@dataclass
class Outcome:
    code: int | None  # the launched process's (torchrun's under torchrun); None: hung, killed
    out: str
    err: str
    ranks: dict  # rank -> the exit code its driver wrote (absent: it died first)

    def error_line(self) -> str:
        lines = [x for x in self.err.splitlines() if x.strip() and not x.startswith(" ")]
        errors = [x for x in lines if "Error" in x or "Exception" in x or "error" in x]
        return (errors or lines or [""])[-1][:150]


def start(cwd, marks: Path, args: list[str], nproc: int = 0, pause_at: int = 0,
          torchrun_flags: tuple = (), signals: int = 1) -> subprocess.Popen:
    """``python tests/signal_run.py ARGS`` (under torchrun with ``nproc`` > 0) in its own
    session from ``cwd``; its output and marks go to ``marks``."""
    marks.mkdir(parents=True, exist_ok=True)
    cmd = ([sys.executable, *TORCHRUN[:-1], f"--nproc_per_node={nproc}", *torchrun_flags]
           if nproc else [sys.executable])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SIGNAL_RUN_PAUSE_AT": str(pause_at),
           "SIGNAL_RUN_MARKS": str(marks), "SIGNAL_RUN_SIGNALS": str(signals)}
    logs = [open(marks / name, "w") for name in ("stdout", "stderr")]
    proc = subprocess.Popen([*cmd, str(DRIVER), *args], cwd=cwd, env=env, stdout=logs[0],
                            stderr=logs[1], start_new_session=True)
    proc.logs, proc.marks = logs, marks
    return proc


def start_train(world, out: Path, argv: list[str], nproc: int = 0, pause_at: int = PAUSE_AT,
                tag: str = "run", torchrun_flags: tuple = (), signals: int = 1
                ) -> subprocess.Popen:
    marks = Path(out).parent / f"{Path(out).name}.{tag}"
    return start(world, marks, ["train", *argv, "--output-dir", str(out)], nproc, pause_at,
                 torchrun_flags, signals)


def wait_for(predicate, proc: subprocess.Popen | None, timeout: float) -> bool:
    """True once ``predicate()`` holds; False if ``proc`` ended first or the time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            return predicate()
        time.sleep(0.02)
    return False


def signal_when_paused(proc: subprocess.Popen, sig: int, ranks: int = 1, target: str = "group",
                       times: int = 1, timeout: float = 120) -> bool:
    """Once every rank paused, ``sig`` (``times`` times) to: the run's process group ("group");
    it and every rank's own group ("all": Slurm signals every process of the step; torchrun's
    ranks run in sessions of their own); rank N alone ("rankN", then the others go on).
    False if no pause came."""
    marks = proc.marks
    pids = lambda: [int((marks / f"paused.{r}").read_text()) for r in range(ranks)]  # noqa: E731
    if not wait_for(lambda: all((marks / f"paused.{r}").exists() for r in range(ranks)), proc,
                    timeout):
        return False
    groups = [proc.pid] if target == "group" else [proc.pid, *pids()] if target == "all" else []
    for _ in range(times):
        if groups:
            for group in dict.fromkeys(groups):
                os.killpg(group, sig)
        else:
            os.kill(pids()[int(target.removeprefix("rank"))], sig)
        time.sleep(0.2)
    if not groups:
        wait_for(lambda: (marks / f"seen.{target.removeprefix('rank')}").exists(), proc, 30)
        (marks / "go").touch()
    return True


def finish(proc: subprocess.Popen, timeout: float = 180, ranks: int = 0) -> Outcome:
    """Waits for the run (killing its group after ``timeout``: code None) and, under torchrun
    (``ranks`` > 0), for its ranks' exit files (ranks may outlive a dead launcher), and reads
    its output."""
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        code = None
    marks = proc.marks
    if ranks and any((marks / f"paused.{r}").exists() for r in range(ranks)):
        wait_for(lambda: all((marks / f"exit.{r}").exists() for r in range(ranks)), None, 60)
    for f in proc.logs:
        f.close()
    codes = {r: int((marks / f"exit.{r}").read_text()) for r in range(max(ranks, 1))
             if (marks / f"exit.{r}").exists()}
    return Outcome(code, (marks / "stdout").read_text(), (marks / "stderr").read_text(), codes)


def run_signalled(world, out: Path, argv: list[str], sig: int, nproc: int = 0,
                  target: str = "group", times: int = 1, torchrun_flags: tuple = ()) -> Outcome:
    """A training run of ``argv`` paused at PAUSE_AT, signalled, and its outcome."""
    proc = start_train(world, out, argv, nproc, torchrun_flags=torchrun_flags,
                       signals=times if target != "all" else 1)
    if not signal_when_paused(proc, sig, max(nproc, 1), target, times):
        done = finish(proc, ranks=nproc)
        raise AssertionError(f"the run never paused (exit {done.code}): {done.err[-3000:]}")
    return finish(proc, ranks=nproc)


def latest_state(out: Path) -> dict | None:
    """The run's ``_latest.pt`` read with weights_only=True, or None when absent."""
    import torch

    path = Path(out) / "baseline_seed42_latest.pt"
    return torch.load(path, weights_only=True) if path.is_file() else None


# --- the table -------------------------------------------------------------------------------

def _train_row(world, tmp: Path, launcher: str, loader: str, sig: signal.Signals) -> str:
    nproc = 0 if launcher == "plain" else 2
    out = tmp / f"{launcher}-{loader}-{sig.name}"
    done = run_signalled(world, out, FLAGS + loader_flags(loader, nproc), sig, nproc,
                         torchrun_flags=WITH_USR1 if launcher.endswith("+usr1") else ())
    state = latest_state(out)
    saved = ("none" if state is None else f"epoch {state['run']['epoch']} + "
             f"{state['run']['samples_in_epoch']} samples (step {state['run']['step']})")
    stop = [x for x in done.out.splitlines() if x.startswith("stopped by")]
    said = stop[-1].split(";")[0] if stop else ""
    error = done.error_line() if not stop or done.code else ""
    ranks = ", ".join(f"{c}" for _, c in sorted(done.ranks.items())) or "-"
    return (f"| {launcher} | {loader} | {sig.name} | {done.code} | {ranks} | "
            f"{'; '.join(x for x in (said, error) if x)} | {saved} |")


def _script_row(root: Path, tmp: Path, sig: signal.Signals) -> str:
    out = tmp / f"extract-{sig.name}"
    args = ["script", "extract_frames", "--dataset-root", str(root), "--out", str(out),
            "--resolution", "0", "--workers", "2"]
    proc = start(tmp, out.with_suffix(".run"), args, pause_at=2)
    signal_when_paused(proc, sig)
    done = finish(proc)
    files = sorted((out / "train").glob("sample_*.npz"))
    again = finish(start(tmp, out.with_suffix(".again"), args))
    said = [x for x in done.out.splitlines() if x.startswith("stopped")]
    return (f"| extract_frames (2 workers) | {sig.name} | {done.code} | "
            f"{(said[-1][:90] if said else done.error_line())} | {len(files)} whole, "
            f"{len(list((out / 'train').glob('.*tmp')))} temp | rerun: exit {again.code} |")


def table(argv: list[str]) -> int:
    import argparse
    import tempfile

    p = argparse.ArgumentParser(prog="python tests/signal_run.py table")
    p.add_argument("--loaders", default="torch,dali")
    p.add_argument("--launchers", default="plain,torchrun,torchrun+usr1")
    p.add_argument("--signals", default="SIGTERM,SIGINT,SIGUSR1")
    p.add_argument("--scripts", action="store_true", help="the extraction script's rows only")
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="signal-table-"))
    signals = [signal.Signals[name] for name in args.signals.split(",")]
    if args.scripts:
        import pai_layout

        pai_layout.build_copy(tmp, train=12)
        print("| script | signal | exit | what it said | files | rerun |\n|---|---|---|---|---|---|")
        for sig in signals:
            print(_script_row(tmp, tmp, sig), flush=True)
        return 0
    from distill.world.generate import generate_world

    generate_world(tmp / "world", 48, 16, 0, 64, workers=1)
    print("| launcher | loader | signal | exit | ranks' exit | what it said | _latest.pt |\n"
          "|---|---|---|---|---|---|---|", flush=True)
    for launcher in args.launchers.split(","):
        for loader in args.loaders.split(","):
            for sig in signals:
                print(_train_row(tmp / "world", tmp, launcher, loader, sig), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(table(sys.argv[2:]) if sys.argv[1] == "table" else _drive(sys.argv[1], sys.argv[2:]))
