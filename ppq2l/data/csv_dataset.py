"""A dataset from a CSV file, the easiest format to write for one's own images. Two layouts:

- names: `path,cat;dog` — the second column lists class names separated by `;` (an empty cell
  means no class); `class_id_map_file` (`<index> <name>` per line) gives the class order. A named
  class is positive and every other one negative, except: `?name` marks that class unknown,
  `?*` makes every class the row does not name unknown instead of negative, and `-name` marks a
  class negative (a verified absence, useful with `?*`). A cell that is a class name as written
  is always that class, so names that start with `?` or `-` still work.
- multi-hot: `path,0,1,-1,...` — exactly `class_num` columns of 1, 0 or -1 (unknown).

A first row whose first cell is `path` or `image` is a header and is skipped. The labels are kept
sparse (the classes that differ from the row's default), so a CSV over thousands of classes with a
few labels per image, such as the OpenImages converter writes, fits in memory.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from ppq2l.data.label_map import read_label_map
from ppq2l.data.label_store import SparseLabels, SparseLabelsBuilder
from ppq2l.data.list_dataset import LABEL_VALUES, UNKNOWN, MultiLabelImageDataset, check_class_num
from ppq2l.data.text_files import read_utf8_text
from ppq2l.data.transforms import Compose
from ppq2l.errors import DataError
from ppq2l.registry import DATASETS

HEADER_NAMES = ("path", "image", "image_path", "filename", "file_name")
NAME_SEPARATOR = ";"
ALL_OTHERS_UNKNOWN = "?*"
STATE_PREFIXES = {"?": UNKNOWN, "-": 0}
STATE_WORDS = {1: "positive", 0: "negative", UNKNOWN: "unknown"}


def parse_name_cell(cell: str, index: dict[str, int], class_names: list[str],
                    where: str) -> tuple[int, dict[int, int]]:
    """`(default state, {class: state})` of one `name;?name;-name;?*` cell."""
    default, explicit = 0, {}
    for token in filter(None, (part.strip() for part in cell.split(NAME_SEPARATOR))):
        if token == ALL_OTHERS_UNKNOWN and token not in index:
            default = UNKNOWN
            continue
        name, state = token, 1
        if token not in index and token[0] in STATE_PREFIXES:
            name, state = token[1:].strip(), STATE_PREFIXES[token[0]]
        if name not in index:
            raise DataError(f"{where}: unknown class {name!r}; classes are {', '.join(class_names)} "
                            f"(a name, ?name for unknown, -name for negative, {ALL_OTHERS_UNKNOWN} "
                            "for every other class unknown)")
        previous = explicit.setdefault(index[name], state)
        if previous != state:
            raise DataError(f"{where}: class {name!r} is given as both {STATE_WORDS[previous]} and "
                            f"{STATE_WORDS[state]}; keep one")
    return default, explicit


def read_csv_labels(csv_path: str | os.PathLike, class_num: int,
                    class_names: list[str] | None) -> tuple[list[str], SparseLabels, list[int]]:
    """`(paths, labels, line numbers)` from either layout; a DataError names the file, line and
    what does not fit."""
    path = Path(csv_path)
    if not path.is_file():
        raise DataError(f"csv_path {path} does not exist")
    index = {name: position for position, name in enumerate(class_names or [])}
    paths, labels, numbers = [], SparseLabelsBuilder(class_num), []
    # newline="": the csv module handles line ends itself (quoted cells may hold them)
    with io.StringIO(read_utf8_text(path, "csv_path"), newline="") as handle:
        for number, cells in enumerate(csv.reader(handle), start=1):
            cells = [cell.strip() for cell in cells]
            if not cells or not any(cells):
                continue
            if number == 1 and cells[0].lower() in HEADER_NAMES:
                continue
            where = f"{path}, line {number}"
            if len(cells) == class_num + 1 and all(cell in LABEL_VALUES for cell in cells[1:]):
                labels.add(0, {column: LABEL_VALUES[cell] for column, cell in enumerate(cells[1:])})
            elif len(cells) == 2 and class_names is not None:
                labels.add(*parse_name_cell(cells[1], index, class_names, where))
            else:
                layout = ("'path,name1;name2' (with class_id_map_file) or " if class_names is not None
                          else "")
                raise DataError(f"{where}: expected {layout}'path' followed by class_num={class_num} "
                                f"columns of 0, 1 or -1 (unknown), got {len(cells)} cells: {cells!r}")
            paths.append(cells[0])
            numbers.append(number)
    if not paths:
        raise DataError(f"{path} has no samples")
    return paths, labels.build(), numbers


@DATASETS.register
class CsvDataset(MultiLabelImageDataset):
    """Images under `image_root` listed in `csv_path` (see the module doc for the two layouts)."""

    def __init__(self, image_root: str | os.PathLike, csv_path: str | os.PathLike,
                 transform_ops: list[dict] | Compose | None, class_num: int,
                 class_id_map_file: str | os.PathLike | None = None,
                 skip_bad_images: bool = False) -> None:
        class_num = check_class_num(class_num)
        names = read_label_map(class_id_map_file, class_num) if class_id_map_file else None
        relative, labels, numbers = read_csv_labels(csv_path, class_num, names)
        self.image_root, self.csv_path = str(image_root), str(csv_path)
        super().__init__([os.path.join(self.image_root, name) for name in relative], labels,
                         [f"line {number} of {csv_path}" for number in numbers], transform_ops,
                         skip_bad_images, image_root=image_root)
