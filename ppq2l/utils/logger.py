"""The project's logger: one `ppq2l` logger printing to stderr (stdout carries only results, such
as the records of the predictors) and, when asked, to a file."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

LOGGER_NAME = "ppq2l"
_FORMAT = "[%(asctime)s] %(levelname)s %(message)s"


class CurrentStderrHandler(logging.StreamHandler):
    """A console handler writing to whatever `sys.stderr` is when a record is logged, so a caller
    that redirects or replaces stderr after the first message (a test's capture, an application
    embedding ppq2l) gets the messages there, not into the stream of when the handler was made."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler assigns it; the current stderr is always used
        pass


def get_logger() -> logging.Logger:
    """The `ppq2l` logger, with a console handler attached once."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(getattr(handler, "_ppq2l_console", False) for handler in logger.handlers):
        handler = CurrentStderrHandler()
        handler.setFormatter(logging.Formatter(_FORMAT, "%H:%M:%S"))
        handler._ppq2l_console = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def log_to_file(path: str | Path) -> logging.Logger:
    """Also append the `ppq2l` log to `path` (one file handler per path)."""
    logger = get_logger()
    path = Path(path).resolve()
    if not any(getattr(handler, "baseFilename", None) == str(path) for handler in logger.handlers):
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter(_FORMAT, "%Y-%m-%d %H:%M:%S"))
        logger.addHandler(handler)
    return logger


def progress(iterable, desc: str, leave: bool = False):
    """A tqdm bar that redraws often on a terminal and rarely in a log file or CI output."""
    from tqdm import tqdm

    interactive = sys.stderr.isatty()
    return tqdm(iterable, desc=desc, leave=leave, dynamic_ncols=True,
                mininterval=1.0 if interactive else 30.0)
