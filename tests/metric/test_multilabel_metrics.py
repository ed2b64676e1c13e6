"""Metric components built from YAML `Metric.Eval` entries, their results and their errors."""
import json

import numpy as np
import pytest
import yaml

from ppq2l.errors import ConfigError
from ppq2l.metric import (
    MultiLabelMAP,
    MultiLabelThresholdMetrics,
    average_precision,
    build_metrics,
    mean_average_precision,
    threshold_metrics,
    top_k_metrics,
)
from ppq2l.registry import METRICS

EVAL_YAML = """
Metric:
  Eval:
    - MultiLabelMAP:
        map_type: voc
    - MultiLabelThresholdMetrics:
        threshold: 0.5
        top_k: 3
"""


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    targets = (rng.random((120, 5)) < 0.3).astype(np.float32)
    scores = np.clip(rng.random((120, 5)) * 0.7 + 0.3 * targets, 0, 1).astype(np.float32)
    targets[:, 3] = 0
    return scores, targets


def test_metrics_are_registered_under_their_class_names():
    assert "MultiLabelMAP" in METRICS and "MultiLabelThresholdMetrics" in METRICS


def test_build_from_yaml_and_compute(problem):
    scores, targets = problem
    entries = yaml.safe_load(EVAL_YAML)["Metric"]["Eval"]
    map_metric, threshold_metric = build_metrics(entries, where="Metric.Eval")
    assert isinstance(map_metric, MultiLabelMAP) and map_metric.map_type == "voc"
    assert map_metric.main_key == "mAP" and threshold_metric.main_key == "OF1"
    result = map_metric(scores, targets)
    assert result["mAP"] == pytest.approx(mean_average_precision(scores, targets, "voc"), abs=1e-10)
    assert result["mAP"] != pytest.approx(mean_average_precision(scores, targets, "integral"))
    expected = {**threshold_metrics(scores, targets, 0.5),
                **top_k_metrics(scores, targets, 3, threshold=0.5)}
    assert threshold_metric(scores, targets) == pytest.approx(expected)


def test_map_result_is_json_safe_with_none_for_empty_classes(problem):
    scores, targets = problem
    result = MultiLabelMAP()(scores, targets)
    per_class = result["per_class_AP"]
    assert per_class[3] is None
    expected = average_precision(scores, targets) * 100
    assert per_class[:3] + per_class[4:] == pytest.approx(list(np.delete(expected, 3)), abs=1e-10)
    assert result["mAP"] == pytest.approx(np.nanmean(expected), abs=1e-10)
    json.dumps(result, allow_nan=False)


def test_unknown_map_type_names_the_valid_ones():
    with pytest.raises(ConfigError, match=r"map_type must be one of integral, voc, 11point, got "
                                          r"'11points'\. Did you mean '11point'\?"):
        MultiLabelMAP(map_type="11points")
    with pytest.raises(ConfigError, match=r"Metric\.Eval\.0 MultiLabelMAP: unknown keyword 'map_typ'"):
        build_metrics([{"MultiLabelMAP": {"map_typ": "voc"}}])
    with pytest.raises(ConfigError, match=r"^Metric\.Eval\.1 MultiLabelMAP: map_type must be one of "
                                          r"integral, voc, 11point, got 'VOC'\. Did you mean 'voc'\?"):
        build_metrics([{"MultiLabelThresholdMetrics": None}, {"MultiLabelMAP": {"map_type": "VOC"}}])


def test_top_k_uses_the_threshold_too():
    # Sample 0: top-3 are classes 0, 1, 2 but class 2 scores 0.2 < 0.5, so only 0 and 1 count.
    scores = np.array([[0.9, 0.8, 0.2, 0.1], [0.1, 0.6, 0.7, 0.9]])
    targets = np.array([[1, 0, 1, 0], [0, 1, 1, 0]])
    result = MultiLabelThresholdMetrics(threshold=0.5, top_k=3)(scores, targets)
    # Predictions: {0, 1} and {1, 2, 3}; correct: 0 | 1, 2 -> 3 of 5 predicted, 3 of 4 positives.
    assert result["OP_top3"] == pytest.approx(60.0)
    assert result["OR_top3"] == pytest.approx(75.0)


def test_top_k_can_be_switched_off_and_is_checked_against_classes(problem):
    scores, targets = problem
    result = MultiLabelThresholdMetrics(top_k=None)(scores, targets)
    assert set(result) == {"CP", "CR", "CF1", "OP", "OR", "OF1"}
    with pytest.raises(ConfigError, match="top_k=9 is more than the 5 classes"):
        MultiLabelThresholdMetrics(top_k=9)(scores, targets)


@pytest.mark.parametrize("kwargs, message", [
    ({"threshold": 1.5}, "threshold must be a number from 0 to 1"),
    ({"threshold": "0.5"}, "threshold must be a number from 0 to 1"),
    ({"top_k": 0}, "top_k must be a positive integer or null"),
    ({"top_k": True}, "top_k must be a positive integer or null"),
])
def test_bad_threshold_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        MultiLabelThresholdMetrics(**kwargs)


def test_missing_section_gives_map_and_empty_list_gives_nothing():
    default = build_metrics(None)
    assert len(default) == 1 and isinstance(default[0], MultiLabelMAP)
    assert default[0].map_type == "integral"
    assert build_metrics([]) == []
    built = build_metrics([{"MultiLabelThresholdMetrics": None}])
    assert built[0].threshold == 0.5 and built[0].top_k == 3


@pytest.mark.parametrize("entries, message", [
    ({"MultiLabelMAP": None}, r"Metric\.Eval: expected a list of metrics, each a one-key mapping"),
    (["MultiLabelMAP"], r"Metric\.Eval\.0: expected a one-key mapping.*MultiLabelMAP: \{map_type"),
    ([{"MultiLabelMAP": None}, {"MultiLabelMAP": None, "MultiLabelThresholdMetrics": None}],
     r"Metric\.Eval\.1: expected a one-key mapping"),
    ([{"MultiLabelMAP": "integral"}], r"Metric\.Eval\.0: the keywords of 'MultiLabelMAP' must be a mapping"),
    ([{"MultiLabelMAPP": None}], r"Metric\.Eval\.0.*Did you mean 'MultiLabelMAP'"),
])
def test_bad_entries_name_the_index_and_the_expected_shape(entries, message):
    with pytest.raises(ConfigError, match=message):
        build_metrics(entries)
