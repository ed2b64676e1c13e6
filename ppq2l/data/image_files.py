"""The files an inference command reads: one file, or every non-hidden file under a folder, in
path order; and the bytes of one image file as the datasets read it."""
from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Iterator

from ppq2l.errors import ConfigError, DataError


def read_image_bytes(path: str | os.PathLike, source: str) -> bytes:
    """The bytes of the image file `path`, listed at `source`; a DataError naming both when it
    cannot be read."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise DataError(f"cannot read image {path} ({source}): {error.strerror or error}") from None


def _walk_sorted(folder: Path) -> Iterator[Path]:
    """Every non-hidden file under `folder` in the order of `sorted()` on their paths: a
    depth-first walk taking each folder's entries by name (a path sorts by its parts, so this is
    the same order). Only the names of the folders on the current branch are held, never the
    whole tree. Symbolic links to files are followed, links to folders are not entered."""
    try:
        with os.scandir(folder) as scan:
            entries = sorted((entry.name, entry.is_dir(follow_symlinks=False)) for entry in scan
                             if not entry.name.startswith("."))
    except OSError as error:
        raise ConfigError(f"cannot list the folder {folder}: {error.strerror or error}") from None
    for name, is_folder in entries:
        path = folder / name
        if is_folder:
            yield from _walk_sorted(path)
        elif path.is_file():
            yield path


def iter_image_files(source: str | os.PathLike, where: str) -> Iterator[Path]:
    """`source` itself, or the non-hidden files under the folder `source` in path order, read
    lazily; `where` names the config key in errors, which come before the first file is yielded
    (a missing source, an empty folder). Non-images are kept: they get an error record."""
    source = Path(source)
    if source.is_file():
        return iter([source])
    if not source.is_dir():
        raise ConfigError(f"{where}: {source} is neither a file nor a folder")
    files = _walk_sorted(source)
    first = next(files, None)
    if first is None:
        raise ConfigError(f"{where}: the folder {source} holds no files")
    return itertools.chain([first], files)


def collect_image_files(source: str | os.PathLike, where: str) -> list[Path]:
    """The files of `iter_image_files` as a list."""
    return list(iter_image_files(source, where))
