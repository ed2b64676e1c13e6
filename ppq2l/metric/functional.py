"""Multi-label metrics on score and target matrices of shape [N samples, C classes]: per-class
average precision, mAP, and the threshold and top-k precision/recall/F1 of the Q2L paper tables.

Ties: samples with equal scores for a class form one operating point of the precision-recall
curve (as in scikit-learn), so no result depends on the order of the samples or on the sort
algorithm. Every AP mode below is computed from the precision at each positive sample's
threshold, `#positives scoring >= s / #samples scoring >= s`, for all classes at once.

Unknown labels: a target of -1 says the label was never annotated. Every metric then judges each
class on the samples whose label for it is known (the OpenImages protocol, and VOC's rule for
"difficult" objects): AP equals scikit-learn's on that subset, and a prediction on an unknown
label is neither right nor wrong.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

AP_MODES = ("integral", "voc", "11point")
THRESHOLD_KEYS = ("CP", "CR", "CF1", "OP", "OR", "OF1")
# Below this many scores one thread sorts faster than starting more.
THREADED_SORT_MIN_SIZE = 1 << 18
MAX_SORT_THREADS = 16


def _validated(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Return `scores` as a 2-D real array, the targets as a boolean positives mask and a boolean
    known mask (None when no label is unknown)."""
    scores, targets = np.asarray(scores), np.asarray(targets)
    if scores.shape != targets.shape:
        raise ValueError(f"scores and targets must have the same shape, got scores {scores.shape} "
                         f"and targets {targets.shape}")
    if scores.ndim == 1:
        scores, targets = scores.reshape(-1, 1), targets.reshape(-1, 1)
    elif scores.ndim != 2:
        raise ValueError(f"scores and targets must be [N, C] (or [N] for one class), got shape "
                         f"{scores.shape}")
    if scores.dtype.kind not in "biuf" or targets.dtype.kind not in "biuf":
        raise ValueError(f"scores and targets must be real numbers, got dtypes {scores.dtype} and "
                         f"{targets.dtype}")
    if scores.dtype.kind == "f":
        if np.isnan(scores).any():
            row, column = np.argwhere(np.isnan(scores))[0]
            raise ValueError(f"scores contain NaN (first at sample {row}, class {column})")
        if scores.dtype == np.float16:
            # Widening is exact (ties are kept) and float32 sorts much faster.
            scores = scores.astype(np.float32)
    return (scores, *label_masks(targets))


