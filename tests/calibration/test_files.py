"""Policies as written in a config, thresholds.json (read, checked against the model's classes,
picked by `threshold: auto`) wherever a threshold is accepted, and scores.npz."""
import logging
from fractions import Fraction

import numpy as np
import pytest

from ppq2l.calibration.policy import Policy, parse_policy
from ppq2l.calibration.scores_file import (
    Scores,
    encode_targets,
    load_scores,
    same_source,
    save_scores,
    scores_source,
)
from ppq2l.calibration.thresholds_file import FILE_NAME, read_thresholds, resolve_auto, write_thresholds
from ppq2l.errors import ConfigError, DataError
from ppq2l.metric import MultiLabelThresholdMetrics, threshold_metrics
from ppq2l.postprocess import MultiLabelThreshOutput
from ppq2l.utils.fingerprint import file_fingerprint


@pytest.mark.parametrize("text, expected", [
    ("f1", Policy("f1")), (" F1 ", Policy("f1")), ("precision:0.9", Policy("precision", Fraction(9, 10))),
    ("recall:1", Policy("recall", Fraction(1))), ("fixed:0", Policy("fixed", Fraction(0))),
    ("precision: 0.85", Policy("precision", Fraction(17, 20))),
])
def test_policies_parse_to_exact_targets(text, expected):
    assert parse_policy(text) == expected
    assert parse_policy(str(expected)) == expected  # printed as it is written


@pytest.mark.parametrize("text, fragments", [
    ("f2", ["'f2' is not a policy", "Did you mean 'f1'",
            "Valid policies: f1, precision:P, recall:R, fixed:T"]),
    ("precison:0.9", ["Did you mean 'precision'", "Valid policies"]),
    ("precision", ["needs a number after the colon, e.g. precision:0.9"]),
    ("precision:high", ["'high' is not a number", "valid policies"]),
    ("recall:0", ["the recall target must be in (0, 1]"]),
    ("precision:1.5", ["the precision target must be in (0, 1]"]),
    ("fixed:2", ["the threshold must be from 0 to 1"]),
    ("f1:0.5", ["f1 takes no number"]),
    (0.5, ["Calibrate.policy must be a string, got 0.5"]),
])
def test_a_policy_that_does_not_parse_names_the_valid_ones(text, fragments):
    with pytest.raises(ConfigError) as caught:
        parse_policy(text)
    assert str(caught.value).startswith("Calibrate.policy")
    for fragment in fragments:
        assert fragment in str(caught.value)


def document(names, thresholds, fingerprint="x"):
    return {"policy": "f1", "fitted_on": {"checkpoint": "ckpt.pth", "checkpoint_fingerprint":
                                          fingerprint, "num_images": 10},
            "classes": [{"name": name, "threshold": value} for name, value in zip(names, thresholds)]}


def test_the_postprocess_applies_a_thresholds_file(tmp_path):
    path = write_thresholds(tmp_path / FILE_NAME, document(["cat", "dog", "sofa"], [0.8, 0.3, 0.5]))
    labels = tmp_path / "labels.txt"
    labels.write_text("0 cat\n1 dog\n2 sofa\n", encoding="utf-8")
    post = MultiLabelThreshOutput(threshold=str(path), class_id_map_file=labels)
    records = post(np.array([[0.7, 0.35, 0.5], [0.81, 0.2, 0.49]], dtype=np.float32))
    # cat's threshold is 0.8: its 0.7 is dropped although it passes 0.5
    assert [record["label_names"] for record in records] == [["dog", "sofa"], ["cat"]]


