"""The class-name file (`<index> <name>` per line) that the converter writes and infer reads, and
the ones shipped with the package, named `builtin:NAME` (e.g. `builtin:coco80`)."""
from __future__ import annotations

import os
from pathlib import Path

from ppq2l.data.text_files import read_utf8_text
from ppq2l.errors import DataError

BUILTIN_PREFIX = "builtin:"
BUILTIN_FOLDER = Path(__file__).resolve().parent / "label_maps"


def builtin_label_maps() -> list[str]:
    """The names accepted after `builtin:`."""
    return sorted(path.stem for path in BUILTIN_FOLDER.glob("*.txt"))


def resolve_label_map_path(path: str | os.PathLike) -> Path:
    """`path` itself, or the package's file for `builtin:NAME` (a DataError lists the valid names)."""
    text = os.fspath(path)
    if not text.startswith(BUILTIN_PREFIX):
        return Path(path)
    name = text[len(BUILTIN_PREFIX):]
    if name not in builtin_label_maps():
        valid = ", ".join(BUILTIN_PREFIX + known for known in builtin_label_maps())
        raise DataError(f"class_id_map_file {text}: no such built-in label map; built in: {valid}")
    return BUILTIN_FOLDER / f"{name}.txt"


def read_label_map(path: str | os.PathLike, class_num: int | None = None,
                   delimiter: str = " ") -> list[str]:
    """Class names indexed 0..C-1 from lines `<index><delimiter><name>` (with the default
    delimiter, a space, names may contain spaces: the first one splits); `builtin:NAME` reads a
    label map shipped with the package."""
    path = resolve_label_map_path(path)
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
