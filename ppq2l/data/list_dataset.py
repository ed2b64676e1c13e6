"""Multi-label datasets: a common base that loads and transforms one image, and the PaddleClas list
file format `relative/path.jpg<TAB>0,1,-1,...`, validated row by row when the dataset is built.

Labels have three states everywhere: 1 positive, 0 negative, -1 unknown (not annotated: the
losses with `unknown: ignore` and the metrics leave such entries out instead of counting them as
negatives). They are stored and handed out as int8."""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch.utils.data import Dataset

from ppq2l.checks import flag, integer
from ppq2l.data.image_files import read_image_bytes
from ppq2l.data.label_store import LabelCounts, SparseLabels, label_counts
from ppq2l.data.text_files import read_utf8_text
from ppq2l.data.transforms import Compose, build_transforms
from ppq2l.errors import ConfigError, DataError, Ppq2lError
from ppq2l.registry import DATASETS
from ppq2l.utils.logger import get_logger

LABEL_VALUES = {"0": 0, "1": 1, "-1": -1}
UNKNOWN = -1
SHOWN_MISSING = 5  # missing images named in an error or warning; the count covers the rest


def as_compose(transform_ops: list[dict] | Compose | None, where: str = "transform_ops") -> Compose:
    """A built pipeline as it is, or one built from its config list; an empty pipeline is refused
    because the model needs at least DecodeImage, NormalizeImage and ToCHWImage."""
    transforms = transform_ops if isinstance(transform_ops, Compose) else build_transforms(transform_ops, where)
    if not len(transforms):
        raise ConfigError(f"{where}: the list is empty; give at least DecodeImage, ResizeImage, "
                          "NormalizeImage and ToCHWImage")
    return transforms


def transform_image(transforms: Compose, data: bytes, rng: np.random.Generator | None, where: str,
                    skip_bad_images: bool) -> Any:
    """The image bytes `data` through `transforms`; an error names the image `where`, or with
    `skip_bad_images` an undecodable image gives None (the sample is dropped)."""
    try:
        return transforms(data, rng)
    except Ppq2lError as error:
        if skip_bad_images and isinstance(error, DataError):
            return None
        raise type(error)(f"image {where}: {error}") from error


def check_class_num(class_num: Any) -> int:
    """`class_num` as a positive int, or a ConfigError."""
    return integer(class_num, "class_num", minimum=1, why="the number of classes")


