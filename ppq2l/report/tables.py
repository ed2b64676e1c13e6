"""The numbers of an evaluation report, from scores, targets and the thresholds in use: the
per-class table, precision-recall curves, the multi-label confusion counts and the images behind
the worst classes' errors. Numpy only; the figures and the page are drawn from these. A label
that is unknown (-1) counts nowhere: not in a class's AP, counts or curve, not as a false
positive, not as an error example."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ppq2l.calibration.search import Counts, SortedScores, check_scores, counts_at
from ppq2l.metric.functional import average_precision, metrics_from_counts

CURVE_POINTS = 400  # points per drawn precision-recall curve; the curve itself has one per score
COLUMNS = ("class", "ap", "precision", "recall", "f1", "threshold", "support", "predicted")


@dataclass
class ClassTable:
    """One row per class: AP and, at the thresholds in use, precision, recall and F1 (percent,
    NaN where undefined), with the support (positives) and the number of predicted images."""

    names: list[str]
    ap: np.ndarray
    counts: Counts
    thresholds: np.ndarray

    def rows(self) -> list[dict]:
        """The table as dicts keyed by COLUMNS."""
        precision, recall, f1 = (array * 100.0 for array in
                                 (self.counts.precision, self.counts.recall, self.counts.f1))
        return [{"class": name, "ap": self.ap[index], "precision": precision[index],
                 "recall": recall[index], "f1": f1[index], "threshold": self.thresholds[index],
                 "support": int(self.counts.support[index]),
                 "predicted": int(self.counts.predicted[index])}
                for index, name in enumerate(self.names)]

    def worst(self, count: int) -> list[int]:
        """The `count` classes with positives and the lowest F1 at their thresholds (then AP)."""
        f1 = np.nan_to_num(self.counts.f1, nan=0.0)
        ap = np.nan_to_num(self.ap, nan=0.0)
        candidates = np.flatnonzero(self.counts.support > 0)
        order = np.lexsort((ap[candidates], f1[candidates]))
        return candidates[order][:count].tolist()


def class_table(scores: np.ndarray, targets: np.ndarray, thresholds: np.ndarray,
                names: list[str]) -> ClassTable:
    """The per-class table of the report (AP in percent, integral mode as eval's default)."""
    ap = average_precision(scores, targets, "integral") * 100.0
    return ClassTable(names, ap, counts_at(scores, targets, thresholds), thresholds)


def summary_metrics(table: ClassTable) -> dict[str, float]:
    """mAP, macro/micro F1 and CP..OF1 at the thresholds in use, in percent, from the table's
    AP and per-class counts."""
    valid = table.ap[~np.isnan(table.ap)]
    summary = table.counts.summary()
    return {"mAP": float(valid.mean()) if valid.size else float("nan"),
            "macro-F1": summary["macro_f1"] * 100.0, "micro-F1": summary["micro_f1"] * 100.0,
            **metrics_from_counts(table.counts.true_positives, table.counts.predicted,
                                  table.counts.support)}


@dataclass
class Curve:
    """One class's precision-recall curve (thinned for drawing) and its operating point."""

    recall: np.ndarray
    precision: np.ndarray
    point: tuple[float, float] | None  # (recall, precision) at the threshold; None: nothing predicted


def pr_curves(scores: np.ndarray, targets: np.ndarray, table: ClassTable,
              classes: list[int]) -> list[Curve]:
    """The precision-recall curves of `classes`, one point per distinct score (no tie split)."""
    ranked = SortedScores.from_scores(*check_scores(scores[:, classes], np.asarray(targets)[:, classes]))
    curves = []
    k = np.arange(1, ranked.size + 1)
    for row, index in enumerate(classes):
        cuts = np.flatnonzero(ranked.ends[row])
        if len(cuts) > CURVE_POINTS:
            cuts = cuts[np.unique(np.linspace(0, len(cuts) - 1, CURVE_POINTS).round().astype(int))]
        tp = ranked.tp[row, cuts]
        support = max(int(table.counts.support[index]), 1)
        precision, recall = table.counts.precision[index], table.counts.recall[index]
        point = None if np.isnan(precision) or np.isnan(recall) else (recall, precision)
        curves.append(Curve(tp / support, tp / k[cuts], point))
    return curves


def confusion_counts(scores: np.ndarray, targets: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Counts [C, C]: counts[i, j] is the number of images showing class i on which class j is
    predicted although it is not there (a false positive of j). The images per class are the
    class table's support."""
    targets = np.asarray(targets)
    false_positive = (scores >= thresholds) & (targets == 0)
    counts = (targets > 0).T.astype(np.float32) @ false_positive.astype(np.float32)
    return counts.round().astype(np.int64)


@dataclass
class Example:
    """An image behind an error, with its score for the class and its true labels."""

    index: int
    score: float
    labels: list[str]


def error_examples(scores: np.ndarray, targets: np.ndarray, thresholds: np.ndarray,
                   names: list[str], index: int, count: int) -> tuple[list[Example], list[Example]]:
    """The `count` highest-scoring false positives and lowest-scoring false negatives of class
    `index` at its threshold."""
    targets = np.asarray(targets)
    positives = targets > 0
    column = scores[:, index].astype(np.float64)
    predicted = column >= thresholds[index]
    false_positives = np.flatnonzero(predicted & (targets[:, index] == 0))
    false_negatives = np.flatnonzero(~predicted & positives[:, index])
    false_positives = false_positives[np.argsort(-column[false_positives], kind="stable")][:count]
    false_negatives = false_negatives[np.argsort(column[false_negatives], kind="stable")][:count]

    def examples(rows: np.ndarray) -> list[Example]:
        return [Example(int(row), float(column[row]),
                        [names[label] for label in np.flatnonzero(positives[row])]) for row in rows]

    return examples(false_positives), examples(false_negatives)
