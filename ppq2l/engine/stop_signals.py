"""Stopping a training run cleanly on SIGTERM (schedulers, `kill`) or Ctrl-C (SIGINT): the signal
is only remembered; the trainer stops at the next optimizer step, writes `latest.pth` there and
exits with status 128 + the signal number. A second Ctrl-C stops at once without saving."""
from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import torch

from ppq2l.engine.distributed import get_world_size, is_distributed

HANDLED = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """While active (a `with` block in the main thread), SIGTERM and SIGINT set `received`
    instead of killing the process."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in HANDLED:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now, without saving
        self.received = signum
        hint = "; press Ctrl-C again to stop at once without saving" if signum == signal.SIGINT else ""
        self.logger.warning("received %s: stopping after the current step and writing latest.pth%s",
                            signal.Signals(signum).name, hint)

    def requested(self, device: torch.device) -> int | None:
        """The signal to stop on, agreed by every rank (one rank's signal stops them all)."""
        if not is_distributed() or get_world_size() == 1:
            return self.received
        import torch.distributed as dist

        flag = torch.tensor([self.received or 0], dtype=torch.int64, device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item()) or None
