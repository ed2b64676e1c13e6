"""NUS-WIDE (81 concepts) in the two layouts people have:

- official (`layout: official`): `ImageList/Imagelist.txt` (every image, as
  `C:\\ImageData\\Flickr\\<folder>\\<file>.jpg`), `ImageList/TrainImagelist.txt` and
  `TestImagelist.txt` (the split, as `<folder>\\<file>.jpg`), `Groundtruth/AllLabels/Labels_<concept>.txt`
  (one 0/1 line per image of Imagelist.txt) and, optionally, `Concepts81.txt`; the images under
  `Flickr/<folder>/<file>.jpg` (`image_root` to put them elsewhere).
- csv (`layout: csv`): ML-Decoder's and ASL's `nus_wid_data.csv`, rows `path,"['sky', 'clouds']",train|val`
  (a header naming the columns is read), images under `image_root`.

Many Flickr images are gone from every download: images missing from `image_root` are reported
(count and examples) and left out, never relabelled. The labels are complete 0/1 ones."""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ppq2l.checks import choice
from ppq2l.data.label_map import read_label_map
from ppq2l.data.label_table import LabelTable, require_samples
from ppq2l.data.list_dataset import MultiLabelImageDataset
from ppq2l.data.text_files import read_utf8_text
from ppq2l.data.transforms import Compose
from ppq2l.errors import ConfigError, DataError
from ppq2l.registry import DATASETS

LAYOUTS = ("official", "csv")
OFFICIAL_SPLITS = {"train": "TrainImagelist.txt", "test": "TestImagelist.txt", "all": None}
CSV_COLUMNS = {"path": ("filepath", "filename", "file_name", "path", "image", "image_path"),
               "labels": ("label", "labels", "tags"), "split": ("split_name", "split")}
MISSING = "whose image file is missing"


def flickr_path(entry: str) -> str:
    """`<folder>/<file>.jpg` of an ImageList entry, whichever slashes and prefix it has."""
    parts = [part for part in entry.strip().replace("\\", "/").split("/") if part]
    return "/".join(parts[-2:])


def read_lines(path: Path, what: str) -> list[str]:
    """The non-blank lines of a file that must exist, stripped."""
    if not path.is_file():
        raise DataError(f"{path} not found ({what}); the NUS-WIDE root must hold ImageList/ and "
                        "Groundtruth/AllLabels/ as the official download unpacks them")
    return [line.strip() for line in read_utf8_text(path, what).splitlines() if line.strip()]


def concept_names(root: Path) -> list[str]:
    """Concepts81.txt when present, else the concepts of the label files in sorted order (the
    order of Concepts81.txt)."""
    listed = root / "Concepts81.txt"
    if listed.is_file():
        return read_lines(listed, "the concept list")
    folder = root / "Groundtruth" / "AllLabels"
    names = sorted(path.stem[len("Labels_"):] for path in folder.glob("Labels_*.txt"))
    if not names:
        raise DataError(f"{folder / 'Labels_airport.txt'} not found (one 0/1 label file per concept); "
                        "the NUS-WIDE root must hold Groundtruth/AllLabels/ as the official download "
                        "unpacks it")
    return names


def read_official(root: str | os.PathLike, split: str, image_root: str | os.PathLike) -> LabelTable:
    """Images of `split` (train, test, all) with their AllLabels ground truth."""
    root = Path(root)
    choice(split, "split", list(OFFICIAL_SPLITS))
    images = [flickr_path(line) for line in read_lines(root / "ImageList" / "Imagelist.txt", "the image list")]
    names = concept_names(root)
    columns = []
    for name in tqdm(names, desc="concepts", unit="concept"):
        path = root / "Groundtruth" / "AllLabels" / f"Labels_{name}.txt"
        values = read_lines(path, f"the labels of concept {name}")
        if len(values) != len(images):
            raise DataError(f"{path} has {len(values)} labels but ImageList/Imagelist.txt lists "
                            f"{len(images)} images; they must be the files of one download")
        bad = next((number for number, value in enumerate(values, start=1) if value not in ("0", "1")), None)
        if bad is not None:
            raise DataError(f"{path}, line {bad}: expected 0 or 1, got {values[bad - 1]!r}")
        columns.append(np.array(values, dtype=np.int8))
    labels = np.stack(columns, axis=1)
    chosen = np.arange(len(images))
    if OFFICIAL_SPLITS[split] is not None:
        members = {flickr_path(line) for line in read_lines(root / "ImageList" / OFFICIAL_SPLITS[split],
                                                           f"the {split} image list")}
        chosen = np.array([i for i, image in enumerate(images) if image in members], dtype=np.int64)
    sources = [f"line {i + 1} of {root / 'ImageList' / 'Imagelist.txt'}" for i in chosen]
    return keep_present([images[i] for i in chosen], labels[chosen], names, sources, image_root)


