"""DataLoader worker processes: how their failures reach the user, their signals, their end.

- A Ppq2lError raised while a sample or batch is made becomes a `LoadFailure` record that travels
  to the main process in place of the batch, where `SeededDataLoader` raises it again: the user
  sees the one clean `error:` line the main process would give, not torch's "Caught DataError in
  DataLoader worker process 0 ... Original Traceback". With `num_workers: 0` the record takes the
  same path, so both behave alike.
- A killed worker (the out-of-memory killer) is one sentence saying why and what to change.
- Workers ignore SIGTERM and SIGINT: the main process handles them (saving a checkpoint) and then
  stops them.
  Since multiprocessing ends leftover workers at exit with SIGTERM and then waits for them, every
  live worker is told to stop before that (`track_workers`), or the exit would wait forever.
"""
from __future__ import annotations

import atexit
import re
import signal
import weakref
from typing import Any

from ppq2l.errors import DataError, Ppq2lError

_KILLED = re.compile(r"DataLoader worker \(pid (\d+)\) is killed by signal: (.+?)\.?\s*$")
_EXIT_CODE = re.compile(r"DataLoader worker \(pid (\d+)\) exited unexpectedly with exit code (-?\d+)")
_EXITED = re.compile(r"DataLoader worker \(pid\(s\) ([\d, ]+)\) exited unexpectedly")


class LoadFailure:
    """A Ppq2lError (its type and message) raised while loading, carried as a batch; picklable, so
    it crosses from a worker process like any batch."""

    def __init__(self, error: Ppq2lError) -> None:
        self.error_type, self.message = type(error), str(error)

    def reraise(self) -> None:
        """Raise the original error type with the original message (no worker traceback)."""
        raise self.error_type(self.message) from None


class WorkerDiedError(DataError):
    """A DataLoader worker process died (killed by a signal such as the out-of-memory killer's)."""


def ignore_stop_signals(worker_id: int) -> None:
    """worker_init_fn: workers ignore SIGTERM and SIGINT, so that a scheduler signalling the whole
    process group, or Ctrl-C in a terminal (which reaches every process of the foreground group),
    leaves them to the main process, which saves a checkpoint and then shuts them down."""
    # Nothing else here: cv2.setNumThreads in a forked worker can deadlock on the parent's
    # OpenCV thread-pool state, and the workers need no seeding (see ppq2l/data/dataloader.py).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


_LIVE_ITERATORS: weakref.WeakSet = weakref.WeakSet()
_EXIT_HOOK_REGISTERED = False


def track_workers(iterator: Any) -> None:
    """Have the workers of a torch DataLoader iterator stopped when the interpreter exits."""
    if not hasattr(iterator, "_shutdown_workers"):  # num_workers: 0, no processes
        return
    global _EXIT_HOOK_REGISTERED
    if not _EXIT_HOOK_REGISTERED:
        # registered after torch's and multiprocessing's own exit hooks, so it runs before them
        atexit.register(stop_live_workers)
        _EXIT_HOOK_REGISTERED = True
    _LIVE_ITERATORS.add(iterator)


def stop_workers(iterator: Any) -> None:
    """Stop the worker processes of a torch DataLoader iterator (none: nothing to do); each
    finishes its sample, reads the stop request and exits."""
    if hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()


def stop_live_workers() -> None:
    """Stop the workers of every tracked iterator still alive (persistent ones, or those a
    traceback keeps)."""
    for iterator in list(_LIVE_ITERATORS):
        stop_workers(iterator)


def _signal_name(description: str) -> str:
    """'SIGKILL' for strsignal's 'Killed', or the description itself when no signal matches."""
    for number in signal.Signals:
        if signal.strsignal(number) == description:
            return number.name
    return description


def _advice(where: str, num_workers: int) -> str:
    fewer = f"below {num_workers}" if num_workers > 1 else "to 0"
    return (f"set {where}.loader.num_workers {fewer} (each worker holds its own copy of the "
            f"data pipeline) or lower {where}.sampler.batch_size")


def describe_worker_death(error: BaseException, where: str, num_workers: int) -> WorkerDiedError | None:
    """The WorkerDiedError for torch's RuntimeError about a dead worker (looked for in the error
    and the errors it was raised from), or None when `error` is about something else."""
    chain: list[Any] = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    texts = [str(item) for item in chain if isinstance(item, RuntimeError)]
    for text in texts:
        match = _KILLED.search(text)
        if match:
            pid, name = match.group(1), _signal_name(match.group(2))
            cause = {"SIGKILL": ", probably by the out-of-memory killer",
                     "SIGBUS": ", probably for lack of shared memory (/dev/shm)"}.get(name, "")
            return WorkerDiedError(f"{where}: a DataLoader worker (pid {pid}) was killed by signal "
                                   f"{name}{cause}; {_advice(where, num_workers)}")
    for text in texts:
        match = _EXIT_CODE.search(text) or _EXITED.search(text)
        if match:
            code = f" with exit code {match.group(2)}" if match.re is _EXIT_CODE else ""
            return WorkerDiedError(f"{where}: a DataLoader worker (pid {match.group(1)}) exited "
                                   f"unexpectedly{code}, probably killed for lack of memory; "
                                   f"{_advice(where, num_workers)}")
    return None
