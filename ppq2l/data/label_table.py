"""What a reader of a standard dataset (VOC, NUS-WIDE, OpenImages) hands over, to its dataset
class and to its list converter alike: image paths relative to the image folder, their labels
(1, 0, -1 unknown), class names, and the images it had to leave out, by reason, which are always
reported and never silently relabelled."""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ppq2l.errors import DataError
from ppq2l.utils.logger import get_logger

SHOWN = 3  # examples named per reason in a warning


class LabelTable(NamedTuple):
    """Samples read from a dataset's own files."""

    paths: list[str]  # relative to the image folder, forward slashes
    labels: Any  # int8 [N, C] array or SparseLabels
    class_names: list[str]
    sources: list[str]  # where each sample's labels come from, for error messages
    skipped: dict[str, list[str]]  # reason -> the images left out for it (described)

    def report_skipped(self) -> None:
        """One warning per reason, with the count and the first examples."""
        for reason, items in self.skipped.items():
            if items:
                more = " ..." if len(items) > SHOWN else ""
                get_logger().warning("left out %d image(s) %s: %s%s", len(items), reason,
                                     ", ".join(items[:SHOWN]), more)

    def skipped_summary(self) -> str:
        """'N reason, M reason' or 'none'."""
        return ", ".join(f"{len(items)} {reason}" for reason, items in self.skipped.items() if items) or "none"

    def unknown_count(self) -> int:
        """How many labels are unknown (-1)."""
        from ppq2l.data.label_store import label_counts

        return int(label_counts(self.labels).unknown.sum())


def require_samples(table: LabelTable, what: str) -> LabelTable:
    """`table`, reported, or a DataError when no image is left."""
    table.report_skipped()
    if not table.paths:
        raise DataError(f"{what}: no image can be used; left out: {table.skipped_summary()}")
    return table


def dense_labels(rows: list[list[int]], class_num: int) -> np.ndarray:
    """Rows of labels as an int8 [N, C] array (N may be 0)."""
    return np.array(rows, dtype=np.int8).reshape(len(rows), class_num)
