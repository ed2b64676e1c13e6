"""The vectorised threshold search against a per-class brute force written from the definitions
(every distinct score tried as a threshold, exact fractions), on random and tie-heavy data, and
the cross-fitting that gives the held-out figures."""
from fractions import Fraction

import numpy as np
import pytest

from ppq2l.calibration.policy import parse_policy
from ppq2l.calibration.search import Counts, counts_at, cross_fit, fit_thresholds, fold_assignment

POLICIES = ["f1", "precision:0.9", "precision:0.6", "recall:0.8", "recall:1", "fixed:0.5"]


def brute_force_column(scores, positives, policy):
    """(threshold, reached) for one class: try every distinct score as the lowest accepted one."""
    if policy.kind == "fixed":
        return float(policy.target), True
    distinct = sorted(set(scores.tolist()), reverse=True)
    support = int(positives.sum())
    points = []  # (index, true positives, predicted) from the highest threshold down
    for index, value in enumerate(distinct):
        predicted = scores >= value
        points.append((index, int((predicted & positives).sum()), int(predicted.sum())))
    if policy.kind == "f1":
        best = max(Fraction(2 * tp, k + support) for _, tp, k in points)
        index = next(i for i, tp, k in points if Fraction(2 * tp, k + support) == best)
        reached = True
    elif policy.kind == "recall":
        good = [i for i, tp, _ in points if Fraction(tp, support) >= policy.target]
        index, reached = good[0], True
    else:
        good = [i for i, tp, k in points if Fraction(tp, k) >= policy.target]
        reached = bool(good)
        if reached:
            index = good[-1]
        else:
            best = max(Fraction(tp, k) for _, tp, k in points)
            index = [i for i, tp, k in points if Fraction(tp, k) == best][-1]
    if index == len(distinct) - 1:
        return distinct[index], reached
    return (distinct[index] + distinct[index + 1]) / 2.0, reached


def brute_force(scores, targets, policy, min_positives):
    scores = scores.astype(np.float64)
    positives = targets.astype(bool)
    pooled, pooled_reached = brute_force_column(scores.ravel(), positives.ravel(), policy)
    result = []
    for column in range(scores.shape[1]):
        if policy.kind != "fixed" and positives[:, column].sum() < min_positives:
            result.append((pooled, pooled_reached, True))
        else:
            result.append((*brute_force_column(scores[:, column], positives[:, column], policy), False))
    return result, pooled


def random_problem(seed, samples=70, classes=6, ties=False, dtype=np.float32):
    rng = np.random.default_rng(seed)
    targets = (rng.random((samples, classes)) < np.linspace(0.03, 0.5, classes)).astype(np.float32)
    scores = 1 / (1 + np.exp(-(rng.normal(-1, 1.5, targets.shape) + 2.5 * targets)))
    if ties:  # a handful of levels: most scores are tied with many others, across classes too
        scores = np.round(scores * 8) / 8
    return scores.astype(dtype), targets


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("seed, ties, dtype", [(0, False, np.float32), (1, True, np.float32),
                                               (2, True, np.float64), (3, False, np.float16),
                                               (4, True, np.float16)])
def test_agrees_with_brute_force(policy, seed, ties, dtype):
    scores, targets = random_problem(seed, ties=ties, dtype=dtype)
    policy = parse_policy(policy)
    fit = fit_thresholds(scores, targets, policy, min_positives=5)
    expected, pooled = brute_force(scores, targets, policy, 5)
    assert fit.global_threshold == pytest.approx(pooled, abs=0) or policy.kind == "fixed"
    for column, (threshold, reached, fallback) in enumerate(expected):
        assert fit.thresholds[column] == threshold, (column, fit.thresholds[column], threshold)
        assert fit.reached[column] == reached and fit.fallback[column] == fallback
    # the reported counts are those of the thresholds, computed directly
    direct = counts_at(scores.astype(np.float64), targets, fit.thresholds)
    np.testing.assert_array_equal(fit.counts.true_positives, direct.true_positives)
    np.testing.assert_array_equal(fit.counts.predicted, direct.predicted)
    np.testing.assert_array_equal(fit.counts.support, targets.sum(axis=0))