class MissingImagesError(DataError):
    """Listed image files that do not exist; `missing` holds every one as 'path (source)'."""

    def __init__(self, message: str, missing: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.missing = list(missing)


def check_image_root(image_root: str | os.PathLike) -> str:
    """`image_root` as a string, or a DataError when it is not an existing folder ('' is the
    current folder, as os.path.join makes it)."""
    if not os.path.isdir(os.fspath(image_root) or "."):
        what = "is a file, not a folder" if os.path.exists(image_root) else "does not exist"
        raise DataError(f"image_root {image_root} {what}; set image_root to the folder that the "
                        "listed image paths are relative to")
    return os.fspath(image_root)


def find_missing_files(paths: Sequence[str]) -> list[int]:
    """Positions of the `paths` that are not existing files (one os.stat each)."""
    missing = []
    for position, path in enumerate(paths):
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                missing.append(position)
        except OSError:  # not found, or a folder on the way cannot be searched
            missing.append(position)
    return missing


def check_label_values(labels: Any, sources: Sequence[str]) -> Any:
    """`labels` as int8 (a SparseLabels table as it is), or a DataError naming the first sample
    whose value is not 1, 0 or -1."""
    if isinstance(labels, SparseLabels):
        return labels
    values = np.asarray(labels)
    if values.ndim != 2:
        raise DataError(f"labels must be a [samples, classes] table, got shape {values.shape}")
    bad = (values != 1) & (values != 0) & (values != UNKNOWN)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        where = sources[row] if row < len(sources) else f"sample {row}"
        raise DataError(f"{where}: label {values[row, column]!r} of class {column} is not 1, 0 or "
                        "-1 (unknown)")
    return values.astype(np.int8)


def _shown(items: Sequence[str]) -> str:
    more = len(items) - SHOWN_MISSING
    return ", ".join(items[:SHOWN_MISSING]) + (f" and {more} more" if more > 0 else "")


class MultiLabelImageDataset(Dataset):
    """Images with multi-hot labels: `get(index, rng)` reads and transforms one image and returns
    `(image float32 [3, H, W], labels int8 [C])`, labels 1, 0 or -1 (unknown); `labels` is an int8
    [N, C] array or, for datasets with many classes, a SparseLabels table. Subclasses only parse
    their annotation format. With `image_root` given, it must be a folder and every listed file
    must exist (checked here, not hours later in a loader worker); `skip_bad_images` leaves the
    missing ones out, with a warning."""

    def __init__(self, image_paths: Sequence[str], labels: np.ndarray, sources: Sequence[str],
                 transform_ops: list[dict] | Compose | None, skip_bad_images: bool = False,
                 image_root: str | os.PathLike | None = None) -> None:
        if not len(image_paths):
            raise DataError(f"no samples in {sources or 'the annotations'}")
        # True: an undecodable image yields None (dropped)
        self.skip_bad_images = flag(skip_bad_images, "skip_bad_images")
        self.image_paths = list(image_paths)
        self.labels = check_label_values(labels, sources)
        self.sources = list(sources)  # where each sample is described, for error messages
        self.transforms = as_compose(transform_ops)
        if image_root is not None:
            check_image_root(image_root)
            self._handle_missing(find_missing_files(self.image_paths), os.fspath(image_root))

    def _handle_missing(self, missing: list[int], image_root: str) -> None:
        """Refuse the dataset when listed files are missing, or drop them with `skip_bad_images`."""
        if not missing:
            return
        described = [f"{self.image_paths[i]} ({self.sources[i]})" for i in missing]
        total = len(self.image_paths)
        if len(missing) == total:
            raise MissingImagesError(
                f"none of the {total} listed images exists under image_root {image_root} (first: "
                f"{described[0]}); is image_root the folder the listed paths are relative to?",
                described)
        if not self.skip_bad_images:
            raise MissingImagesError(
                f"{len(missing)} of {total} listed images do not exist: {_shown(described)}; "
                "restore them or remove their rows (tools/check_dataset.py lists them all), or "
                "set skip_bad_images: True (training only) to leave them out", described)
        get_logger().warning("skip_bad_images: leaving out %d of %d listed images that do not "
                             "exist: %s", len(missing), total, _shown(described))
        keep = np.ones(total, dtype=bool)
        keep[missing] = False
        self.image_paths = [path for path, kept in zip(self.image_paths, keep) if kept]
        self.sources = [source for source, kept in zip(self.sources, keep) if kept]
        self.labels = self.labels[keep]

    def label_counts(self) -> LabelCounts:
        """Per-class counts of positive, negative and unknown labels (and positives per sample)."""
        return label_counts(self.labels)

    @property
    def class_num(self) -> int:
        """Number of classes C."""
        return int(self.labels.shape[1])

    def __len__(self) -> int:
        return len(self.image_paths)

    def get(self, index: int, rng: np.random.Generator | None = None) -> tuple[Any, np.ndarray] | None:
        """Sample `index` transformed with random numbers from `rng`; a missing or broken image is a
        DataError naming the file and where it is listed (no other sample is substituted), or,
        with `skip_bad_images`, None: the collate function drops it and the epoch log counts it."""
        path, source = self.image_paths[index], self.sources[index]
        try:
            data = read_image_bytes(path, source)
        except DataError:
            if self.skip_bad_images:
                return None
            raise
        image = transform_image(self.transforms, data, rng, f"{path} ({source})", self.skip_bad_images)
        return None if image is None else (image, np.array(self.labels[index], dtype=np.int8))

    def __getitem__(self, index: int) -> tuple[Any, np.ndarray]:
        return self.get(index)


def _runs_together(image: str, delimiter: str, class_num: int) -> bool:
    """Whether the path part of a row holds a TAB, or the delimiter followed by `class_num` labels
    (the row before it without its newline); a space delimiter alone may be part of a name."""
    if "\t" in image:
        return True
    labels = r"\s*-?[01](?:\s*,\s*-?[01]){%d}" % (class_num - 1)
    return re.search(re.escape(delimiter) + labels, image) is not None


def read_label_list(cls_label_path: str | os.PathLike, class_num: int | None,
                    delimiter: str = "\t") -> tuple[list[str], np.ndarray, list[int]]:
    """Parse a list file of `path<delimiter>0,1,-1,...` rows into (paths, labels int8 [N, C],
    1-based line numbers); -1 marks an unknown label. Blank lines are skipped; any other
    malformed row is a DataError. `class_num=None` takes the number of labels from the first
    row (every row must then have as many)."""
    path = Path(cls_label_path)
    if not path.is_file():
        raise DataError(f"cls_label_path {path} does not exist (expected a list file with rows "
                        f"'relative/path.jpg{delimiter!r}0,1,0,...')")
    text = read_utf8_text(path, "list file")
    expected = f"class_num={class_num}"
    if class_num is None:
        first = next((line.strip() for line in text.split("\n") if line.strip()), "")
        class_num = len(first.rpartition(delimiter)[2].split(","))
        expected = f"{class_num} like the first row"
    paths, rows, numbers = [], [], []
    for number, line in enumerate(text.split("\n"), start=1):
        row = line.strip()
        if not row:
            continue
        # split at the last delimiter: paths may contain it (spaces), the labels never do
        image, found, label_text = row.rpartition(delimiter)
        where = f"{path}, line {number}"
        if not found or not image.strip():
            raise DataError(f"{where}: expected 'image_path{delimiter}labels' separated by "
                            f"{delimiter!r}, got {row!r}")
        if _runs_together(image, delimiter, class_num):
            raise DataError(f"{where}: the image path {image.strip()!r} holds a TAB or a label "
                            "list: two rows run together on one line, as when list files are "
                            "concatenated and one lacks its final newline; add that newline")
        values = [value.strip() for value in label_text.split(",")]
        if len(values) != class_num:
            raise DataError(f"{where}: {len(values)} labels, expected {expected} "
                            f"comma-separated values 0, 1 or -1 (unknown); row {row!r}")
        bad = [value for value in values if value not in LABEL_VALUES]
        if bad:
            raise DataError(f"{where}: labels must be 0, 1 or -1 (unknown), found {bad[0]!r}; "
                            f"row {row!r}")
        paths.append(image.strip())
        rows.append([LABEL_VALUES[value] for value in values])
        numbers.append(number)
    if not paths:
        raise DataError(f"list file {path} has no samples")
    return paths, np.array(rows, dtype=np.int8), numbers


@DATASETS.register
@DATASETS.register(name="MultiLabelDataset")  # the PaddleClas name
class MultiLabelListDataset(MultiLabelImageDataset):
    """Images under `image_root` listed in `cls_label_path` as `relative/path.jpg<TAB>0,1,-1,...`
    with exactly `class_num` labels per row (-1: unknown); every row is checked when the dataset is built."""

    def __init__(self, image_root: str | os.PathLike, cls_label_path: str | os.PathLike,
                 transform_ops: list[dict] | Compose | None, class_num: int,
                 delimiter: str = "\t", skip_bad_images: bool = False) -> None:
        class_num = check_class_num(class_num)
        if not isinstance(delimiter, str) or not delimiter or delimiter == ",":
            raise ConfigError(f"delimiter must be a non-empty string other than ',' (labels are "
                              f"comma-separated), got {delimiter!r}")
        relative, labels, numbers = read_label_list(cls_label_path, class_num, delimiter)
        self.image_root, self.cls_label_path = str(image_root), str(cls_label_path)
        sources = [f"line {number} of {cls_label_path}" for number in numbers]
        super().__init__([os.path.join(self.image_root, name) for name in relative], labels, sources,
                         transform_ops, skip_bad_images, image_root=image_root)
