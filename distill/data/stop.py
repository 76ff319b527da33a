"""Stop signals (SIGTERM, SIGINT, SIGUSR1 by default; ``--stop-signals``): one way to stop, whatever
process of a run they reach. Clusters signal every process of a job (Slurm: all processes of the
step; ``timeout`` and launch wrappers: the process group; a terminal's Ctrl-C: the foreground
group), so loader workers, DALI reader processes and the scripts' pools get them too.

- The main process (each rank's, under torchrun) handles them (``StopRequest``): the first asks
  for a stop at the next safe point (the trainer: the next step boundary, where it saves
  ``_latest.pt`` and exits 0; a data script: once the files in flight are whole); a second is
  ignored (a launcher that forwards what the cluster also sent to every process delivers two);
  a third exits at once (``StopNow``; an atomic write in progress leaves the old file).
- Child processes do not act on them: ``shielded()`` blocks them in the parent while it starts
  children, which inherit the blocked mask (fork and spawn alike; what arrives meanwhile waits
  for the parent), and ``ignore_in_child`` (a worker's initializer) keeps them blocked and
  takes them on a thread: one sent by the child's parent (``Process.terminate()``, a pool's or
  DataLoader's shutdown) still ends the child; any other sender's is dropped.

Standard library only: DALI's reader processes and spawned pool workers import it.
"""
from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager

DEFAULT_STOP_SIGNALS = "SIGTERM,SIGINT,SIGUSR1"
_stop_signals: tuple[signal.Signals, ...] = ()  # this process's, set by StopRequest
_active: list["StopRequest"] = []  # the StopRequests entered, innermost last


def parse_signals(text: str) -> tuple[signal.Signals, ...]:
    """``"SIGTERM,INT,10"`` -> the signals, in order, once each; ValueError (one line) for an
    unknown one, one that cannot be caught (SIGKILL, SIGSTOP) or one that means something else
    (SIGCHLD, the faults)."""
    found = []
    for item in (part.strip() for part in str(text).split(",")):
        name = item.upper()
        try:
            sig = (signal.Signals(int(item)) if item.isdigit() else
                   signal.Signals[name if name.startswith("SIG") else "SIG" + name])
        except (KeyError, ValueError):
            raise ValueError(f"unknown signal {item!r} (names such as SIGTERM or TERM, or "
                             "numbers, comma-separated)") from None
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            raise ValueError(f"{sig.name} cannot be caught; it cannot stop a run cleanly")
        if sig in (signal.SIGCHLD, signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL):
            raise ValueError(f"{sig.name} reports a child or a fault; it cannot be a stop signal")
        if sig not in found:
            found.append(sig)
    return tuple(found)


def stop_signals() -> tuple[signal.Signals, ...]:
    """The stop signals of this process (those of the ``StopRequest`` entered, else the
    defaults)."""
    return _stop_signals or parse_signals(DEFAULT_STOP_SIGNALS)


def stop_requested() -> str:
    """The name of the signal that asked the innermost entered ``StopRequest`` to stop, or ""
    (the data scripts' loops check it at their safe points)."""
    return _active[-1].signal_name if _active and _active[-1].requested else ""


class Stopped(Exception):
    """A stop signal ended the work at a safe point; the message says what is done and how to
    go on (the scripts print it and exit 0)."""


class StopNow(BaseException):
    """A third stop signal: leave at once, without saving (not an ``Exception``, so nothing on
    the way catches it; an atomic write in progress removes its temp file)."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"a third {signal.Signals(signum).name}: stopped at once, without "
                         "saving; the files written before are intact")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopRequest:
    """Turns the first stop signal into ``requested = True`` (the loop checks a Python bool, no
    device sync) and ``signal_name``; ignores the second; the third raises ``StopNow``.

    On leaving, the previous handlers come back, except with ``linger`` after a stop: then the
    signals stay ignored (a command line on its way out, whose late copies of the signal, e.g.
    forwarded by a launcher, must not kill a process that has saved)."""

    def __init__(self, signals=None, linger: bool = False):
        self.signals = tuple(signals or parse_signals(DEFAULT_STOP_SIGNALS))
        self.linger = linger
        self.requested = False
        self.signal_name = ""
        self.received = 0
        self._previous = {}
        self._outer: tuple = ()

    def _handle(self, signum, frame):
        self.received += 1
        if self.received >= 3:
            raise StopNow(signum)
        if not self.requested:
            self.requested = True
            self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> "StopRequest":
        global _stop_signals
        self._outer, _stop_signals = _stop_signals, self.signals
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        _active.append(self)
        return self

    def __exit__(self, *exc) -> None:
        global _stop_signals
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_IGN if self.linger and self.requested else handler)
        _stop_signals = self._outer
        _active.remove(self)


@contextmanager
def shielded(signals=None):
    """Child processes started inside do not receive the stop signals (they inherit them
    blocked); in this thread they wait until the block ends."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, signals or stop_signals())
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def ignore_in_child(signals=None, *_) -> None:
    """In a child process (a DataLoader's ``worker_init_fn``, a pool's initializer): the stop
    signals no longer stop it, except those its parent sends. Blocks them in this thread (and
    the threads it starts) and waits for them on a daemon thread."""
    sigs = tuple(signals or stop_signals())
    signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    threading.Thread(target=_parent_only, args=(sigs, os.getppid()), daemon=True,
                     name="distill-stop-signals").start()


def _parent_only(signals, parent: int) -> None:
    while True:
        info = signal.sigwaitinfo(signals)
        if info.si_pid == parent:  # terminate() by the process that started us: as before
            os._exit(128 + info.si_signo)


def worker_init(worker_id: int) -> None:
    """A DataLoader's ``worker_init_fn``: ``ignore_in_child`` with this process's signals."""
    ignore_in_child()
