"""Metric components built from `Metric.Eval` entries such as `- MultiLabelMAP: {map_type: integral}`.
Each is called on sigmoid scores and 0/1 targets [N, C] and returns a dict of numbers in percent;
`main_key` names the number that ranks checkpoints."""
from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np

from ppq2l.calibration.thresholds_file import is_thresholds_path, read_thresholds
from ppq2l.checks import choice, integer, number, number_list
from ppq2l.errors import ConfigError
from ppq2l.metric.functional import AP_MODES, average_precision, threshold_metrics, top_k_metrics
from ppq2l.registry import METRICS

ENTRY_SHAPE = "a one-key mapping such as `- MultiLabelMAP: {map_type: integral}`"


@METRICS.register
class MultiLabelMAP:
    """Mean average precision over classes with positives, and every class's AP (None where a
    class has no positive, so the result stays JSON-safe); both in percent."""

    main_key = "mAP"

    def __init__(self, map_type: str = "integral") -> None:
        self.map_type = choice(map_type, "map_type", AP_MODES, where="MultiLabelMAP")

    def __call__(self, scores: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
        per_class = average_precision(scores, targets, self.map_type) * 100.0
        valid = per_class[~np.isnan(per_class)]
        return {"mAP": float(valid.mean()) if valid.size else float("nan"),
                "per_class_AP": [None if math.isnan(value) else float(value) for value in per_class]}


@METRICS.register
class MultiLabelThresholdMetrics:
    """CP, CR, CF1, OP, OR, OF1 at a score threshold and, with `top_k`, the same six over each
    image's k best labels that also pass the threshold (keys `CP_top3`, ...), in percent. The
    threshold is a number, one number per class, or a thresholds.json of tools/calibrate.py."""

    main_key = "OF1"

    def __init__(self, threshold: float | Sequence[float] | str | os.PathLike = 0.5,
                 top_k: int | None = 3) -> None:
        where = "MultiLabelThresholdMetrics"
        self.thresholds_file = None
        if is_thresholds_path(threshold):
            self.thresholds_file = read_thresholds(threshold, f"{where}: threshold")
            self.threshold: float | np.ndarray = self.thresholds_file.values
        elif isinstance(threshold, (list, tuple)):
            self.threshold = np.asarray(number_list(
                threshold, "threshold", minimum=0.0, maximum=1.0, where=where,
                example="[0.5, 0.7, ...] (one per class)"), dtype=np.float64)
        else:
            self.threshold = number(threshold, "threshold", minimum=0.0, maximum=1.0,
                                    why="it is compared with sigmoid scores; or one per class, or "
                                        "a thresholds.json", where=where)
        self.top_k = integer(top_k, "top_k", minimum=1, allow_none=True,
                             why="null: no top-k metrics", where=where)

    def thresholds_for(self, class_num: int) -> np.ndarray:
        """The threshold of every class (float64, so a calibrated threshold that lies between
        two float32 scores is compared exactly)."""
        if self.thresholds_file is not None:
            self.thresholds_file.check_classes(class_num, model="the evaluated model")
        if isinstance(self.threshold, np.ndarray):
            if len(self.threshold) != class_num:
                raise ConfigError(f"MultiLabelThresholdMetrics: threshold lists {len(self.threshold)} "
                                  f"values but the model predicts {class_num} classes")
            return self.threshold
        return np.full(class_num, self.threshold)

    def __call__(self, scores: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        num_classes = np.shape(scores)[1] if np.ndim(scores) == 2 else 1
        threshold = self.thresholds_for(num_classes)
        results = threshold_metrics(scores, targets, threshold)
        if self.top_k is not None:
            if self.top_k > num_classes:
                raise ConfigError(f"MultiLabelThresholdMetrics: top_k={self.top_k} is more than the "
                                  f"{num_classes} classes; lower it or set it to null")
            results.update(top_k_metrics(scores, targets, self.top_k, threshold=threshold))
        return results


def build_metrics(entries: list[dict] | None, where: str = "Metric.Eval") -> list:
    """Build the metrics listed in a config section, each entry `{ClassName: kwargs or null}`.
    A missing section (None) gives the default `[MultiLabelMAP()]`; an empty list gives none."""
    if entries is None:
        return [MultiLabelMAP()]
    return METRICS.build_list(entries, where, ENTRY_SHAPE)