def keep_present(paths: list[str], labels: np.ndarray, names: list[str], sources: list[str],
                 image_root: str | os.PathLike) -> LabelTable:
    """The table of the samples whose image exists under `image_root`; the rest reported."""
    present = [os.path.isfile(os.path.join(image_root, path)) for path in tqdm(paths, desc="images", unit="img")]
    missing = [os.path.join(image_root, path) for path, here in zip(paths, present) if not here]
    keep = np.array(present, dtype=bool)
    return LabelTable([path for path, here in zip(paths, present) if here], labels[keep], names,
                      [source for source, here in zip(sources, present) if here], {MISSING: missing})


def csv_columns(header: list[str], path: Path) -> tuple[list[int], bool]:
    """Positions of the path, labels and split columns, and whether the first row is a header."""
    lowered = [cell.strip().lower() for cell in header]
    if not any(name in lowered for names in CSV_COLUMNS.values() for name in names):
        return [0, 1, 2], False
    positions = []
    for role, names in CSV_COLUMNS.items():
        found = [lowered.index(name) for name in names if name in lowered]
        if not found:
            raise DataError(f"{path}: the header {header!r} has no {role} column (one of {', '.join(names)})")
        positions.append(found[0])
    return positions, True


def read_csv_layout(csv_path: str | os.PathLike, split: str, image_root: str | os.PathLike) -> LabelTable:
    """Rows of `split` (a value of the split column, or all) of an ML-Decoder NUS-WIDE CSV."""
    path = Path(csv_path)
    if not path.is_file():
        raise DataError(f"csv_path {path} not found (ML-Decoder's nus_wid_data.csv: path,labels,split rows)")
    names = read_label_map("builtin:nuswide81")
    index = {name: position for position, name in enumerate(names)}
    with io.StringIO(read_utf8_text(path, "csv_path"), newline="") as handle:
        rows = [(number, row) for number, row in enumerate(csv.reader(handle), start=1) if any(row)]
    if not rows:
        raise DataError(f"{path} has no rows")
    (at_path, at_labels, at_split), has_header = csv_columns(rows[0][1], path)
    paths, labels, sources, splits = [], [], [], set()
    for number, row in rows[1:] if has_header else rows:
        if len(row) <= max(at_path, at_labels, at_split):
            raise DataError(f"{path}, line {number}: expected path, labels and split columns, got {row!r}")
        splits.add(row[at_split].strip())
        if split != "all" and row[at_split].strip() != split:
            continue
        label = np.zeros(len(names), dtype=np.int8)
        for name in filter(None, (part.strip(" '\"[]\n") for part in row[at_labels].split(","))):
            if name not in index:
                raise DataError(f"{path}, line {number}: {name!r} is not one of the 81 NUS-WIDE concepts")
            label[index[name]] = 1
        paths.append(row[at_path].strip().replace("\\", "/"))
        labels.append(label)
        sources.append(f"line {number} of {path}")
    if not paths:
        raise DataError(f"{path}: no row has split {split!r}; the split column holds {', '.join(sorted(splits))}")
    return keep_present(paths, np.stack(labels), names, sources, image_root)


def read_nus_wide(layout: str, split: str, root: str | os.PathLike | None = None,
                  csv_path: str | os.PathLike | None = None,
                  image_root: str | os.PathLike | None = None) -> tuple[LabelTable, str]:
    """The table of either layout and the folder its paths are relative to."""
    choice(layout, "layout", LAYOUTS)
    if layout == "official":
        if root is None:
            raise ConfigError("layout official needs root, the folder holding ImageList/ and Groundtruth/")
        image_root = os.path.join(root, "Flickr") if image_root is None else image_root
        return read_official(root, split, image_root), str(image_root)
    if csv_path is None:
        raise ConfigError("layout csv needs csv_path (nus_wid_data.csv) and image_root")
    image_root = os.path.dirname(os.fspath(csv_path)) if image_root is None else image_root
    return read_csv_layout(csv_path, split, image_root), str(image_root)


@DATASETS.register
class NusWideDataset(MultiLabelImageDataset):
    """NUS-WIDE in the official layout (`root`, `split`: train, test, all; images under
    `image_root`, default root/Flickr) or ML-Decoder's CSV (`layout: csv`, `csv_path`, `split`:
    train, val or all; `image_root`, default the CSV's folder). See the module doc."""

    def __init__(self, split: str, transform_ops: list[dict] | Compose | None, class_num: int = 81,
                 layout: str = "official", root: str | os.PathLike | None = None,
                 csv_path: str | os.PathLike | None = None, image_root: str | os.PathLike | None = None,
                 skip_bad_images: bool = False) -> None:
        table, image_root = read_nus_wide(layout, split, root, csv_path, image_root)
        require_samples(table, f"NUS-WIDE split {split} under image_root {image_root}")
        if len(table.class_names) != class_num:
            raise ConfigError(f"this NUS-WIDE copy has {len(table.class_names)} concepts but class_num "
                              f"is {class_num}")
        self.image_root, self.split, self.class_names = image_root, split, table.class_names
        super().__init__([os.path.join(image_root, path) for path in table.paths], table.labels,
                         table.sources, transform_ops, skip_bad_images)