def label_masks(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(positives, known) boolean masks of targets [N, C] that are a boolean mask or 0/1 with -1
    for unknown; `known` is None when no label is unknown. ValueError for any other value."""
    targets = np.asarray(targets)
    if targets.dtype.kind == "b":
        return targets, None
    positives = targets == 1
    unknown = targets == -1
    not_valid = ~positives & ~unknown & (targets != 0)
    if not_valid.any():
        row, column = np.argwhere(not_valid)[0]
        raise ValueError(f"targets must be 0/1 (multi-hot) or -1 (unknown), found "
                         f"{targets[row, column].item()!r} at sample {row}, class {column}")
    return positives, ~unknown if unknown.any() else None


def _true_counts(mask: np.ndarray, axis: int) -> np.ndarray:
    """How many entries of a boolean array are True along `axis`. Summing the bytes as uint8
    with an int32 accumulator is about twice as fast as `mask.sum` (which widens every entry to
    int64); int32 holds any count below 2**31."""
    dtype = np.int32 if mask.shape[axis] < 2 ** 31 else np.int64
    return mask.view(np.uint8).sum(axis=axis, dtype=dtype)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def sorted_columns(scores: np.ndarray) -> np.ndarray:
    """The columns of `scores` as the rows of a new array, each sorted ascending.

    Sorting is most of the cost of average precision; numpy releases the GIL while it sorts, so
    for large inputs blocks of columns are sorted on several threads. Each row is sorted on its
    own, so the result is the same whatever the number of threads."""
    columns = scores.T.copy(order="C")
    threads = min(usable_cpus(), MAX_SORT_THREADS, len(columns))
    if threads < 2 or columns.size < THREADED_SORT_MIN_SIZE:
        columns.sort(axis=1)
        return columns
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(lambda block: block.sort(axis=1), np.array_split(columns, threads)))
    return columns


def _count_below(sorted_rows: np.ndarray, row_of: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """For every query, how many entries of its row of `sorted_rows` (each row ascending) are
    strictly below it: numpy's searchsorted(side='left'), run for many rows at once."""
    length = sorted_rows.shape[1]
    flat = sorted_rows.ravel()
    base = row_of * length
    # Branch-free binary search: all rows have the same length, so every query halves in step.
    remaining = length
    while remaining > 1:
        half = remaining >> 1
        base += half * (flat[base + half] < queries)
        remaining -= half
    base += flat[base] < queries
    return base - row_of * length


def _unknown_at_or_above(scores: np.ndarray, known: np.ndarray, class_of: np.ndarray,
                         queries: np.ndarray) -> np.ndarray:
    """For each query score, how many samples with an unknown label for its class score >= it.
    Known entries become +inf, which is below no query, so counting the entries below a query
    counts unknown ones only."""
    unknown_only = np.where(known, np.inf, scores.astype(np.result_type(scores.dtype, np.float32)))
    unknown_count = (~known).sum(axis=0)
    return unknown_count[class_of] - _count_below(sorted_columns(unknown_only), class_of, queries)


def _precision_at_positives(scores: np.ndarray, positives: np.ndarray, counts: np.ndarray,
                            known: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision at every positive's score, `#positives >= s / #samples >= s` of its class, the
    samples counted among those whose label for the class is `known` (all when None).

    Returns (class, slot, precision) per positive, grouped by class and ascending by score within
    a class (`slot` = position within the class); tied positives share one precision."""
    num_samples, num_classes = scores.shape
    # Positives in sample-major order (cheaper to find than class-major); the sort below regroups them.
    sample_of, class_of = np.divmod(np.flatnonzero(positives), num_classes)
    columns = sorted_columns(scores)
    below = _count_below(columns, class_of, scores[sample_of, class_of])
    # One sort of the (class, samples below) keys groups the positives by class and orders each
    # class by score; tied positives get equal keys, and nothing else about a positive is needed.
    class_of, below = np.divmod(np.sort(class_of * (num_samples + 1) + below), num_samples + 1)
    index = np.arange(len(below))
    slot = index - (np.cumsum(counts) - counts)[class_of]
    new_score = np.ones(len(below), dtype=bool)
    new_score[1:] = (below[1:] != below[:-1]) | (class_of[1:] != class_of[:-1])
    # Every positive from the first of its tie group upwards scores >= it.
    first_tied = slot[np.maximum.accumulate(np.where(new_score, index, 0))]
    at_or_above = counts[class_of] - first_tied
    samples = num_samples - below
    if known is not None:
        # A positive's score is the smallest score of its class that `below` others are under.
        queries = columns.ravel()[class_of * num_samples + below]
        samples = samples - _unknown_at_or_above(scores, known, class_of, queries)
    return class_of, slot, at_or_above / samples


def average_precision(scores: np.ndarray, targets: np.ndarray, mode: str = "integral") -> np.ndarray:
    """Per-class average precision, float64 of length C in [0, 1]; NaN for a class without positives.

    `scores`/`targets` are [N, C] (or [N] for one class); targets are 0/1, or -1 where the label
    is unknown: those samples are left out of that class's AP. Modes:
    - `integral`: non-interpolated AP, sum over thresholds of recall step x precision; equal to
      `sklearn.metrics.average_precision_score` column by column.
    - `voc`: VOC2010 all-point interpolated AP as the official Query2Label evaluation computes it:
      each recall step is weighted by the best precision at that recall or beyond.
    - `11point`: VOC2007 AP, the mean over t = 0, 0.1, ..., 1 of the best precision at a recall
      >= t (0 when never reached); recall k/10 is compared exactly, not through float steps.
    Equal scores are one point of the curve in every mode; the original voc/11point code instead
    walks tied samples one by one in whatever order its sort left them.
    """
    if mode not in AP_MODES:
        raise ValueError(f"unknown average precision mode {mode!r}; valid modes: {', '.join(AP_MODES)}")
    scores, positives, known = _validated(scores, targets)
    num_classes = scores.shape[1]
    counts = _true_counts(positives, axis=0)
    result = np.full(num_classes, np.nan)
    has_positives = counts > 0
    if not has_positives.any():
        return result
    class_of, slot, precision = _precision_at_positives(scores, positives, counts, known)

    if mode == "integral":
        totals = np.bincount(class_of, weights=precision, minlength=num_classes)
        result[has_positives] = totals[has_positives] / counts[has_positives]
        return result
    # Interpolated precision: the best precision at this recall or any higher one. Past a positive
    # the curve only falls until the next positive, so the positives' points are enough; in
    # ascending score order this is a running maximum within each class.
    width = int(counts.max())
    curve = np.zeros((num_classes, width))
    curve.ravel()[class_of * width + slot] = precision
    envelope = np.maximum.accumulate(curve, axis=1)
    if mode == "voc":
        totals = np.bincount(class_of, weights=envelope.ravel()[class_of * width + slot],
                             minlength=num_classes)
        result[has_positives] = totals[has_positives] / counts[has_positives]
        return result
    classes = np.flatnonzero(has_positives)
    count = counts[classes, None]
    # Recall k/10 is first reached at the ceil(k * P / 10)-th positive from the top (at least the
    # first), which sits at ascending slot P - that.
    reach = np.maximum((np.arange(11) * count + 9) // 10, 1)
    result[classes] = envelope[classes[:, None], count - reach].mean(axis=1)
    return result


def mean_average_precision(scores: np.ndarray, targets: np.ndarray, mode: str = "integral") -> float:
    """Mean of the per-class AP over classes with at least one positive, in percent (x100);
    NaN only when no class has a positive."""
    per_class = average_precision(scores, targets, mode)
    valid = per_class[~np.isnan(per_class)]
    return float(valid.mean() * 100.0) if valid.size else float("nan")


def _f1(precision: float, recall: float) -> float:
    """Harmonic mean, 0 when both are 0."""
    total = precision + recall
    return 2.0 * precision * recall / total if total > 0 else 0.0


def _precision_recall_f1(predicted: np.ndarray, positives: np.ndarray, suffix: str = "",
                         known: np.ndarray | None = None) -> dict[str, float]:
    """Per-class (CP, CR, CF1) and overall (OP, OR, OF1) scores of boolean predictions, in percent;
    a prediction on an unknown label (not `known`) counts neither way."""
    if known is not None:
        predicted = predicted & known
    return metrics_from_counts(_true_counts(predicted & positives, axis=0),
                               _true_counts(predicted, axis=0), _true_counts(positives, axis=0), suffix)


def metrics_from_counts(correct_count: np.ndarray, predicted_count: np.ndarray,
                        positive_count: np.ndarray, suffix: str = "") -> dict[str, float]:
    """CP, CR, CF1, OP, OR, OF1 in percent (see `threshold_metrics`) from the per-class counts of
    correct predictions, predictions and positives."""
    has_positives = positive_count > 0
    if has_positives.any():
        class_precision = correct_count / np.maximum(predicted_count, 1)
        class_recall = correct_count[has_positives] / positive_count[has_positives]
        cp = float(class_precision[has_positives].mean())
        cr = float(class_recall.mean())
        cf1 = _f1(cp, cr)
    else:
        cp = cr = cf1 = float("nan")
    total_correct = float(correct_count.sum())
    total_predicted = float(predicted_count.sum())
    total_positive = float(positive_count.sum())
    op = total_correct / total_predicted if total_predicted > 0 else 0.0
    overall_recall = total_correct / total_positive if total_positive > 0 else float("nan")
    of1 = _f1(op, overall_recall) if total_positive > 0 else float("nan")
    values = (cp, cr, cf1, op, overall_recall, of1)
    return {f"{key}{suffix}": value * 100.0 for key, value in zip(THRESHOLD_KEYS, values)}


def threshold_metrics(scores: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """CP, CR, CF1, OP, OR, OF1 in percent, predicting a label when its score is >= `threshold`.

    Conventions (those of the ML-GCN evaluation that the Q2L/ASL tables follow): CP and CR are
    per-class precision and recall averaged over classes; a class with no predicted positive has
    precision 0; CF1 = 2*CP*CR/(CP+CR). OP, OR, OF1 pool the counts of all classes. Classes
    without positives are left out of CP/CR (their recall is undefined; on COCO val every class
    has positives, so nothing changes there) but their false positives do count in OP.
    OP is 0 when nothing is predicted (ML-GCN instead adds 1 to the predicted count of every
    class without predictions). Per-class metrics and OR/OF1 are NaN when there are no positives.
    A score on an unknown label (target -1) is left out: it is neither a hit nor a false alarm.
    """
    scores, positives, known = _validated(scores, targets)
    return _precision_recall_f1(scores >= threshold, positives, known=known)


def top_k_predictions(scores: np.ndarray, k: int) -> np.ndarray:
    """Boolean [N, C] mask of the k highest scores of every row; among equal scores at the cut,
    the lower class indices are taken, so exactly k labels are predicted per row."""
    num_classes = scores.shape[1]
    kth = np.partition(scores, num_classes - k, axis=1)[:, num_classes - k, None]
    predicted = scores >= kth
    # Only rows with more than k scores at or above the cut have ties to break; the rest are done.
    crowded = np.flatnonzero(_true_counts(predicted, axis=1) > k)
    if crowded.size:
        rows, cut = scores[crowded], kth[crowded]
        above = rows > cut
        missing = k - above.sum(axis=1, keepdims=True)
        at_cut = rows == cut
        predicted[crowded] = above | (at_cut & (np.cumsum(at_cut, axis=1) <= missing))
    return predicted


def top_k_passing(scores: np.ndarray, k: int, threshold: float) -> np.ndarray:
    """`top_k_predictions(scores, k) & (scores >= threshold)`, ranking only the rows that need it:
    when at most k scores of a row pass the threshold, they are all among its k best (anything
    tied with a passing score passes too), so the passing mask is already the answer there."""
    passed = scores >= threshold
    crowded = np.flatnonzero(_true_counts(passed, axis=1) > k)
    if crowded.size:
        passed[crowded] &= top_k_predictions(scores[crowded], k)
    return passed


def top_k_metrics(scores: np.ndarray, targets: np.ndarray, k: int = 3,
                  threshold: float | None = None) -> dict[str, float]:
    """CP..OF1 (keys suffixed `_top{k}`, in percent) when each sample predicts its k highest-scoring
    labels (see `top_k_predictions` for ties). With `threshold`, a top-k label also needs a score
    >= threshold, which is how ML-GCN and the paper tables after it compute the top-3 numbers.
    Same class conventions as `threshold_metrics`; the k labels are chosen among all classes, and
    those that fall on unknown labels are then left out."""
    scores, positives, known = _validated(scores, targets)
    num_classes = scores.shape[1]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= num_classes:
        raise ValueError(f"k must be an integer from 1 to the number of classes ({num_classes}), got {k!r}")
    if threshold is None:
        predicted = top_k_predictions(scores, int(k))
    else:
        predicted = top_k_passing(scores, int(k), threshold)
    return _precision_recall_f1(predicted, positives, suffix=f"_top{k}", known=known)
