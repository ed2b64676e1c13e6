"""Pascal VOC 2007/2012 for multi-label classification, read from the devkit's own files: the
classification lists `ImageSets/Main/<class>_<split>.txt` (`<id> 1|-1|0`, 0 marking an image whose
only objects of the class are "difficult"), or the XML annotations `Annotations/<id>.xml` of the
images listed in `ImageSets/Main/<split>.txt`. Difficult-only classes are unknown (-1) by default,
VOC's own rule (they count neither way in its evaluation); `difficult: positive` gives the labels
ML-GCN and Query2Label trained on. Classes in the official order."""
from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from tqdm import tqdm

from ppq2l.checks import choice
from ppq2l.data.label_table import LabelTable, dense_labels, require_samples
from ppq2l.data.list_dataset import UNKNOWN, MultiLabelImageDataset
from ppq2l.data.text_files import read_utf8_text
from ppq2l.data.transforms import Compose
from ppq2l.errors import ConfigError, DataError
from ppq2l.registry import DATASETS

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")
DIFFICULT_MODES = ("unknown", "positive")
SOURCES = ("imagesets", "annotations")
LAYOUT = "a VOC20XX folder holding JPEGImages/, Annotations/ and ImageSets/Main/"
_DIFFICULT = 2  # marks a difficult-only class until the chosen mode replaces it
_CLASS_FILE_VALUES = {"1": 1, "-1": 0, "0": _DIFFICULT}


def check_voc_root(root: str | os.PathLike, split: str) -> Path:
    """`root` when it holds ImageSets/Main, else a DataError naming what was expected there (and
    the year folder when `root` is the VOCdevkit folder above it)."""
    root = Path(root)
    main = root / "ImageSets" / "Main"
    if main.is_dir():
        return root
    years = sorted(path.name for path in root.glob("VOC20*") if (path / "ImageSets" / "Main").is_dir())
    hint = f"; {root} looks like the VOCdevkit folder: use {root / years[0]}" if years else ""
    raise DataError(f"{main / f'{split}.txt'} not found: the VOC root must be {LAYOUT}{hint}")


def read_ids(path: Path, what: str) -> list[tuple[int, list[str]]]:
    """(line number, whitespace-split fields) of the non-blank lines of a devkit text file."""
    if not path.is_file():
        raise DataError(f"{path} not found ({what})")
    lines = read_utf8_text(path, what).splitlines()
    return [(number, line.split()) for number, line in enumerate(lines, start=1) if line.strip()]


def read_class_files(root: Path, split: str) -> tuple[list[str], list[list[int]]]:
    """Image ids and labels (1, 0, _DIFFICULT) from the 20 `<class>_<split>.txt` files, which must
    list the same images."""
    ids: list[str] | None = None
    columns = []
    for name in tqdm(VOC_CLASSES, desc="classes", unit="class"):
        path = root / "ImageSets" / "Main" / f"{name}_{split}.txt"
        rows = read_ids(path, f"the classification list of class {name} for split {split}")
        values = {}
        for number, fields in rows:
            if len(fields) != 2 or fields[1] not in _CLASS_FILE_VALUES:
                raise DataError(f"{path}, line {number}: expected '<image id> 1|-1|0', got {' '.join(fields)!r}")
            values[fields[0]] = _CLASS_FILE_VALUES[fields[1]]
        if ids is None:
            ids = [fields[0] for _, fields in rows]
        elif set(values) != set(ids):
            other = sorted(set(values) ^ set(ids))[0]
            raise DataError(f"{path} does not list the same images as {VOC_CLASSES[0]}_{split}.txt "
                            f"(e.g. image {other}); the devkit files are mixed up")
        columns.append(values)
    return ids, [[column[image] for column in columns] for image in ids]


def read_xml_labels(root: Path, split: str) -> tuple[list[str], list[list[int]]]:
    """Image ids of `<split>.txt` and labels (1, 0, _DIFFICULT) from their XML annotations."""
    ids = [fields[0] for _, fields in read_ids(root / "ImageSets" / "Main" / f"{split}.txt",
                                               f"the image list of split {split}")]
    index = {name: position for position, name in enumerate(VOC_CLASSES)}
    rows = []
    for image in tqdm(ids, desc="annotations", unit="img"):
        path = root / "Annotations" / f"{image}.xml"
        if not path.is_file():
            raise DataError(f"{path} not found (the annotation of image {image}, listed in "
                            f"ImageSets/Main/{split}.txt)")
        try:
            objects = ElementTree.parse(path).getroot().findall("object")
        except ElementTree.ParseError as error:
            raise DataError(f"{path} is not valid XML: {error}") from None
        label = [0] * len(VOC_CLASSES)
        for item in objects:
            name = (item.findtext("name") or "").strip()
            if name not in index:
                raise DataError(f"{path}: object class {name!r} is not one of the 20 VOC classes")
            if (item.findtext("difficult") or "0").strip() != "1":
                label[index[name]] = 1  # one plain object makes the class positive
            elif label[index[name]] == 0:
                label[index[name]] = _DIFFICULT
        rows.append(label)
    return ids, rows


def read_voc(root: str | os.PathLike, split: str, source: str = "imagesets",
             difficult: str = "unknown") -> LabelTable:
    """The images of `split` with their labels; images whose JPEG is missing are left out."""
    choice(source, "source", SOURCES)
    choice(difficult, "difficult", DIFFICULT_MODES)
    root = check_voc_root(root, split)
    ids, rows = (read_class_files if source == "imagesets" else read_xml_labels)(root, split)
    replacement = UNKNOWN if difficult == "unknown" else 1
    paths, labels, sources, missing = [], [], [], []
    listed_in = (f"ImageSets/Main/*_{split}.txt" if source == "imagesets" else f"Annotations (split {split})")
    for image, row in zip(ids, rows):
        path = f"JPEGImages/{image}.jpg"
        if not (root / path).is_file():
            missing.append(str(root / path))
            continue
        paths.append(path)
        labels.append([replacement if value == _DIFFICULT else value for value in row])
        sources.append(f"image {image} in {root / listed_in}")
    return LabelTable(paths, dense_labels(labels, len(VOC_CLASSES)), list(VOC_CLASSES), sources,
                      {"whose JPEGImages file is missing": missing})


@DATASETS.register
class VocDataset(MultiLabelImageDataset):
    """Pascal VOC (2007 or 2012) from the devkit folder `root` (VOCdevkit/VOC2007): the images of
    `split` (train, val, trainval, test) with labels from `source` (`imagesets`: the per-class
    lists; `annotations`: the XML files); `difficult`: unknown (default) or positive."""

    def __init__(self, root: str | os.PathLike, split: str, transform_ops: list[dict] | Compose | None,
                 class_num: int = len(VOC_CLASSES), source: str = "imagesets", difficult: str = "unknown",
                 skip_bad_images: bool = False) -> None:
        if class_num != len(VOC_CLASSES):
            raise ConfigError(f"VOC has {len(VOC_CLASSES)} classes but class_num is {class_num}")
        table = require_samples(read_voc(root, split, source, difficult), f"VOC {root} split {split}")
        self.root, self.split, self.class_names = str(root), split, table.class_names
        super().__init__([os.path.join(self.root, path) for path in table.paths], table.labels,
                         table.sources, transform_ops, skip_bad_images)
