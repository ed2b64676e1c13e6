"""The files an inference command reads: one file, or every non-hidden file under a folder."""
from __future__ import annotations

import os
from pathlib import Path

from ppq2l.errors import ConfigError


def collect_image_files(source: str | os.PathLike, where: str) -> list[Path]:
    """`source` itself, or every non-hidden file under the folder `source`, sorted by path;
    `where` names the config key in errors. Non-images are kept: they get an error record."""
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise ConfigError(f"{where}: {source} is neither a file nor a folder")
    files = sorted(path for path in source.rglob("*")
                   if path.is_file() and not any(part.startswith(".")
                                                 for part in path.relative_to(source).parts))
    if not files:
        raise ConfigError(f"{where}: the folder {source} holds no files")
    return files
