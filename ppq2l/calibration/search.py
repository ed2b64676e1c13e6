"""Per-class thresholds chosen by a policy on a score matrix [N images, C classes], all classes at
once: one sort per class column, cumulative sums, and a masked argmax; no loop over classes or
thresholds.

Operating points. A class is predicted when its score is >= its threshold. The possible
predictions of a class are "its k best-scoring images", where k only ends at the last of a group
of equal scores: a threshold never separates equal scores. The threshold of such a cut is
halfway between the lowest score it accepts and the highest score it rejects (the lowest score of
all when it accepts every image), so it is not tuned to one image's exact score and lands on the
same side of both neighbours however the scores are later rounded.

Classes with fewer than `min_positives` positives have too little evidence for a threshold of
their own; they take the threshold that the same policy picks for all classes pooled (one curve
over every score of the matrix), and are marked as fallbacks.

Unknown labels (target -1, partially labelled data) are left out: each class's curve runs over the
images whose label for it is known, as a per-class AP does, so an unknown label is neither a hit
nor a false alarm at any threshold.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ppq2l.calibration.policy import Policy
from ppq2l.metric.functional import label_masks


@dataclass
class Counts:
    """Per-class counts at some thresholds: true positives, predicted and actual positives."""

    true_positives: np.ndarray
    predicted: np.ndarray
    support: np.ndarray

    @property
    def precision(self) -> np.ndarray:
        """TP / predicted per class; NaN where nothing is predicted."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.predicted > 0, self.true_positives / self.predicted, np.nan)

    @property
    def recall(self) -> np.ndarray:
        """TP / positives per class; NaN for a class without positives."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.support > 0, self.true_positives / self.support, np.nan)

    @property
    def f1(self) -> np.ndarray:
        """2 TP / (predicted + positives) per class; NaN when both are 0."""
        total = self.predicted + self.support
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(total > 0, 2.0 * self.true_positives / total, np.nan)

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.true_positives + other.true_positives, self.predicted + other.predicted,
                      self.support + other.support)

    def summary(self) -> dict[str, float]:
        """Macro F1 (mean of the F1 of the classes with positives), micro precision, recall and
        F1 (counts pooled over classes), as fractions; NaN where undefined."""
        has = self.support > 0
        f1 = self.f1[has]
        tp, predicted, support = (float(array.sum()) for array in
                                  (self.true_positives, self.predicted, self.support))
        return {"macro_f1": float(f1.mean()) if f1.size else float("nan"),
                "micro_precision": tp / predicted if predicted else float("nan"),
                "micro_recall": tp / support if support else float("nan"),
                "micro_f1": 2.0 * tp / (predicted + support) if predicted + support else float("nan")}


@dataclass
class ThresholdFit:
    """The thresholds of a policy and what they give on the data they were fitted on."""

    policy: Policy
    thresholds: np.ndarray  # float64 [C]
    counts: Counts
    fallback: np.ndarray  # bool [C]: too few positives, the pooled threshold is used
    reached: np.ndarray  # bool [C]: a precision/recall target is met on the fitted data
    global_threshold: float
    global_reached: bool
    min_positives: int


def check_scores(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Scores as float32 or float64 [N, C] in [0, 1], and the targets as (positives, known) bool
    masks (see label_masks); ValueError otherwise. float16 is widened exactly; integers become
    float64."""
    scores, targets = np.asarray(scores), np.asarray(targets)
    if scores.ndim != 2 or scores.shape != targets.shape or scores.shape[0] == 0:
        raise ValueError(f"scores and targets must both be [N, C] with N >= 1, got {scores.shape} "
                         f"and {targets.shape}")
    if scores.dtype.kind not in "biuf":
        raise ValueError(f"scores must be real numbers, got {scores.dtype}")
    if scores.dtype not in (np.float32, np.float64):
        scores = scores.astype(np.float32 if scores.dtype == np.float16 else np.float64)
    if not (np.isfinite(scores).all() and scores.min() >= 0 and scores.max() <= 1):
        raise ValueError("scores must be finite sigmoid outputs in [0, 1]")
    return (scores, *label_masks(targets))


