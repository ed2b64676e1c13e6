"""Label tables too large to hold densely: OpenImages has thousands of classes and millions of
images, each with a handful of verified labels, the rest unknown. A SparseLabels table stores per
sample one default state (0 or -1) and the classes that differ from it; a row read from it is the
dense int8 vector the rest of the code expects. `label_counts` gives the per-class statistics of a
dense or sparse table alike."""
from __future__ import annotations

from array import array
from typing import Any, NamedTuple

import numpy as np

STATES = (1, 0, -1)  # positive, negative, unknown


class SparseLabels:
    """Row i is `defaults[i]` everywhere except at `indices[indptr[i]:indptr[i+1]]`, which hold
    `values[indptr[i]:indptr[i+1]]`; every value is 1, 0 or -1."""

    dtype = np.dtype(np.int8)  # what a row, and the dense table, hold

    def __init__(self, num_classes: int, defaults: np.ndarray, indptr: np.ndarray,
                 indices: np.ndarray, values: np.ndarray) -> None:
        self.num_classes = int(num_classes)
        self.defaults = np.asarray(defaults, dtype=np.int8)
        self.indptr = np.asarray(indptr, dtype=np.int64)
        self.indices = np.asarray(indices, dtype=np.int32)
        self.values = np.asarray(values, dtype=np.int8)
        if len(self.indptr) != len(self.defaults) + 1 or self.indptr[-1] != len(self.indices):
            raise ValueError("indptr must have one entry per row plus one, ending at len(indices)")

    @property
    def shape(self) -> tuple[int, int]:
        """(samples, classes), as a dense array's."""
        return len(self.defaults), self.num_classes

    def __len__(self) -> int:
        return len(self.defaults)

    def row(self, index: int) -> np.ndarray:
        """The dense int8 labels of sample `index`."""
        start, stop = self.indptr[index], self.indptr[index + 1]
        dense = np.full(self.num_classes, self.defaults[index], dtype=np.int8)
        dense[self.indices[start:stop]] = self.values[start:stop]
        return dense

    def __getitem__(self, key: Any) -> Any:
        """An int gives one dense row; a boolean mask or an index array a SparseLabels subset."""
        if isinstance(key, (int, np.integer)):
            return self.row(int(key) % len(self) if key < 0 else int(key))
        rows = np.arange(len(self))[key]
        counts = self.indptr[rows + 1] - self.indptr[rows]
        indptr = np.concatenate([[0], np.cumsum(counts)])
        # entry j of the subset is entry (its row's start) + (j - the subset row's start)
        take = np.repeat(self.indptr[rows] - indptr[:-1], counts) + np.arange(indptr[-1])
        return SparseLabels(self.num_classes, self.defaults[rows], indptr, self.indices[take],
                            self.values[take])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        dense = np.repeat(self.defaults[:, None], self.num_classes, axis=1)
        rows = np.repeat(np.arange(len(self)), np.diff(self.indptr))
        dense[rows, self.indices] = self.values
        return dense if dtype is None else dense.astype(dtype)

    def tolist(self) -> list[list[int]]:
        """The dense rows as lists (small tables, tests)."""
        return np.asarray(self).tolist()


class SparseLabelsBuilder:
    """Collects rows one at a time in compact arrays (a few bytes per explicit label)."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.defaults, self.indptr = array("b"), array("q", [0])
        self.indices, self.values = array("i"), array("b")

    def add(self, default: int, explicit: dict[int, int]) -> None:
        """Append a row: `default` everywhere, `explicit[class] = value` where it differs."""
        self.defaults.append(default)
        for index in sorted(explicit):
            if explicit[index] != default:  # label_counts relies on entries that differ
                self.indices.append(index)
                self.values.append(explicit[index])
        self.indptr.append(len(self.indices))

    def __len__(self) -> int:
        return len(self.defaults)

    def build(self) -> SparseLabels:
        """The table of the rows added so far."""
        return SparseLabels(self.num_classes, np.frombuffer(self.defaults, np.int8),
                            np.frombuffer(self.indptr, np.int64), np.frombuffer(self.indices, np.int32),
                            np.frombuffer(self.values, np.int8))


class LabelCounts(NamedTuple):
    """Per-class counts (int64 [C]) of each state, and positives per sample (int64 [N])."""

    positives: np.ndarray
    negatives: np.ndarray
    unknown: np.ndarray
    positives_per_sample: np.ndarray


def label_counts(labels: Any) -> LabelCounts:
    """How many samples are positive, negative and unknown for each class of a dense int8 table
    or a SparseLabels one, without densifying the latter."""
    if not isinstance(labels, SparseLabels):
        labels = np.asarray(labels)
        per_class = [(labels == state).sum(axis=0, dtype=np.int64) for state in STATES]
        return LabelCounts(*per_class, (labels == 1).sum(axis=1, dtype=np.int64))
    classes = labels.num_classes
    row_of = np.repeat(np.arange(len(labels)), np.diff(labels.indptr))
    default_of_entry = labels.defaults[row_of]
    per_class = []
    for state in STATES:
        rows_with_default = int((labels.defaults == state).sum())
        replaced = np.bincount(labels.indices[default_of_entry == state], minlength=classes)
        added = np.bincount(labels.indices[labels.values == state], minlength=classes)
        per_class.append(rows_with_default - replaced + added)
    explicit_positives = np.bincount(row_of[labels.values == 1], minlength=len(labels))
    default_positives = np.where(labels.defaults == 1, classes - np.diff(labels.indptr), 0)
    return LabelCounts(*per_class, (explicit_positives + default_positives).astype(np.int64))
