"""Average precision, mAP, threshold and top-k metrics against scikit-learn, per-class loops and
small cases worked by hand."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from ppq2l.metric import functional
from ppq2l.metric.functional import (
    AP_MODES,
    average_precision,
    mean_average_precision,
    threshold_metrics,
    top_k_metrics,
    top_k_predictions,
)


def random_problem(seed: int, num_samples: int = 400, num_classes: int = 7, rate: float = 0.2):
    """Scores in [0, 1) and multi-hot targets with a few rare classes."""
    rng = np.random.default_rng(seed)
    scores = rng.random((num_samples, num_classes))
    rates = np.linspace(0.01, rate * 2, num_classes)
    targets = (rng.random((num_samples, num_classes)) < rates).astype(np.float32)
    # Make positives score a little higher on average so AP is not just the positive rate.
    scores = np.clip(scores + 0.3 * targets * rng.random((num_samples, num_classes)), 0, 1)
    return scores, targets


def sklearn_ap(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return np.array([average_precision_score(targets[:, c], scores[:, c])
                     if targets[:, c].any() else np.nan for c in range(scores.shape[1])])


def per_sample_curve(scores: np.ndarray, labels: np.ndarray):
    """Precision and true-positive count after each sample, best score first (no ties assumed)."""
    order = np.argsort(-scores, kind="stable")
    true_positives = np.cumsum(labels[order].astype(np.int64))
    return true_positives / np.arange(1, len(scores) + 1), true_positives


def voc_reference(scores: np.ndarray, labels: np.ndarray) -> float:
    """All-point interpolated AP walked one sample at a time, as VOC2010 defines it."""
    precision, true_positives = per_sample_curve(scores, labels)
    total, area, previous = true_positives[-1], 0.0, 0
    for i in range(len(scores)):
        if true_positives[i] > previous:
            area += (true_positives[i] - previous) / total * precision[i:].max()
            previous = true_positives[i]
    return area


def eleven_point_reference(scores: np.ndarray, labels: np.ndarray) -> float:
    """VOC2007 AP: mean over recall k/10 of the best precision at recall >= k/10."""
    precision, true_positives = per_sample_curve(scores, labels)
    total = true_positives[-1]
    best = [precision[10 * true_positives >= k * total].max(initial=0.0) for k in range(11)]
    return float(np.mean(best))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_integral_ap_equals_sklearn_on_random_scores(seed, dtype):
    scores, targets = random_problem(seed)
    scores = scores.astype(dtype)
    np.testing.assert_allclose(average_precision(scores, targets), sklearn_ap(scores, targets),
                               rtol=0, atol=1e-12)


def tie_aware_reference_ap(scores: np.ndarray, labels: np.ndarray) -> float:
    """Non-interpolated AP of one class written out directly: rank best first, cumulate true and
    false positives, read the precision at each positive's tie group end, average."""
    order = np.argsort(-scores, kind="stable")
    ranked, relevant = scores[order], labels[order] > 0
    true_positives, false_positives = np.cumsum(relevant), np.cumsum(~relevant)
    group_end = np.array([np.flatnonzero(ranked == value)[-1] for value in ranked])
    precision = true_positives[group_end] / (true_positives[group_end] + false_positives[group_end])
    return float(precision[relevant].mean())