class SortedScores:
    """Every class's scores sorted from high to low, with the positives among the best k; entries
    whose label is unknown sort after every known one, and no cut reaches them."""

    def __init__(self, keys: np.ndarray, dtype: np.dtype, known: np.ndarray | None = None) -> None:
        """From `keys` [C, N] sorted ascending along each row (see `from_scores`); `known` [C]
        counts each row's entries with a known label (None: all are known)."""
        self.keys, unsigned = keys, keys.dtype.type
        high_to_low = keys[:, ::-1]  # a view; the arrays computed from it come out contiguous
        self.values = (high_to_low >> unsigned(2)).view(dtype)
        # tp[c, k]: positives among the k + 1 best scores of class c (int32 unless that overflows)
        count = np.int32 if keys.shape[1] < 2 ** 31 else np.int64
        self.tp = np.cumsum((high_to_low & unsigned(1)).astype(np.uint8), axis=1, dtype=count)
        self.support = self.tp[:, -1].copy()
        self.size = self.values.shape[1]
        # ends[c, k]: cutting after position k separates no equal scores
        self.ends = np.ones(self.values.shape, dtype=bool)
        np.not_equal(self.values[:, :-1], self.values[:, 1:], out=self.ends[:, :-1])
        self.known = np.full(len(keys), self.size) if known is None else np.asarray(known)
        # last[c]: the cut that accepts every known entry of class c (-1 when none is known)
        self.last = self.known - 1
        if (self.known < self.size).any():  # no cut beyond the known entries; after the last is one
            self.ends &= np.arange(self.size) <= self.last[:, None]
            rows = np.flatnonzero(self.last >= 0)
            self.ends[rows, self.last[rows]] = True

    @classmethod
    def from_scores(cls, scores: np.ndarray, positives: np.ndarray,
                    known: np.ndarray | None = None) -> SortedScores:
        """Sort checked scores [N, C] (see check_scores) with their bool positives and, where
        some labels are unknown, the bool mask of the known ones."""
        columns = scores.T.copy()
        columns[columns == 0] = 0  # -0.0 has the sign bit set and would sort above 1.0
        unsigned = np.uint32 if columns.dtype == np.float32 else np.uint64
        # Non-negative IEEE floats sort like their bit patterns; with the label in the lowest
        # bit and "known" in the next, one integer sort orders scores and carries the labels
        # along (under 1.0 the top two bits are free, so the shift loses nothing). An unknown
        # entry's key is 0, below every known one. Much faster than an argsort.
        keys = columns.view(unsigned) << unsigned(2)
        keys |= positives.T.view(np.uint8)
        keys |= unsigned(2)
        if known is not None:
            keys[~known.T] = 0
        keys.sort(axis=1)
        return cls(keys, columns.dtype, None if known is None else known.sum(axis=0))

    def pooled(self) -> SortedScores:
        """All classes as one curve. The rows are sorted already, and sorting their
        concatenation costs a fraction of sorting the scores afresh."""
        return SortedScores(np.sort(self.keys.ravel())[None, :], self.values.dtype,
                            np.array([self.known.sum()]))

    def cuts(self, policy: Policy) -> tuple[np.ndarray, np.ndarray]:
        """(index of the last accepted score, target reached) per class for `policy`."""
        rows = len(self.values)
        # k + 1 images are predicted at cut k; float64 in place keeps the memory traffic down
        k = np.arange(1, self.size + 1, dtype=np.float64)
        if policy.kind == "f1":
            f1 = np.add(k, self.support[:, None], dtype=np.float64)
            np.divide(self.tp, f1, out=f1)  # F1 / 2
            # Zero where a cut would split equal scores. A class with positives has its best F1
            # above 0 at a cut (the last position is one), so no zeroed position can win.
            f1 *= self.ends
            return f1.argmax(axis=1), np.ones(rows, dtype=bool)
        target = policy.target
        # exact: positives * denominator against numerator * count, in int64 (up to 10**6 times
        # a count), never a rounded quotient
        scaled = np.multiply(self.tp, target.denominator, dtype=np.int64)
        if policy.kind == "recall":  # recall grows with k: the first cut that reaches it
            ok = scaled >= target.numerator * self.support[:, None]
            ok &= self.ends
            return ok.argmax(axis=1), ok.any(axis=1)
        # precision: the last cut that reaches it; without one, the best precision there is
        ok = scaled >= target.numerator * np.arange(1, self.size + 1)
        ok &= self.ends
        reached = ok.any(axis=1)
        cut = self.size - 1 - ok[:, ::-1].argmax(axis=1)
        missed = np.flatnonzero(~reached)
        if missed.size:
            ends = self.ends[missed]
            precision = np.divide(self.tp[missed], k, dtype=np.float64)
            precision *= ends  # precision >= 0 and the last position is a cut: zeros never win
            best = precision == precision.max(axis=1, keepdims=True)
            best &= ends
            cut[missed] = self.size - 1 - best[:, ::-1].argmax(axis=1)
        return cut, reached

    def thresholds_at(self, cut: np.ndarray) -> np.ndarray:
        """The threshold that accepts exactly the scores up to `cut` (see the module docstring)."""
        rows = np.arange(len(self.values))
        accepted = self.values[rows, cut].astype(np.float64)
        rejected = self.values[rows, np.minimum(cut + 1, self.size - 1)].astype(np.float64)
        middle = (accepted + rejected) / 2.0
        # float64 inputs: the middle of two neighbouring doubles rounds to one of them
        middle = np.where(middle > rejected, middle, accepted)
        return np.where(cut >= self.last, accepted, middle)

    def counts_at(self, thresholds: np.ndarray) -> Counts:
        """Counts per class when class c is predicted at scores >= thresholds[c]."""
        # the unknown entries sort last: a threshold that takes one has taken every known entry
        predicted = np.minimum((self.values >= thresholds[:, None]).sum(axis=1), self.known)
        rows = np.arange(len(self.values))
        tp = np.where(predicted > 0, self.tp[rows, np.maximum(predicted - 1, 0)], 0)
        return Counts(tp, predicted, self.support.copy())


