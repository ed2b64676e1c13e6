"""Metrics with unknown labels (-1): each class is judged on the samples whose label for it is
known, so AP equals scikit-learn on that subset (ties included, every AP mode), and threshold and
top-k metrics leave predictions on unknown labels out."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from ppq2l.engine.evaluator import compute_metrics
from ppq2l.metric import MultiLabelMAP, MultiLabelThresholdMetrics
from ppq2l.metric.functional import AP_MODES, average_precision, threshold_metrics, top_k_metrics


def partial_problem(seed, num_samples=300, num_classes=6, unknown_rate=0.4, levels=None):
    """Scores (rounded to `levels` values for many ties), 0/1 targets, then a random share of the
    labels set to -1; class 4 keeps its positives only among the unknown, class 5 is all unknown."""
    rng = np.random.default_rng(seed)
    targets = (rng.random((num_samples, num_classes)) < 0.25).astype(np.int8)
    scores = np.clip(rng.random((num_samples, num_classes)) + 0.4 * targets * rng.random(targets.shape), 0, 1)
    if levels:
        scores = np.round(scores * levels) / levels
    partial = np.where(rng.random(targets.shape) < unknown_rate, -1, targets).astype(np.int8)
    partial[:, 4] = np.where(targets[:, 4] == 1, -1, partial[:, 4])
    partial[:, 5] = -1
    return scores, partial


def on_known(function, scores, partial, column):
    known = partial[:, column] >= 0
    labels = partial[known, column]
    return function(scores[known, column], labels) if labels.any() else np.nan


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed, levels", [(0, None), (1, None), (2, 10), (3, 4)])
def test_ap_equals_sklearn_on_the_known_subset(seed, levels, dtype):
    scores, partial = partial_problem(seed, levels=levels)
    scores = scores.astype(dtype)
    expected = [on_known(lambda s, y: average_precision_score(y, s), scores, partial, c)
                for c in range(partial.shape[1])]
    got = average_precision(scores, partial)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert np.isnan(got[4]) and np.isnan(got[5])
    # the unknown entries really move the result: counting them as negatives gives other values
    assert not np.allclose(got[:4], average_precision(scores, np.maximum(partial, 0))[:4])


@pytest.mark.parametrize("mode", AP_MODES)
def test_every_ap_mode_is_the_complete_label_ap_of_the_known_subset(mode):
    scores, partial = partial_problem(5, levels=20)
    for column in range(4):
        known = partial[:, column] >= 0
        alone = average_precision(scores[known, column], partial[known, column], mode)[0]
        assert average_precision(scores, partial, mode)[column] == pytest.approx(alone, abs=1e-12)


def test_integer_scores_and_infinite_scores_are_handled():
    scores = np.array([[3, 1], [2, 2], [1, 3], [5, 0]])
    partial = np.array([[1, 0], [-1, 1], [0, -1], [-1, 1]], dtype=np.int8)
    got = average_precision(scores, partial)
    assert got[0] == 1.0 and got[1] == pytest.approx(average_precision_score([0, 1, 1], [1, 2, 0]))
    infinite = np.array([[np.inf, 0.0], [np.inf, 0.5], [-np.inf, 0.2]])
    got = average_precision(infinite, np.array([[1, 0], [-1, 1], [0, 1]]))
    assert got[0] == 1.0


def loop_counts(predicted, partial):
    """CP..OF1 with predictions on unknown labels dropped, one class at a time."""
    hits, made, real = [], [], []
    for c in range(partial.shape[1]):
        known = partial[:, c] >= 0
        hits.append(int(np.sum(predicted[known, c] & (partial[known, c] == 1))))
        made.append(int(np.sum(predicted[known, c])))
        real.append(int(np.sum(partial[:, c] == 1)))
    used = [c for c in range(len(real)) if real[c]]
    cp = np.mean([hits[c] / made[c] if made[c] else 0.0 for c in used])
    cr = np.mean([hits[c] / real[c] for c in used])
    op, overall = sum(hits) / sum(made), sum(hits) / sum(real)
    return {"CP": cp, "CR": cr, "CF1": 2 * cp * cr / (cp + cr), "OP": op, "OR": overall,
            "OF1": 2 * op * overall / (op + overall)}


def test_threshold_and_top_k_metrics_leave_unknown_labels_out():
    scores, partial = partial_problem(7)
    got = threshold_metrics(scores, partial, 0.6)
    for key, value in loop_counts(scores >= 0.6, partial).items():
        assert got[key] == pytest.approx(100 * value)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :3]
    top = np.zeros_like(scores, dtype=bool)
    np.put_along_axis(top, order, True, axis=1)
    got = top_k_metrics(scores, partial, 3)
    for key, value in loop_counts(top, partial).items():
        assert got[f"{key}_top3"] == pytest.approx(100 * value)
    assert got["OP_top3"] != pytest.approx(top_k_metrics(scores, np.maximum(partial, 0), 3)["OP_top3"])


def test_the_evaluator_keeps_unknown_labels_for_the_metrics():
    scores, partial = partial_problem(9)
    results = compute_metrics([MultiLabelMAP(), MultiLabelThresholdMetrics()], scores, partial.astype(np.float32))
    assert results["mAP"] == pytest.approx(100 * np.nanmean(average_precision(scores, partial)))
    assert results["per_class_AP"][5] is None
    assert results["CP"] == pytest.approx(threshold_metrics(scores, partial)["CP"])