@pytest.mark.parametrize("cpus", [1, 3])
def test_ap_with_the_columns_sorted_on_threads_equals_a_direct_reference(monkeypatch, cpus):
    # Large enough for the threaded sort; 3 threads split the 70 columns unevenly.
    monkeypatch.setattr(functional, "usable_cpus", lambda: cpus)
    scores, targets = random_problem(17, num_samples=4000, num_classes=70, rate=0.03)
    scores = np.round(scores, 3).astype(np.float32)  # many ties
    assert scores.size >= functional.THREADED_SORT_MIN_SIZE
    np.testing.assert_array_equal(functional.sorted_columns(scores), np.sort(scores.T, axis=1))
    expected = [tie_aware_reference_ap(scores[:, c], targets[:, c]) for c in range(0, 70, 7)]
    np.testing.assert_allclose(average_precision(scores, targets)[::7], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("tie_maker", ["one_decimal", "float16_sigmoid"])
def test_integral_ap_equals_sklearn_with_many_tied_scores(tie_maker):
    scores, targets = random_problem(3, num_samples=600)
    if tie_maker == "one_decimal":
        scores = np.round(scores, 1)
    else:
        # Saturated half-precision sigmoids: many scores are exactly 1.0 or share a value.
        logits = (scores - 0.5) * 40
        scores = (1 / (1 + np.exp(-logits))).astype(np.float16)
    assert len(np.unique(scores)) < scores.size // 2
    np.testing.assert_allclose(average_precision(scores, targets),
                               sklearn_ap(scores.astype(np.float64), targets), rtol=0, atol=1e-12)


def test_tied_scores_form_one_point_of_the_curve():
    # Best first: 0.9 negative, then a positive and a negative tied at 0.5, then 0.1 positive.
    # Points: (tp 0 of 1 sample), (tp 1 of 3 samples), (tp 2 of 4) -> precision 0, 1/3, 1/2.
    # integral: (1/3 + 1/2) / 2 = 5/12; voc: the 1/3 is lifted to the later 1/2, so 1/2.
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    targets = np.array([0, 1, 0, 1])
    assert average_precision(scores, targets, "integral")[0] == pytest.approx(5 / 12, abs=1e-15)
    assert average_precision(scores, targets, "voc")[0] == pytest.approx(0.5, abs=1e-15)
    # Swapping the tied samples must not change anything.
    swapped = [0, 2, 1, 3]
    for mode in AP_MODES:
        assert average_precision(scores[swapped], targets[swapped], mode)[0] == \
            average_precision(scores, targets, mode)[0]


def test_voc_ap_hand_example():
    # Ranked labels 1 0 0 1 1 (P = 3). Precision after each sample: 1, 1/2, 1/3, 1/2, 3/5.
    # The envelope at the three recall steps (1/3, 2/3, 1) is max of precision from there on:
    # 1, max(1/2, 3/5) = 3/5, 3/5. VOC AP = (1 + 3/5 + 3/5) / 3 = 11/15 = 0.7333...
    # The non-interpolated AP of the same ranking is (1 + 1/2 + 3/5) / 3 = 0.7.
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    targets = np.array([1, 0, 0, 1, 1])
    assert average_precision(scores, targets, "voc")[0] == pytest.approx(11 / 15, abs=1e-15)
    assert average_precision(scores, targets, "integral")[0] == pytest.approx(0.7, abs=1e-15)


def test_eleven_point_ap_hand_example():
    # Same ranking 1 0 0 1 1: (recall, precision) = (1/3, 1), (1/3, 1/2), (1/3, 1/3), (2/3, 1/2),
    # (1, 3/5). For t = 0, 0.1, 0.2, 0.3 every point qualifies -> 1. For t = 0.4 .. 1.0 only the
    # last two (0.4..0.6) or the last one (0.7..1.0) -> 3/5. AP = (4 * 1 + 7 * 3/5) / 11 = 8.2 / 11.
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    targets = np.array([1, 0, 0, 1, 1])
    assert average_precision(scores, targets, "11point")[0] == pytest.approx(8.2 / 11, abs=1e-15)


def test_eleven_point_counts_recall_reached_exactly_at_a_tenth():
    # 3 positives, 7 negatives, then 7 positives (P = 10, N = 17). Recall 0.3 is reached with
    # precision 1, so t = 0, 0.1, 0.2, 0.3 give 1; from t = 0.4 the best is at the end, 10/17.
    # AP = (4 + 7 * 10/17) / 11 = 138/187. Float steps (0.30000000000000004) would drop t = 0.3.
    targets = np.array([1] * 3 + [0] * 7 + [1] * 7)
    scores = np.linspace(1.0, 0.0, len(targets))
    assert average_precision(scores, targets, "11point")[0] == pytest.approx(138 / 187, abs=1e-15)


@pytest.mark.parametrize("seed", [4, 5])
def test_interpolated_modes_equal_per_sample_reference_without_ties(seed):
    scores, targets = random_problem(seed, num_samples=300, num_classes=5)
    scores = scores + np.arange(scores.size).reshape(scores.shape) * 1e-9  # break ties at the clip
    assert all(len(np.unique(column)) == len(column) for column in scores.T)
    voc = [voc_reference(scores[:, c], targets[:, c]) for c in range(5)]
    eleven = [eleven_point_reference(scores[:, c], targets[:, c]) for c in range(5)]
    np.testing.assert_allclose(average_precision(scores, targets, "voc"), voc, rtol=0, atol=1e-12)
    np.testing.assert_allclose(average_precision(scores, targets, "11point"), eleven, rtol=0,
                               atol=1e-12)


@pytest.mark.parametrize("mode", AP_MODES)
def test_ap_does_not_depend_on_sample_order_with_ties(mode):
    scores, targets = random_problem(6, num_samples=500)
    scores = np.round(scores, 1).astype(np.float32)
    reference = average_precision(scores, targets, mode)
    rng = np.random.default_rng(7)
    for _ in range(3):
        order = rng.permutation(len(scores))
        np.testing.assert_array_equal(average_precision(scores[order], targets[order], mode),
                                      reference)


def test_interpolation_never_lowers_ap():
    scores, targets = random_problem(8)
    integral = average_precision(scores, targets, "integral")
    voc = average_precision(scores, targets, "voc")
    assert np.all(voc >= integral - 1e-12)
    assert np.all((voc >= 0) & (voc <= 1))


def test_perfect_and_reversed_rankings():
    targets = np.array([[1, 0], [1, 0], [0, 1], [0, 1]])
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.6]])
    for mode in AP_MODES:
        np.testing.assert_allclose(average_precision(scores, targets, mode), [1.0, 1.0])
    # Positives ranked last: precision 1/3 and 2/4 at the two positives.
    reversed_targets = targets[:, ::-1]
    assert average_precision(scores, reversed_targets)[0] == pytest.approx((1 / 3 + 2 / 4) / 2)


