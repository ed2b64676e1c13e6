"""The output-folder rule of training: one run per folder.

A training run holds `Global.output_dir` with a lock file (`train.lock`: pid, host, start time)
while it trains. Before it builds anything it refuses a folder that
- another live run holds (its lock names a running process of this host, or another host),
- or that holds the files of an earlier run (`latest.pth`, `best_model.pth`, `metrics.jsonl`,
  `epoch_N.pth`), unless the run resumes from that folder's checkpoint
  (`Global.checkpoints=DIR/latest.pth`) or `Global.overwrite: true` asks to replace it, in which
  case the earlier run's files are deleted when the new run starts training.
A lock left by a process that died (SIGKILL, power loss) on this host is stale and is removed
with a warning; temporary files such a process left are removed too."""
from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path

from ppq2l.errors import ConfigError
from ppq2l.utils.atomic_write import process_alive, remove_stale_temporaries

LOCK_FILE = "train.lock"
# What a training run writes; an earlier run's copies are what Global.overwrite deletes.
RUN_FILES = ("latest.pth", "latest.prev.pth", "best_model.pth", "metrics.jsonl", "config.yaml")
RUN_FOLDERS = ("tensorboard",)
EPOCH_PATTERN = "epoch_*.pth"
# The files whose presence means "a run was here" (config.yaml or a log alone do not).
EVIDENCE = ("latest.pth", "latest.prev.pth", "best_model.pth", "metrics.jsonl")


def earlier_run_files(folder: Path) -> list[Path]:
    """The files of an earlier training run in `folder` (checkpoints and metrics)."""
    found = [folder / name for name in EVIDENCE if (folder / name).is_file()]
    return found + sorted(folder.glob(EPOCH_PATTERN))


def describe_earlier_run(folder: Path) -> str:
    """A short description of the run in `folder` from its metrics.jsonl (last epoch, best
    metric) and the checkpoint names."""
    names = ", ".join(path.name for path in earlier_run_files(folder))
    metrics = folder / "metrics.jsonl"
    if not metrics.is_file():
        return names
    records = []
    for line in metrics.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a killed run
    if not records:
        return names
    last = records[-1]
    return f"{names}; its metrics.jsonl reaches epoch {last.get('epoch')}"


def read_lock(path: Path) -> dict:
    """The owner recorded in a lock file ({} when it cannot be parsed)."""
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return owner if isinstance(owner, dict) else {}


def check_lock(folder: Path, logger: logging.Logger) -> None:
    """Refuse a folder held by a live run; remove a lock whose process has died."""
    path = folder / LOCK_FILE
    if not path.exists():
        return
    owner = read_lock(path)
    pid, host = owner.get("pid"), owner.get("host")
    started = owner.get("started", "an unknown time")
    if host == socket.gethostname() and isinstance(pid, int) and not process_alive(pid):
        logger.warning("removing the stale lock %s of training process %d (started %s), which "
                       "no longer runs", path, pid, started)
        path.unlink()
        return
    if host == socket.gethostname() and isinstance(pid, int):
        raise ConfigError(f"another training run (pid {pid}, started {started}) is writing to "
                          f"{folder}; wait for it to finish or choose another Global.output_dir")
    raise ConfigError(f"{path} says a training run (pid {pid}, host {host}, started {started}) is "
                      f"writing to {folder}; if no run is writing there any more, delete that file")


def replaces_earlier_run(folder: Path, resume_from: str | None) -> bool:
    """Whether `folder` holds an earlier run's files that this run does not continue."""
    resumes_here = (resume_from is not None
                    and Path(resume_from).expanduser().resolve().parent == folder.resolve())
    return bool(earlier_run_files(folder)) and not resumes_here


def check_output_dir(folder: Path, resume_from: str | None, overwrite: bool,
                     logger: logging.Logger) -> None:
    """Apply the one-run-per-folder rule to `folder` before anything is built."""
    check_lock(folder, logger)
    if replaces_earlier_run(folder, resume_from) and not overwrite:
        raise ConfigError(
            f"Global.output_dir {folder} already holds a training run ("
            f"{describe_earlier_run(folder)}). Resume it with "
            f"-o Global.checkpoints={folder / 'latest.pth'}, train into another folder "
            f"(-o Global.output_dir=...), or replace it with -o Global.overwrite=True")


def start_training(folder: Path, resume_from: str | None, overwrite: bool,
                   logger: logging.Logger) -> Path:
    """When training starts: take the lock, delete the earlier run's files under
    Global.overwrite (only now, so a run that fails while being built loses nothing) and the
    temporary files a killed run left. Returns the lock path for `release_lock`."""
    lock = write_lock(folder)
    if overwrite and replaces_earlier_run(folder, resume_from):
        delete_run_files(folder, logger)
    for stale in remove_stale_temporaries(folder):
        logger.warning("removed %s, left by a run killed while writing it", stale)
    return lock


def delete_run_files(folder: Path, logger: logging.Logger) -> None:
    """Delete an earlier run's files (Global.overwrite); train.log, which this run has begun to
    append to, stays."""
    doomed = [folder / name for name in RUN_FILES if (folder / name).is_file()]
    doomed += sorted(folder.glob(EPOCH_PATTERN))
    for path in doomed:
        path.unlink()
    for name in RUN_FOLDERS:
        if (folder / name).is_dir():
            shutil.rmtree(folder / name)
            doomed.append(folder / name)
    logger.warning("Global.overwrite: deleted the earlier run's %s in %s",
                   ", ".join(path.name for path in doomed), folder)


def write_lock(folder: Path) -> Path:
    """Create the lock file exclusively (a run starting at the same moment loses the race)."""
    path = folder / LOCK_FILE
    owner = {"pid": os.getpid(), "host": socket.gethostname(),
             "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        raise ConfigError(f"another training run started writing to {folder} just now "
                          f"({LOCK_FILE} appeared); choose another Global.output_dir") from None
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(owner, handle)
    return path


def release_lock(path: Path | None) -> None:
    """Remove the lock written by this process (nothing if another process owns it now)."""
    if path is not None and path.exists() and read_lock(path).get("pid") == os.getpid():
        path.unlink()
