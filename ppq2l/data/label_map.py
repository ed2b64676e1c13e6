"""The class-name file (`<index> <name>` per line) that the converter writes and infer reads."""
from __future__ import annotations

import os
from pathlib import Path

from ppq2l.data.text_files import read_utf8_text
from ppq2l.errors import DataError


def read_label_map(path: str | os.PathLike, class_num: int | None = None,
                   delimiter: str = " ") -> list[str]:
    """Class names indexed 0..C-1 from lines `<index><delimiter><name>` (with the default
    delimiter, a space, names may contain spaces: the first one splits)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"class_id_map_file not found: {path}")
    names: dict[int, str] = {}
    for number, line in enumerate(read_utf8_text(path, "class_id_map_file").splitlines(), start=1):
        if not line.strip():
            continue
        index, found, name = line.strip().partition(delimiter)
        index = index.strip()
        if not found or not index.isdigit() or not name.strip():
            raise DataError(f"{path}:{number}: expected '<index>{delimiter}<name>', got {line!r}")
        if int(index) in names:
            raise DataError(f"{path}:{number}: index {index} appears twice")
        names[int(index)] = name.strip()
    expected = class_num if class_num is not None else len(names)
    if sorted(names) != list(range(expected)):
        raise DataError(f"{path}: indices must be 0..{expected - 1} once each, found "
                        f"{len(names)} entries ({min(names, default=None)}..{max(names, default=None)})")
    return [names[index] for index in range(expected)]