@pytest.mark.parametrize("mode", AP_MODES)
def test_class_without_positives_is_nan_and_left_out_of_the_mean(mode):
    scores, targets = random_problem(9, num_classes=4)
    targets[:, 2] = 0
    per_class = average_precision(scores, targets, mode)
    assert per_class.dtype == np.float64 and per_class.shape == (4,)
    assert np.isnan(per_class[2]) and not np.isnan(per_class[[0, 1, 3]]).any()
    expected = per_class[[0, 1, 3]].mean() * 100
    assert mean_average_precision(scores, targets, mode) == pytest.approx(expected, abs=1e-12)


def test_map_is_nan_only_when_no_class_has_positives():
    scores = np.random.default_rng(10).random((20, 3))
    assert np.isnan(mean_average_precision(scores, np.zeros((20, 3))))
    assert np.isnan(average_precision(scores, np.zeros((20, 3)))).all()
    assert np.isnan(average_precision(np.zeros((0, 3)), np.zeros((0, 3)))).all()


def test_map_is_in_percent():
    scores, targets = random_problem(11)
    assert mean_average_precision(scores, targets) == pytest.approx(
        np.mean(sklearn_ap(scores, targets)) * 100, abs=1e-10)


def test_one_dimensional_input_is_one_class():
    scores, targets = random_problem(12, num_classes=1)
    result = average_precision(scores[:, 0], targets[:, 0])
    assert result.shape == (1,)
    assert result[0] == pytest.approx(average_precision_score(targets[:, 0], scores[:, 0]), abs=1e-12)


def test_bad_mode_names_the_valid_modes():
    with pytest.raises(ValueError, match="valid modes: integral, voc, 11point"):
        average_precision(np.zeros((2, 2)), np.zeros((2, 2)), mode="11points")


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(4, 2\)"):
        average_precision(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"\(2, 2, 2\)"):
        threshold_metrics(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))


def test_nan_scores_and_non_binary_targets_are_rejected():
    scores = np.full((3, 2), 0.5)
    scores[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN.*sample 1, class 1"):
        average_precision(scores, np.zeros((3, 2)))
    targets = np.zeros((3, 2))
    targets[2, 0] = 2
    with pytest.raises(ValueError, match=r"0/1 \(multi-hot\) or -1 \(unknown\), found 2.0 at sample 2, class 0"):
        mean_average_precision(np.zeros((3, 2)), targets)


def loop_counts(predicted: np.ndarray, targets: np.ndarray) -> dict:
    """CP..OF1 in percent, one class at a time, with the documented conventions."""
    class_precision, class_recall = [], []
    correct = predicted_total = positive_total = 0
    for c in range(targets.shape[1]):
        hits = int(np.sum(predicted[:, c] & (targets[:, c] == 1)))
        made = int(np.sum(predicted[:, c]))
        real = int(np.sum(targets[:, c] == 1))
        correct, predicted_total, positive_total = correct + hits, predicted_total + made, positive_total + real
        if real:
            class_precision.append(hits / made if made else 0.0)
            class_recall.append(hits / real)
    cp, cr = np.mean(class_precision), np.mean(class_recall)
    op, overall_recall = correct / predicted_total, correct / positive_total
    return {"CP": cp, "CR": cr, "CF1": 2 * cp * cr / (cp + cr), "OP": op, "OR": overall_recall,
            "OF1": 2 * op * overall_recall / (op + overall_recall)}


def test_threshold_metrics_equal_a_per_class_loop():
    scores, targets = random_problem(13, num_classes=6)
    scores[:, 1] = 0.2  # a class that is never predicted: its precision counts as 0
    targets[:, 4] = 0  # a class without positives: left out of CP and CR
    scores[0, 0] = 0.5  # a score exactly at the threshold is a prediction
    expected = {key: value * 100 for key, value in loop_counts(scores >= 0.5, targets).items()}
    result = threshold_metrics(scores, targets, threshold=0.5)
    assert set(result) == {"CP", "CR", "CF1", "OP", "OR", "OF1"}
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-10), key


