"""A dataset from a CSV file, the easiest format to write for one's own images. Two layouts:

- names: `path,cat;dog` — the second column lists class names separated by `;` (an empty cell
  means no class); `class_id_map_file` (`<index> <name>` per line) gives the class order;
- multi-hot: `path,0,1,0,...` — exactly `class_num` 0/1 columns after the path.

A first row whose first cell is `path` or `image` is a header and is skipped.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from ppq2l.data.label_map import read_label_map
from ppq2l.data.list_dataset import LABEL_VALUES, MultiLabelImageDataset, check_class_num
from ppq2l.data.text_files import read_utf8_text
from ppq2l.data.transforms import Compose
from ppq2l.errors import DataError
from ppq2l.registry import DATASETS

HEADER_NAMES = ("path", "image", "image_path", "filename", "file_name")
NAME_SEPARATOR = ";"


def read_csv_labels(csv_path: str | os.PathLike, class_num: int,
                    class_names: list[str] | None) -> tuple[list[str], np.ndarray, list[int]]:
    """`(paths, labels uint8 [N, C], line numbers)` from either layout; a DataError names the
    file, line and what does not fit."""
    path = Path(csv_path)
    if not path.is_file():
        raise DataError(f"csv_path {path} does not exist")
    index = {name: position for position, name in enumerate(class_names or [])}
    paths, rows, numbers = [], [], []
    # newline="": the csv module handles line ends itself (quoted cells may hold them)
    with io.StringIO(read_utf8_text(path, "csv_path"), newline="") as handle:
        for number, cells in enumerate(csv.reader(handle), start=1):
            cells = [cell.strip() for cell in cells]
            if not cells or not any(cells):
                continue
            if number == 1 and cells[0].lower() in HEADER_NAMES:
                continue
            where = f"{path}, line {number}"
            label = np.zeros(class_num, dtype=np.uint8)
            if len(cells) == class_num + 1 and all(cell in LABEL_VALUES for cell in cells[1:]):
                label[:] = [LABEL_VALUES[cell] for cell in cells[1:]]
            elif len(cells) == 2 and class_names is not None:
                for name in filter(None, (part.strip() for part in cells[1].split(NAME_SEPARATOR))):
                    if name not in index:
                        raise DataError(f"{where}: unknown class {name!r}; classes are "
                                        f"{', '.join(class_names)}")
                    label[index[name]] = 1
            else:
                layout = ("'path,name1;name2' (with class_id_map_file) or " if class_names is not None
                          else "")
                raise DataError(f"{where}: expected {layout}'path' followed by class_num={class_num} "
                                f"0/1 columns, got {len(cells)} cells: {cells!r}")
            paths.append(cells[0])
            rows.append(label)
            numbers.append(number)
    if not paths:
        raise DataError(f"{path} has no samples")
    return paths, np.stack(rows), numbers


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
