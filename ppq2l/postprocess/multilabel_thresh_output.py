"""Per-image multi-label records from sigmoid scores: every class scoring at or above its threshold.
Numpy only, so the deploy predictor runs the same code as the torch tools."""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from ppq2l.calibration.thresholds_file import AUTO, is_thresholds_path, read_thresholds
from ppq2l.checks import number, number_list
from ppq2l.data.label_map import read_label_map
from ppq2l.errors import ConfigError
from ppq2l.registry import POSTPROCESSES

SCORE_DECIMALS = 5


@POSTPROCESSES.register
class MultiLabelThreshOutput:
    """Scores [B, C] -> one record per image: `{class_ids, scores, label_names, file_name}` for
    the classes whose score is >= the threshold: a float, one value per class, or the path of a
    thresholds.json written by tools/calibrate.py (its class names must be the label names)."""

    def __init__(self, threshold: float | Sequence[float] | str | os.PathLike = 0.5,
                 class_id_map_file: str | os.PathLike | None = None, delimiter: str | None = None,
                 label_names: Sequence[str] | None = None) -> None:
        self.thresholds_file = None
        if isinstance(threshold, str) and threshold.strip() == AUTO:
            raise ConfigError(f"threshold {AUTO} means the calibrated thresholds of a checkpoint; "
                              f"it is resolved from a checkpoint's Infer.PostProcess (tools/infer.py, "
                              f"tools/export_model.py, ppq2l.Predictor on a checkpoint). Here give "
                              f"a number, one per class or a thresholds.json path")
        if is_thresholds_path(threshold):
            self.thresholds_file = read_thresholds(threshold, "threshold")
            self.threshold: float | np.ndarray = self.thresholds_file.values
        elif isinstance(threshold, (list, tuple)):
            self.threshold = np.asarray(number_list(
                threshold, "threshold", minimum=0.0, maximum=1.0, example="[0.5, 0.7, ...] (one "
                "per class)"), dtype=np.float64)
        else:
            self.threshold = number(threshold, "threshold", minimum=0.0, maximum=1.0,
                                    why="or a list of them, one per class, or a thresholds.json")
        if delimiter is not None and (not isinstance(delimiter, str) or not delimiter):
            raise ConfigError(f"delimiter must be a non-empty string or null, got {delimiter!r}")
        if label_names is not None:
            # names embedded in an exported model take the place of the file they were read from
            self.label_names: list[str] | None = [str(name) for name in label_names]
        elif class_id_map_file:
            self.label_names = read_label_map(class_id_map_file, delimiter=delimiter or " ")
        else:
            self.label_names = None
        if self.thresholds_file is not None and self.label_names is not None:
            self.thresholds_file.check_classes(len(self.label_names), self.label_names,
                                               "the label map")

    def thresholds_for(self, class_num: int) -> np.ndarray:
        """The threshold of every class as an array of `class_num` values."""
        if self.thresholds_file is not None:
            self.thresholds_file.check_classes(class_num)
        if isinstance(self.threshold, np.ndarray):
            if len(self.threshold) != class_num:
                raise ConfigError(f"threshold lists {len(self.threshold)} values but the model "
                                  f"predicts {class_num} classes; give one per class or one number")
            return self.threshold
        return np.full(class_num, self.threshold, dtype=np.float64)

    def __call__(self, scores: np.ndarray, file_names: Sequence[str] | None = None) -> list[dict]:
        scores = np.asarray(scores)
        if scores.ndim != 2:
            raise ValueError(f"scores must be [batch, classes], got shape {scores.shape}")
        batch, class_num = scores.shape
        if file_names is not None and len(file_names) != batch:
            raise ValueError(f"{len(file_names)} file names for a batch of {batch} scores")
        if self.label_names is not None and len(self.label_names) != class_num:
            raise ConfigError(f"the label map names {len(self.label_names)} classes but the model "
                              f"predicts {class_num}")
        thresholds = self.thresholds_for(class_num)
        records = []
        for row_index, row in enumerate(scores.astype(np.float64)):
            class_ids = np.flatnonzero(row >= thresholds)
            record: dict[str, Any] = {
                "class_ids": [int(index) for index in class_ids],
                "scores": [round(float(row[index]), SCORE_DECIMALS) for index in class_ids],
                "label_names": ([self.label_names[index] for index in class_ids]
                                if self.label_names is not None else []),
            }
            if file_names is not None:
                record["file_name"] = str(file_names[row_index])
            records.append(record)
        return records