def test_threshold_metrics_hand_example():
    # Class 0: predicted on samples 0, 1; positive on 0, 2 -> P 1/2, R 1/2.
    # Class 1: never predicted; positive on 1 -> P 0, R 0.
    # CP = 1/4, CR = 1/4, CF1 = 1/4; pooled: 1 correct of 2 predicted, 3 positives.
    scores = np.array([[0.9, 0.1], [0.7, 0.2], [0.3, 0.4]])
    targets = np.array([[1, 0], [0, 1], [1, 0]])
    result = threshold_metrics(scores, targets)
    expected = {"CP": 25, "CR": 25, "CF1": 25, "OP": 50, "OR": 100 / 3, "OF1": 40}
    for key, value in expected.items():
        assert result[key] == pytest.approx(value), key


def test_top_k_predictions_break_ties_by_class_index():
    scores = np.array([[0.5, 0.5, 0.5, 0.5], [0.1, 0.9, 0.9, 0.2], [0.3, 0.2, 0.3, 0.3]])
    predicted = top_k_predictions(scores, 3)
    np.testing.assert_array_equal(predicted, [[1, 1, 1, 0], [0, 1, 1, 1], [1, 0, 1, 1]])
    assert (predicted.sum(axis=1) == 3).all()


@pytest.mark.parametrize("k", [1, 3, 8])
def test_top_k_predictions_equal_a_stable_sort_of_each_row(k):
    # Many ties (one decimal), some rows entirely tied, some rows without ties at the cut.
    scores, _ = random_problem(16, num_samples=300, num_classes=8)
    scores = np.round(scores, 1)
    scores[:20] = 0.5
    scores[20:40] = np.arange(8) / 10
    expected = np.zeros(scores.shape, dtype=bool)
    for row, values in enumerate(scores):
        expected[row, np.argsort(-values, kind="stable")[:k]] = True  # ties: lower class first
    np.testing.assert_array_equal(top_k_predictions(scores, k), expected)


@pytest.mark.parametrize("k", [1, 3, 8])
@pytest.mark.parametrize("threshold", [0.0, 0.5, 0.7, 1.1])
def test_top_k_passing_equals_top_k_and_threshold(k, threshold):
    # Rows with fewer, exactly k and more than k passing scores, ties at the threshold and at the
    # top-k cut; threshold 0 makes every row crowded, 1.1 none.
    scores, _ = random_problem(18, num_samples=400, num_classes=8)
    scores = np.round(scores, 1)
    scores[:30] = 0.5
    expected = top_k_predictions(scores, k) & (scores >= threshold)
    np.testing.assert_array_equal(functional.top_k_passing(scores, k, threshold), expected)


def test_top3_metrics_equal_a_per_class_loop():
    scores, targets = random_problem(14, num_classes=8)
    scores = np.round(scores, 1)  # ties at the cut
    order = np.argsort(-scores, axis=1, kind="stable")[:, :3]
    predicted = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(predicted, order, True, axis=1)
    expected = loop_counts(predicted, targets)
    result = top_k_metrics(scores, targets, k=3)
    assert set(result) == {f"{key}_top3" for key in expected}
    for key, value in expected.items():
        assert result[f"{key}_top3"] == pytest.approx(value * 100, abs=1e-10), key
    # With a threshold, a top-3 label below it is not predicted (the ML-GCN top-3 convention).
    thresholded = loop_counts(predicted & (scores >= 0.5), targets)
    result = top_k_metrics(scores, targets, k=3, threshold=0.5)
    for key, value in thresholded.items():
        assert result[f"{key}_top3"] == pytest.approx(value * 100, abs=1e-10), key


def test_top_k_rejects_k_outside_the_classes():
    scores, targets = random_problem(15, num_samples=10, num_classes=4)
    for k in (0, 5, 2.5):
        with pytest.raises(ValueError, match="k must be an integer from 1 to the number of classes"):
            top_k_metrics(scores, targets, k=k)
    assert set(top_k_metrics(scores, targets, k=4)) == {f"{key}_top4" for key in
                                                      ("CP", "CR", "CF1", "OP", "OR", "OF1")}
