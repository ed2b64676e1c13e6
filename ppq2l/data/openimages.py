"""OpenImages V6/V7 image-level labels from the official files: the class descriptions
(`oidv7-class-descriptions.csv`, `LabelName,DisplayName`; the old headerless `class-descriptions.csv`
too) and a human-verified labels file (`oidv7-train-annotations-human-imagelabels.csv` and the
validation and test ones: `ImageID,Source,LabelName,Confidence`). Confidence 1 is a positive, 0 a
verified negative, and every class an image has no row for is unknown (-1): OpenImages verifies a
few labels per image and leaves the rest open. `classes` narrows the classes to a subset in its
order, such as the trainable set (`oidv7-classes-trainable.txt`, one MID per line).

The labels files are GBs: they are streamed row by row and only the labels of the chosen classes
are kept, about 30 bytes each while grouping; the result is a SparseLabels table. A class given
both 1 and 0 for one image (two sources disagreeing) is unknown there, and counted."""
from __future__ import annotations

import csv
import io
import os
from array import array
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from ppq2l.data.label_store import SparseLabels
from ppq2l.data.label_table import LabelTable, require_samples
from ppq2l.data.list_dataset import UNKNOWN, MultiLabelImageDataset
from ppq2l.data.text_files import read_utf8_text
from ppq2l.data.transforms import Compose
from ppq2l.errors import ConfigError, DataError
from ppq2l.registry import DATASETS

LABEL_COLUMNS = ("ImageID", "LabelName", "Confidence")
CONFIDENCES = {"1": 1, "0": 0, "1.0": 1, "0.0": 0}
IMAGE_ID_LENGTH = 16
PROGRESS_EVERY = 1 << 16  # rows between progress-bar updates


class OpenImagesClasses(NamedTuple):
    """The chosen classes: MIDs (the `LabelName` column), display names, and every MID described."""

    mids: list[str]
    names: list[str]
    described: set[str]


def read_classes(descriptions: str | os.PathLike, subset: str | os.PathLike | None = None) -> OpenImagesClasses:
    """Classes from the descriptions file, narrowed to (and ordered as) `subset` when given."""
    path = Path(descriptions)
    if not path.is_file():
        raise DataError(f"{path} not found (the class descriptions, oidv7-class-descriptions.csv: "
                        "LabelName,DisplayName rows)")
    rows = list(csv.reader(io.StringIO(read_utf8_text(path, "class descriptions"), newline="")))
    if rows and [cell.strip() for cell in rows[0][:2]] == ["LabelName", "DisplayName"]:
        rows = rows[1:]
    names = {}
    for number, row in enumerate(rows, start=1):
        if not row or not any(row):
            continue
        if len(row) < 2 or not row[0].startswith("/m/") and not row[0].startswith("/g/"):
            raise DataError(f"{path}, row {number}: expected 'LabelName,DisplayName' such as "
                            f"'/m/011k07,Tortoise', got {row!r}")
        names[row[0].strip()] = row[1].strip()
    if subset is None:
        return OpenImagesClasses(list(names), list(names.values()), set(names))
    subset_path = Path(subset)
    if not subset_path.is_file():
        raise DataError(f"{subset_path} not found (the class subset: one LabelName per line, as in "
                        "oidv7-classes-trainable.txt)")
    mids = []
    for number, line in enumerate(read_utf8_text(subset_path, "class subset").splitlines(), start=1):
        mid = line.strip().split(",")[0].strip()
        if not mid:
            continue
        if mid not in names:
            raise DataError(f"{subset_path}, line {number}: {mid!r} is not in the class descriptions {path}")
        mids.append(mid)
    if len(set(mids)) != len(mids):
        raise DataError(f"{subset_path} lists a class twice")
    return OpenImagesClasses(mids, [names[mid] for mid in mids], set(names))


def header_positions(header: list[str], path: Path) -> list[int]:
    """Where ImageID, LabelName and Confidence are in the labels file's header."""
    cells = [cell.strip() for cell in header]
    missing = [name for name in LABEL_COLUMNS if name not in cells]
    if missing:
        raise DataError(f"{path}: the first row {header!r} is not the header of an OpenImages "
                        f"image-level labels file (expected ImageID,Source,LabelName,Confidence)")
    return [cells.index(name) for name in LABEL_COLUMNS]


def stream_labels(path: Path, class_index: dict[str, int], described: set[str]) -> tuple[np.ndarray, ...]:
    """(image id, class, value) of every row of a chosen class, read row by row."""
    images, classes, values = array("Q"), array("i"), array("b")
    size = path.stat().st_size
    number = 0
    with open(path, "rb") as raw, tqdm(total=size, unit="B", unit_scale=True, desc=path.name) as bar:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        reader = csv.reader(text)
        try:
            at_image, at_label, at_confidence = header_positions(next(reader, []), path)
            for number, row in enumerate(reader, start=2):
                if number % PROGRESS_EVERY == 0:
                    bar.update(raw.tell() - bar.n)
                if not row:
                    continue
                try:
                    mid, image, confidence = row[at_label], row[at_image], row[at_confidence]
                except IndexError:
                    raise DataError(f"{path}, line {number}: expected ImageID,Source,LabelName,Confidence, "
                                    f"got {row!r}") from None
                position = class_index.get(mid)
                if position is None:
                    if mid not in described:
                        raise DataError(f"{path}, line {number}: class {mid!r} is not in the class "
                                        "descriptions; are the two files from the same OpenImages version?")
                    continue
                if confidence not in CONFIDENCES:
                    raise DataError(f"{path}, line {number}: confidence {confidence!r} is not 1 or 0; "
                                    "use a human-verified labels file (*-human-imagelabels*.csv)")
                if len(image) != IMAGE_ID_LENGTH:
                    raise DataError(f"{path}, line {number}: {image!r} is not an OpenImages image id "
                                    f"({IMAGE_ID_LENGTH} hexadecimal digits)")
                try:
                    images.append(int(image, 16))
                except ValueError:
                    raise DataError(f"{path}, line {number}: {image!r} is not an OpenImages image id "
                                    f"({IMAGE_ID_LENGTH} hexadecimal digits)") from None
                classes.append(position)
                values.append(CONFIDENCES[confidence])
        except UnicodeDecodeError:
            raise DataError(f"{path}, near line {number + 1}: bytes that are not UTF-8 text") from None
        bar.update(size - bar.n)
    return (np.frombuffer(images, np.uint64), np.frombuffer(classes, np.int32),
            np.frombuffer(values, np.int8))