def test_a_threshold_never_splits_equal_scores():
    scores, targets = random_problem(5, samples=200, classes=4, ties=True)
    for policy in POLICIES[:-1]:
        fit = fit_thresholds(scores, targets, parse_policy(policy), min_positives=1)
        for column, threshold in enumerate(fit.thresholds):
            assert not np.any(scores[:, column].astype(np.float64) == threshold) \
                or threshold == scores[:, column].min()  # "accept all" sits on the lowest score


def test_exact_targets_are_met_with_equality():
    # 9 of 10 predicted are right at the threshold 0.55: precision exactly 0.9 reaches 0.9
    scores = np.array([[0.9], [0.8], [0.7], [0.6], [0.6], [0.6], [0.6], [0.6], [0.6], [0.55],
                       [0.5], [0.1]], dtype=np.float32)
    targets = np.array([[1], [1], [1], [1], [1], [1], [1], [1], [1], [0], [0], [1]])
    fit = fit_thresholds(scores, targets, parse_policy("precision:0.9"), min_positives=1)
    assert fit.reached[0] and fit.counts.predicted[0] == 10 and fit.counts.true_positives[0] == 9
    assert fit.thresholds[0] == pytest.approx((0.55 + 0.5) / 2)


def test_unreachable_precision_is_reported_with_the_best_one_not_clamped():
    scores = np.array([[0.9], [0.8], [0.7], [0.2]], dtype=np.float32)
    targets = np.array([[0], [1], [0], [1]])
    fit = fit_thresholds(scores, targets, parse_policy("precision:0.9"), min_positives=1)
    assert not fit.reached[0]
    # best precision 1/2 first at 0.8, and again (2/4) when all are predicted: the lowest wins
    assert fit.counts.precision[0] == 0.5 and fit.counts.predicted[0] == 4


def test_rare_classes_fall_back_to_the_pooled_threshold():
    scores, targets = random_problem(6, samples=100, classes=5)
    targets[:, 0] = 0
    targets[:3, 1] = 1
    targets[3:, 1] = 0
    fit = fit_thresholds(scores, targets, parse_policy("f1"), min_positives=5)
    assert fit.fallback.tolist() == [True, True, False, False, False]
    assert fit.thresholds[0] == fit.thresholds[1] == fit.global_threshold
    # the pooled threshold is the best micro-F1 threshold of the whole matrix
    pooled = fit_thresholds(scores.reshape(-1, 1), targets.reshape(-1, 1), parse_policy("f1"), 1)
    assert fit.global_threshold == pooled.thresholds[0]


def test_counts_summary_definitions():
    counts = Counts(np.array([3, 0, 0]), np.array([4, 0, 2]), np.array([6, 2, 0]))
    np.testing.assert_allclose(counts.precision, [0.75, np.nan, 0.0])
    np.testing.assert_allclose(counts.recall, [0.5, 0.0, np.nan])
    summary = counts.summary()
    assert summary["macro_f1"] == pytest.approx((2 * 3 / 10 + 0.0) / 2)  # classes with positives
    assert summary["micro_f1"] == pytest.approx(2 * 3 / (6 + 8))


def test_cross_fitting_scores_every_image_once_with_thresholds_fitted_without_it():
    scores, targets = random_problem(7, samples=90, classes=4)
    policy = parse_policy("f1")
    held_out = cross_fit(scores, targets, policy, min_positives=2, folds=3, seed=11)
    fold_of = fold_assignment(90, 3, 11)
    assert sorted(np.bincount(fold_of).tolist()) == [30, 30, 30]
    expected = None
    for fold in range(3):
        inside = fold_of == fold
        fit = fit_thresholds(scores[~inside], targets[~inside], policy, min_positives=2)
        part = counts_at(scores[inside], targets[inside], fit.thresholds)
        expected = part if expected is None else expected + part
    np.testing.assert_array_equal(held_out.true_positives, expected.true_positives)
    np.testing.assert_array_equal(held_out.support, targets.sum(axis=0))