def counts_at(scores: np.ndarray, targets: np.ndarray, thresholds: np.ndarray | float) -> Counts:
    """Per-class counts when class c is predicted at scores >= thresholds[c] (compared in float64,
    so a threshold between two float32 scores is never rounded onto one of them); targets as
    label_masks reads them, an unknown label counted nowhere."""
    predicted = scores >= np.asarray(thresholds, dtype=np.float64)
    positives, known = label_masks(targets)
    if known is not None:
        predicted &= known
    return Counts((predicted & positives).sum(axis=0), predicted.sum(axis=0), positives.sum(axis=0))


def fit_thresholds(scores: np.ndarray, targets: np.ndarray, policy: Policy,
                   min_positives: int = 5, one_for_all: bool = False) -> ThresholdFit:
    """Per-class thresholds for `policy` on sigmoid `scores` [N, C] and `targets` [N, C] (1 or
    True positive, 0 negative, -1 unknown: left out); with `one_for_all`, every class takes the
    threshold of all classes pooled."""
    scores, positives, known = check_scores(scores, targets)
    if policy.kind == "fixed":
        value = float(policy.target)
        thresholds = np.full(scores.shape[1], value)
        counts = counts_at(scores, targets, thresholds)
        none = np.zeros(scores.shape[1], dtype=bool)
        return ThresholdFit(policy, thresholds, counts, none, ~none, value, True, min_positives)
    classes = SortedScores.from_scores(scores, positives, known)
    pooled = classes.pooled()
    pooled_cut, pooled_reached = pooled.cuts(policy)
    global_threshold = float(pooled.thresholds_at(pooled_cut)[0])
    cut, reached = classes.cuts(policy)
    thresholds = classes.thresholds_at(cut)
    fallback = np.ones(len(thresholds), dtype=bool) if one_for_all else classes.support < min_positives
    thresholds[fallback] = global_threshold
    reached[fallback] = pooled_reached[0]
    return ThresholdFit(policy, thresholds, classes.counts_at(thresholds), fallback, reached,
                        global_threshold, bool(pooled_reached[0]), min_positives)


def fold_assignment(num_images: int, folds: int, seed: int) -> np.ndarray:
    """The fold of every image: a seeded shuffle dealt into `folds` folds of equal size (+-1)."""
    fold_of = np.empty(num_images, dtype=np.int64)
    fold_of[np.random.default_rng(seed).permutation(num_images)] = np.arange(num_images) % folds
    return fold_of


def cross_fit(scores: np.ndarray, targets: np.ndarray, policy: Policy, min_positives: int = 5,
              folds: int = 5, seed: int = 0, one_for_all: bool = False) -> Counts:
    """Held-out counts: each fold is scored at thresholds fitted on the other folds, and the
    counts of all folds are added, so every image is counted once by thresholds that never saw it."""
    scores, targets = check_scores(scores, targets)[0], np.asarray(targets)
    if not 2 <= folds <= len(scores):
        raise ValueError(f"folds must be from 2 to the number of images ({len(scores)}), got {folds}")
    fold_of = fold_assignment(len(scores), folds, seed)
    total = None
    for fold in range(folds):  # a handful of folds; each fit is vectorised over classes
        held_out = fold_of == fold
        fit = fit_thresholds(scores[~held_out], targets[~held_out], policy, min_positives, one_for_all)
        counts = counts_at(scores[held_out], targets[held_out], fit.thresholds)
        total = counts if total is None else total + counts
    return total