def group_labels(images: np.ndarray, classes: np.ndarray, values: np.ndarray,
                 class_num: int) -> tuple[np.ndarray, SparseLabels, int]:
    """Sorted unique image ids, their labels (default unknown) and how many (image, class) pairs
    had conflicting values (made unknown)."""
    if not len(images):
        return images, SparseLabels(class_num, np.zeros(0), np.zeros(1), np.zeros(0), np.zeros(0)), 0
    order = np.lexsort((classes, images))
    images, classes, values = images[order], classes[order], values[order]
    starts = np.flatnonzero(np.r_[True, (images[1:] != images[:-1]) | (classes[1:] != classes[:-1])])
    lowest, highest = np.minimum.reduceat(values, starts), np.maximum.reduceat(values, starts)
    images, classes = images[starts], classes[starts]
    values = np.where(lowest == highest, lowest, UNKNOWN).astype(np.int8)
    known = values != UNKNOWN
    conflicts = int((~known).sum())
    image_ids, first = np.unique(images, return_index=True)
    indptr = np.r_[0, np.cumsum(np.add.reduceat(known.astype(np.int64), first))]
    table = SparseLabels(class_num, np.full(len(image_ids), UNKNOWN, np.int8), indptr, classes[known],
                         values[known])
    return image_ids, table, conflicts


def read_openimages(labels_csv: str | os.PathLike, class_descriptions: str | os.PathLike,
                    image_root: str | os.PathLike, classes: str | os.PathLike | None = None
                    ) -> tuple[LabelTable, OpenImagesClasses, int]:
    """Images with at least one known label among the chosen classes, present under `image_root`
    as `<ImageID>.jpg` (the others in `skipped`), the classes, and the count of conflicting
    (image, class) pairs. Images without a row for any chosen class are not listed at all."""
    chosen = read_classes(class_descriptions, classes)
    path = Path(labels_csv)
    if not path.is_file():
        raise DataError(f"{path} not found (an image-level labels file such as "
                        "oidv7-train-annotations-human-imagelabels.csv)")
    if not os.path.isdir(image_root):
        raise DataError(f"image_root {image_root} is not a folder (expected the folder of <ImageID>.jpg "
                        "files, e.g. train/)")
    class_index = {mid: position for position, mid in enumerate(chosen.mids)}
    image_ids, labels, conflicts = group_labels(*stream_labels(path, class_index, chosen.described),
                                                len(chosen.mids))
    names = [f"{image:016x}.jpg" for image in image_ids]
    has_known = np.diff(labels.indptr) > 0
    present = np.array([os.path.isfile(os.path.join(image_root, name)) for name in
                        tqdm(names, desc="images", unit="img")], dtype=bool)
    keep = has_known & present
    skipped = {"whose image file is missing": [os.path.join(image_root, name) for name, missing in
                                               zip(names, has_known & ~present) if missing],
               "whose labels of the chosen classes all conflict": [name for name, known in
                                                                  zip(names, has_known) if not known]}
    paths = [name for name, kept in zip(names, keep) if kept]
    table = LabelTable(paths, labels[keep], chosen.names, [f"image {name[:-4]} in {path}" for name in paths],
                       skipped)
    return table, chosen, conflicts


@DATASETS.register
class OpenImagesDataset(MultiLabelImageDataset):
    """OpenImages image-level labels (see the module doc): images `<ImageID>.jpg` under
    `image_root`, labels from `labels_csv`, class names from `class_descriptions`, the classes
    narrowed to the file `classes` (one MID per line) when given."""

    def __init__(self, image_root: str | os.PathLike, labels_csv: str | os.PathLike,
                 class_descriptions: str | os.PathLike, transform_ops: list[dict] | Compose | None,
                 class_num: int, classes: str | os.PathLike | None = None,
                 skip_bad_images: bool = False) -> None:
        table, chosen, _ = read_openimages(labels_csv, class_descriptions, image_root, classes)
        if len(chosen.mids) != class_num:
            raise ConfigError(f"{len(chosen.mids)} OpenImages classes are chosen"
                              f"{f' by {classes}' if classes else ''} but class_num is {class_num}")
        require_samples(table, f"OpenImages {labels_csv}")
        self.image_root, self.class_names, self.class_mids = str(image_root), table.class_names, chosen.mids
        super().__init__([os.path.join(self.image_root, path) for path in table.paths], table.labels,
                         table.sources, transform_ops, skip_bad_images)
