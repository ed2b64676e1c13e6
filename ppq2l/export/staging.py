"""An export is written into a hidden folder inside its target folder, checked there, and its files
are moved into place (one rename each) only when every check passed; a failed export leaves the
export already in the target as it was."""
from __future__ import annotations

import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from ppq2l.utils.atomic_write import OutputError, describe_os_error, process_alive

STAGING_PATTERN = re.compile(r"^\.export\.tmp(\d+)$")


class PromotionError(OutputError):
    """Moving the checked files into the target failed after some of them were moved."""


def staging_folder(target: Path) -> Path:
    """The hidden folder inside `target` where this process writes its export."""
    return target / f".export.tmp{os.getpid()}"


def remove_stale_staging(target: Path) -> list[Path]:
    """Delete the staging folders in `target` of exports that were killed (their process is
    gone); returns what was removed."""
    removed = []
    for entry in target.iterdir() if target.is_dir() else ():
        match = STAGING_PATTERN.match(entry.name)
        if match and entry.is_dir() and not process_alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)  # one that stays is harmless, it is hidden
            if not entry.exists():
                removed.append(entry)
    return removed


def promote(staging: Path, target: Path, last: Sequence[str]) -> list[Path]:
    """Move every file of `staging` into `target`, the names in `last` at the end in that order
    (the model last, so it never appears before its companions); returns the new paths."""
    files = sorted(path.name for path in staging.iterdir() if path.is_file())
    missing = [name for name in last if name not in files]
    if missing:
        raise OutputError(f"the export in {staging} lacks {', '.join(missing)}")
    order = [name for name in files if name not in last] + list(last)
    moved = []
    for name in order:
        try:
            os.replace(staging / name, target / name)
        except OSError as error:
            message = f"cannot move {name} into {target}: {describe_os_error(error)}"
            if moved:
                raise PromotionError(f"{message}; {', '.join(path.name for path in moved)} "
                                     f"already replaced, export again") from None
            raise OutputError(message) from None
        moved.append(target / name)
    return moved


@contextmanager
def staged_export(target: Path, last: Sequence[str]) -> Iterator[Path]:
    """Yield an empty staging folder inside `target`; when the block ends without an error its
    files are promoted into `target` (see `promote`), and the folder is removed either way."""
    remove_stale_staging(target)
    staging = staging_folder(target)
    if staging.exists():  # left by an earlier export of this very process
        shutil.rmtree(staging)
    try:
        staging.mkdir()
    except OSError as error:
        raise OutputError(f"cannot create {staging}: {describe_os_error(error)}") from None
    try:
        yield staging
        promote(staging, target, last)
    finally:
        # a folder that cannot be removed now is hidden and is removed by the next export
        shutil.rmtree(staging, ignore_errors=True)