def test_bad_scores_are_value_errors():
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        fit_thresholds(np.array([[1.5]]), np.array([[1]]), parse_policy("f1"))
    with pytest.raises(ValueError, match="both be"):
        fit_thresholds(np.zeros((3, 2)), np.zeros((3, 3)), parse_policy("f1"))
    with pytest.raises(ValueError, match="folds must be from 2"):
        cross_fit(np.zeros((3, 2)), np.zeros((3, 2)), parse_policy("f1"), folds=4)


def miscalibrated_problem(seed, samples=500, classes=12):
    """Demo-sized scores whose best threshold differs per class: each class's logits carry their
    own bias, so a single 0.5 is too high for some classes and too low for others."""
    rng = np.random.default_rng(seed)
    targets = (rng.random((samples, classes)) < 0.2).astype(np.float32)
    logits = rng.normal(np.linspace(-2.5, 1.5, classes), 1.0, targets.shape) + 3.5 * targets
    return (1 / (1 + np.exp(-logits))).astype(np.float32), targets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_held_out_f1_thresholds_beat_a_single_half(seed):
    scores, targets = miscalibrated_problem(seed)
    at_half = counts_at(scores, targets, 0.5).summary()["macro_f1"]
    held_out = cross_fit(scores, targets, parse_policy("f1"), folds=5, seed=0).summary()["macro_f1"]
    assert held_out > at_half + 0.2  # about 0.92 against 0.63 on these seeds


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_precision_target_holds_on_images_it_was_not_fitted_on(seed):
    scores, targets = miscalibrated_problem(seed)
    held_out = cross_fit(scores, targets, parse_policy("precision:0.9"), folds=5, seed=0)
    enough = held_out.support >= 20
    assert enough.all()  # 75-96 positives per class
    precision = held_out.precision[enough]
    assert (precision >= 0.85).all(), precision
    # the lowest threshold reaching 0.9 is chosen, so held out it hovers at 0.9 instead of far above
    assert precision.mean() == pytest.approx(0.9, abs=0.015) and (precision <= 0.95).all(), precision


def test_one_threshold_for_all_gives_every_class_the_pooled_one():
    scores, targets = random_problem(3, ties=False, dtype=np.float64)
    fit = fit_thresholds(scores, targets, parse_policy("f1"), min_positives=5, one_for_all=True)
    per_class = fit_thresholds(scores, targets, parse_policy("f1"), min_positives=5)
    assert fit.fallback.all() and (fit.thresholds == per_class.global_threshold).all()
    assert fit.global_threshold == per_class.global_threshold