def test_threshold_metrics_at_a_thresholds_file(tmp_path):
    rng = np.random.default_rng(0)
    scores = rng.random((50, 3)).astype(np.float32)
    targets = (rng.random((50, 3)) < 0.4).astype(np.float32)
    path = write_thresholds(tmp_path / FILE_NAME, document(["a", "b", "c"], [0.2, 0.55, 0.9]))
    metric = MultiLabelThresholdMetrics(threshold=str(path), top_k=None)
    assert metric(scores, targets) == pytest.approx(
        threshold_metrics(scores, targets, np.array([0.2, 0.55, 0.9])))
    assert metric(scores, targets) != pytest.approx(threshold_metrics(scores, targets, 0.5))
    with pytest.raises(ConfigError, match=r"holds thresholds for 3 classes but the evaluated model "
                                          r"predicts 4"):
        metric(np.zeros((2, 4)), np.zeros((2, 4)))


@pytest.mark.parametrize("names, labels, fragments", [
    (["cat", "dog"], "0 cat\n1 dog\n2 sofa\n", ["holds thresholds for 2 classes but the label map "
                                                 "predicts 3", "only in the model: 'sofa'"]),
    (["cat", "dgo", "sofa"], "0 cat\n1 dog\n2 sofa\n", ["fitted on other classes",
                                                         "only in the file: 'dgo'",
                                                         "only in the model: 'dog'"]),
    (["dog", "cat", "sofa"], "0 cat\n1 dog\n2 sofa\n", ["the same classes in another order (first "
                                                         "at index 0: 'dog' in the file, 'cat'"]),
])
def test_a_thresholds_file_for_other_classes_names_the_difference(tmp_path, names, labels, fragments):
    path = write_thresholds(tmp_path / FILE_NAME, document(names, [0.5] * len(names)))
    label_file = tmp_path / "labels.txt"
    label_file.write_text(labels, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        MultiLabelThreshOutput(threshold=str(path), class_id_map_file=label_file)
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_without_names_the_count_is_checked(tmp_path):
    path = write_thresholds(tmp_path / FILE_NAME, document([None, None], [0.5, 0.6]))
    post = MultiLabelThreshOutput(threshold=str(path))
    assert post(np.array([[0.55, 0.55]]))[0]["class_ids"] == [0]
    with pytest.raises(ConfigError, match="holds thresholds for 2 classes but the model predicts 3"):
        post(np.zeros((1, 3)))


@pytest.mark.parametrize("content, fragment", [
    (None, "does not exist; give a number, a list (one per class) or the thresholds.json"),
    ("{", "is not a JSON file"),
    ('{"classes": []}', "is not a thresholds file of tools/calibrate.py"),
    ('{"format": "ppq2l.thresholds", "version": 1, "classes": [{"name": "a", "threshold": 1.5}]}',
     "classes[0] needs a \"threshold\" from 0 to 1"),
    ('{"format": "ppq2l.thresholds", "version": 9, "classes": []}', "has version 9"),
])
def test_broken_thresholds_files_are_config_errors(tmp_path, content, fragment):
    path = tmp_path / "t.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        read_thresholds(path, "Infer.PostProcess.threshold")
    assert str(caught.value).startswith("Infer.PostProcess.threshold: ")
    assert fragment in str(caught.value)


class Recorder(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_auto_takes_the_thresholds_fitted_for_this_checkpoint_only(tmp_path):
    checkpoint = tmp_path / "run" / "best_model.pth"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"weights one")
    logger = logging.getLogger("test_auto")
    recorder = Recorder()
    logger.addHandler(recorder)
    settings = {"name": "MultiLabelThreshOutput", "threshold": "auto"}
    assert resolve_auto(settings, checkpoint, [], logger)["threshold"] == 0.5  # nothing fitted
    write_thresholds(checkpoint.parent / FILE_NAME,
                     document(["a"], [0.7], fingerprint=file_fingerprint(checkpoint)))
    assert resolve_auto(settings, checkpoint, [], logger)["threshold"] == str(checkpoint.parent / FILE_NAME)
    assert resolve_auto({"name": "X"}, checkpoint, [], logger)["threshold"].endswith(FILE_NAME)
    assert resolve_auto({**settings, "threshold": 0.4}, checkpoint, [], logger)["threshold"] == 0.4
    checkpoint.write_bytes(b"weights two")  # retrained: the thresholds belong to the old weights
    assert resolve_auto(settings, checkpoint, [], logger)["threshold"] == 0.5
    assert any("was fitted for ckpt.pth, not for" in line for line in recorder.lines)
    # the output folder is searched too
    other = tmp_path / "elsewhere"
    write_thresholds(other / FILE_NAME, document(["a"], [0.6], fingerprint=file_fingerprint(checkpoint)))
    assert resolve_auto(settings, checkpoint, [other], logger)["threshold"] == str(other / FILE_NAME)


def test_auto_outside_a_checkpoint_is_a_clear_error():
    with pytest.raises(ConfigError, match="threshold auto means the calibrated thresholds of a checkpoint"):
        MultiLabelThreshOutput(threshold="auto")


def scores_example(tmp_path):
    rng = np.random.default_rng(0)
    checkpoint = tmp_path / "w.pth"
    checkpoint.write_bytes(b"abc")
    source = {"checkpoint": str(checkpoint), "checkpoint_fingerprint": file_fingerprint(checkpoint),
              "data": "DataLoader.Eval", "list_file": "val.txt", "dataset": {"name": "D"}, "amp": None}
    return Scores(rng.random((5, 3)).astype(np.float32), rng.integers(0, 2, (5, 3)).astype(np.uint8),
                  [f"img{i}.jpg" for i in range(5)], ["a", "b", "c"], source)


def test_scores_round_trip_and_know_their_source(tmp_path):
    data = scores_example(tmp_path)
    loaded = load_scores(save_scores(tmp_path / "scores.npz", data), "Eval.scores")
    np.testing.assert_array_equal(loaded.scores, data.scores)
    np.testing.assert_array_equal(loaded.targets, data.targets)
    assert loaded.image_paths == data.image_paths and loaded.class_names == ["a", "b", "c"]
    assert same_source(loaded.source, data.source)
    assert not same_source(loaded.source, {**data.source, "checkpoint_fingerprint": "other"})
    assert not same_source(loaded.source, {**data.source, "dataset": {"name": "E"}})


def test_unknown_labels_are_kept_in_the_file(tmp_path):
    data = scores_example(tmp_path)
    data.targets = encode_targets(np.array([[1, 0, -1], [0.7, 0.2, 0], [-1, 1, 1], [0, 0, 0], [1, 1, 1]]))
    np.testing.assert_array_equal(data.targets[:3], [[1, 0, -1], [1, 0, 0], [-1, 1, 1]])
    loaded = load_scores(save_scores(tmp_path / "scores.npz", data), "Eval.scores")
    np.testing.assert_array_equal(loaded.targets, data.targets)  # -1 is not turned into a negative


@pytest.mark.parametrize("content, fragment", [
    (None, "does not exist; write it with tools/eval.py"),
    (b"not a zip", "cannot read"),
])
def test_unreadable_scores_files_are_data_errors(tmp_path, content, fragment):
    path = tmp_path / "scores.npz"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=f"^Eval.scores: .*{fragment}"):
        load_scores(path, "Eval.scores")


def test_a_scores_file_without_our_arrays_is_named(tmp_path):
    path = tmp_path / "scores.npz"
    np.savez(path, scores=np.zeros((2, 2)))
    with pytest.raises(DataError, match="lacks targets, image_paths, class_names, source"):
        load_scores(path, "Calibrate.scores")


@pytest.mark.parametrize("name", ["missing.pth", "."])
def test_scores_of_a_checkpoint_that_is_not_a_file_name_the_key(tmp_path, name):
    with pytest.raises(ConfigError, match="^Global.pretrained_model: .* is not a checkpoint file"):
        scores_source(tmp_path / name, "DataLoader.Eval", {"name": "D"}, {})
