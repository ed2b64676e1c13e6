"""Writing files so that a crash or a full disk never leaves a half-written file in place, and
checking output locations before the work that fills them starts.

Every file the project writes goes through `atomic_output`: the content goes to a hidden temporary
file beside the target (`.NAME.tmpPID`), is flushed to disk (fsync), then renamed over the target.
A run killed mid-write leaves only the temporary file, which `remove_stale_temporaries` deletes
the next time a run starts in that folder."""
from __future__ import annotations

import errno
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from ppq2l.errors import Ppq2lError

TEMPORARY_PATTERN = re.compile(r"^\..+\.tmp(\d+)$")

_OS_ERROR_WORDS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder",
    errno.ENOENT: "no such file or folder",
}


class OutputError(Ppq2lError):
    """An output location cannot be created or written (a file where a folder should be, a
    read-only file system, a full disk)."""


def describe_os_error(error: BaseException) -> str:
    """The cause of an OSError (or of torch's RuntimeError around one) in plain words."""
    number = getattr(error, "errno", None)
    if number in _OS_ERROR_WORDS:
        return _OS_ERROR_WORDS[number]
    text = str(error)
    # torch.save reports a failed write as "enforce fail at inline_container.cc ... (28 vs ...)"
    # or "unexpected pos"; the errno is lost, so look for its words.
    if "No space left" in text or "file write failed" in text or "unexpected pos" in text:
        return "no space left on device (the write stopped short)"
    strerror = getattr(error, "strerror", None)
    return (strerror or text or type(error).__name__).lower()


def temporary_path(path: str | os.PathLike) -> Path:
    """The hidden temporary file beside `path` that this process writes before the rename."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


@contextmanager
def atomic_output(path: str | os.PathLike, mode: str = "wb",
                  keep_previous: str | os.PathLike | None = None) -> Iterator[IO]:
    """Open a temporary file beside `path` for writing; when the block ends without an error the
    file is flushed, fsynced and renamed over `path` (the file it replaces first moves to
    `keep_previous` when given), otherwise it is removed and `path` is left as it was. A failed
    write (full disk, read-only folder) is an OutputError in words."""
    path = Path(path)
    temporary = temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if keep_previous is not None and path.exists():
            os.replace(path, keep_previous)
        os.replace(temporary, path)
    except OSError as error:
        raise write_failed(path, error) from None
    except RuntimeError as error:
        if "inline_container" not in str(error) and "file write failed" not in str(error):
            raise
        raise write_failed(path, error) from None
    finally:
        if temporary.exists() or temporary.is_symlink():
            temporary.unlink()


def write_failed(path: Path, error: BaseException) -> OutputError:
    """The OutputError for a failed write of `path`, saying whether an earlier file survives."""
    if path.is_dir():
        return OutputError(f"cannot write {path}: it is a folder")
    kept = "; the previous file is unchanged" if path.is_file() else ""
    return OutputError(f"cannot write {path}: {describe_os_error(error)}{kept}")


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` through `atomic_output`."""
    with atomic_output(path, "w") as handle:
        handle.write(text)
    return Path(path)


def process_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the `.NAME.tmpPID` files in `folder` left by a process that no longer runs (a run
    killed mid-write); returns what was removed."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = TEMPORARY_PATTERN.match(entry.name)
        if match and entry.is_file() and not process_alive(int(match.group(1))):
            entry.unlink()
            removed.append(entry)
    return removed


def _first_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _check_folder(path: Path, key: str, what: str) -> Path:
    """Create `path` (a folder) and write a probe file into it; errors name `key`."""
    if path.exists() and not path.is_dir():
        raise OutputError(f"{key}: {path} is a file, not a folder; choose another {what}")
    existing = _first_existing(path)
    if not existing.is_dir():
        raise OutputError(f"{key}: cannot create the folder {path}: {existing} is a file")
    probe = path / f".write_check{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as error:
        raise OutputError(f"{key}: cannot write into {path}: {describe_os_error(error)}") from None
    return path


def prepare_output_dir(value: object, key: str) -> Path:
    """The folder named by the config value `value` (at `key`), created and checked writable
    before any work starts: `~` is expanded; empty, a file, a path under a file, a read-only or
    full location are OutputErrors naming `key`."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise OutputError(f"{key} is empty; set it to a folder, e.g. -o {key}=./output/my_run")
    if not isinstance(value, (str, os.PathLike)):
        raise OutputError(f"{key} must be a folder path, got {value!r}")
    return _check_folder(Path(value).expanduser(), key, key)


def prepare_output_file(value: object, key: str) -> Path:
    """A file path the run will write at the end, checked before the work: `~` expanded, not a
    folder, its folder created and writable."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise OutputError(f"{key} is empty; give a file path")
    if not isinstance(value, (str, os.PathLike)):
        raise OutputError(f"{key} must be a file path, got {value!r}")
    path = Path(value).expanduser()
    if path.is_dir():
        raise OutputError(f"{key}: {path} is a folder; give the path of a file (inside it, "
                          f"for example)")
    _check_folder(path.parent, key, f"{key} (its folder is a file)")
    return path