def scope_problem(offsets: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores of 300 images whose classes differ only by a per-class shift of the logits."""
    rng = np.random.default_rng(seed)
    targets = (rng.random((300, len(offsets))) < 0.2).astype(np.uint8)
    logits = rng.normal(size=targets.shape) + 1.6 * targets + offsets
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32), targets


@pytest.mark.parametrize("offsets, expected", [
    (np.zeros(8), "pooled"),  # classes alike: per-class thresholds only fit noise
    (np.linspace(-2.5, 2.5, 8), "per_class"),  # each class its own shift: one threshold cannot fit
])
def test_scope_auto_takes_the_scope_with_the_better_held_out_macro_f1(offsets, expected):
    from ppq2l.calibration.run import fit_and_hold_out
    from ppq2l.calibration.scores_file import Scores

    scores, targets = scope_problem(offsets, seed=0)
    data = Scores(scores, targets, [f"{i}.jpg" for i in range(len(scores))], None, {"data": "DataLoader.Eval"})
    settings = {"policy": "f1", "min_positives": 5, "dataset": None, "folds": 5, "scope": "auto"}
    _, fit, held_out, _, scope = fit_and_hold_out({"Global": {"seed": 0}}, settings, data, None,
                                                  None, None, None)
    figures = scope["held_out_macro_f1"]
    assert scope["scope"] == expected == max(figures, key=figures.get)
    one_for_all = expected == "pooled"
    again = cross_fit(scores, targets, parse_policy("f1"), 5, 5, 0, one_for_all)
    np.testing.assert_array_equal(held_out.true_positives, again.true_positives)
    assert fit.fallback.all() == one_for_all
    for scope_name in ("per_class", "pooled"):  # a fixed scope is taken as it is, nothing compared
        _, fit, _, _, fixed = fit_and_hold_out({"Global": {"seed": 0}}, {**settings, "scope": scope_name},
                                               data, None, None, None, None)
        assert fixed["scope"] == scope_name and list(fixed["held_out_macro_f1"]) == [scope_name]


def masked_data(seed, ties=True):
    """Scores with ties and exact zeros, 0/1 labels, and about a third of them unknown (-1)."""
    rng = np.random.default_rng(seed)
    scores = rng.random((120, 5))
    if ties:
        scores = np.round(scores, 1)  # ties everywhere, and 0.0 scores
    labels = (rng.random((120, 5)) < 0.35).astype(np.int8)
    labels[rng.random((120, 5)) < 0.33] = -1
    return scores, labels


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unknown_labels_are_left_out_of_every_curve(policy, seed):
    """With unknown labels, each class's threshold and counts are those of its known images alone,
    and the pooled threshold is that of every known (image, class) entry on one curve."""
    scores, labels = masked_data(seed)
    policy = parse_policy(policy)
    fit = fit_thresholds(scores, labels, policy, min_positives=1)
    for column in range(scores.shape[1]):
        known = labels[:, column] >= 0
        alone = fit_thresholds(scores[known, column:column + 1], labels[known, column:column + 1] == 1,
                               policy, min_positives=1)
        assert fit.thresholds[column] == alone.thresholds[0]
        assert fit.reached[column] == alone.reached[0]
        for field in ("true_positives", "predicted", "support"):
            assert getattr(fit.counts, field)[column] == getattr(alone.counts, field)[0]
    known = labels >= 0
    pooled = fit_thresholds(scores[known][:, None], labels[known][:, None] == 1, policy, min_positives=1)
    assert fit.global_threshold == pooled.thresholds[0]


def test_counts_leave_unknown_labels_out():
    scores, labels = masked_data(3, ties=False)
    counts = counts_at(scores, labels, 0.5)
    for column in range(scores.shape[1]):
        known = labels[:, column] >= 0
        predicted = scores[known, column] >= 0.5
        positive = labels[known, column] == 1
        assert counts.predicted[column] == predicted.sum()
        assert counts.true_positives[column] == (predicted & positive).sum()
        assert counts.support[column] == positive.sum()
    # an unknown label is not a positive (int8 -1 is truthy as a bool)
    assert counts.support.sum() == (labels == 1).sum()


def test_a_class_with_every_label_unknown_takes_the_pooled_threshold():
    scores, labels = masked_data(4)
    labels[:, 2] = -1
    fit = fit_thresholds(scores, labels, parse_policy("f1"), min_positives=1)
    assert fit.fallback[2] and fit.thresholds[2] == fit.global_threshold
    assert fit.counts.predicted[2] == 0 and fit.counts.support[2] == 0


def test_cross_fitting_with_unknown_labels_counts_known_labels_once():
    scores, labels = masked_data(5)
    held_out = cross_fit(scores, labels, parse_policy("f1"), min_positives=1, folds=4)
    assert (held_out.support == (labels == 1).sum(axis=0)).all()
    assert (held_out.predicted <= (labels >= 0).sum(axis=0)).all()
