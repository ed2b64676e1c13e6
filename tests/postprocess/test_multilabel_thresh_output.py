"""MultiLabelThreshOutput: records, thresholds (global and per class), label maps, and no torch."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ppq2l.errors import ConfigError, DataError
from ppq2l.postprocess import MultiLabelThreshOutput, build_postprocess
from ppq2l.registry import POSTPROCESSES


def test_records_keep_classes_at_or_above_threshold_in_class_order():
    scores = np.array([[0.9, 0.1, 0.5, 0.123456789], [0.2, 0.3, 0.4, 0.49999]], dtype=np.float32)
    records = MultiLabelThreshOutput(threshold=0.5)(scores, ["a.jpg", "b.jpg"])
    assert records[0] == {"class_ids": [0, 2], "scores": [0.9, 0.5], "label_names": [],
                          "file_name": "a.jpg"}
    assert records[1] == {"class_ids": [], "scores": [], "label_names": [], "file_name": "b.jpg"}


def test_scores_are_rounded_to_five_decimals():
    records = MultiLabelThreshOutput(threshold=0.1)(np.array([[0.123456789, 0.987654321]]))
    assert records[0]["scores"] == [0.12346, 0.98765]
    assert "file_name" not in records[0]


def test_per_class_thresholds():
    scores = np.array([[0.3, 0.3, 0.3]])
    records = MultiLabelThreshOutput(threshold=[0.2, 0.5, 0.3])(scores, ["x"])
    assert records[0]["class_ids"] == [0, 2]


def test_per_class_threshold_length_must_match_classes():
    with pytest.raises(ConfigError, match="3 values but the model predicts 2"):
        MultiLabelThreshOutput(threshold=[0.1, 0.2, 0.3])(np.zeros((1, 2)), ["x"])


@pytest.mark.parametrize("threshold, message", [
    (1.5, r"threshold must be a number from 0 to 1 \(or a list of them, one per class, or a "
          r"thresholds\.json\), got 1\.5"),
    (-0.1, "threshold must be a number from 0 to 1"),
    (True, "threshold must be a number from 0 to 1"),
    ("0.5", "threshold must be a number from 0 to 1"),
    ([], r"threshold must be a list of one or more numbers from 0 to 1, like \[0\.5, 0\.7, \.\.\.\]"),
    ([0.5, 1.2], r"threshold must be a list of one or more numbers from 0 to 1.*got \[0\.5, 1\.2\]"),
])
def test_bad_thresholds_are_rejected(threshold, message):
    with pytest.raises(ConfigError, match=message):
        MultiLabelThreshOutput(threshold=threshold)
    with pytest.raises(ConfigError, match=r"^Infer\.PostProcess MultiLabelThreshOutput: " + message):
        build_postprocess({"name": "MultiLabelThreshOutput", "threshold": threshold})


def test_label_names_from_map_file(tmp_path):
    label_file = tmp_path / "labels.txt"
    label_file.write_text("0 cat\n1 traffic light\n2 dog\n", encoding="utf-8")
    records = MultiLabelThreshOutput(0.5, class_id_map_file=label_file)(
        np.array([[0.7, 0.8, 0.1]]), ["p.png"])
    assert records[0]["label_names"] == ["cat", "traffic light"]


def test_label_map_with_custom_delimiter(tmp_path):
    label_file = tmp_path / "labels.tsv"
    label_file.write_text("0\tcat\n1\tdog\n", encoding="utf-8")
    post = MultiLabelThreshOutput(0.5, class_id_map_file=label_file, delimiter="\t")
    assert post(np.array([[0.1, 0.9]]))[0]["label_names"] == ["dog"]


def test_label_map_size_must_match_scores(tmp_path):
    label_file = tmp_path / "labels.txt"
    label_file.write_text("0 cat\n1 dog\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="2 classes but the model predicts 3"):
        MultiLabelThreshOutput(0.5, class_id_map_file=label_file)(np.zeros((1, 3)))


def test_missing_map_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        MultiLabelThreshOutput(0.5, class_id_map_file=tmp_path / "nope.txt")


def test_embedded_label_names_replace_the_file():
    post = MultiLabelThreshOutput(0.5, class_id_map_file="/does/not/exist", label_names=["a", "b"])
    assert post(np.array([[0.9, 0.9]]))[0]["label_names"] == ["a", "b"]


def test_registered_and_built_from_config_section():
    assert "MultiLabelThreshOutput" in POSTPROCESSES
    post = build_postprocess({"name": "MultiLabelThreshOutput", "threshold": 0.25})
    assert post(np.array([[0.3, 0.2]]))[0]["class_ids"] == [0]
    with pytest.raises(ConfigError, match="thresh"):
        build_postprocess({"name": "MultiLabelThreshOutput", "thresh": 0.25})
    with pytest.raises(ConfigError, match="name"):
        build_postprocess({"threshold": 0.25})


def test_batch_and_file_names_must_agree():
    with pytest.raises(ValueError, match="2 file names for a batch of 1"):
        MultiLabelThreshOutput()(np.zeros((1, 2)), ["a", "b"])


def test_importing_the_postprocess_does_not_import_torch():
    code = ("import sys; import ppq2l.postprocess, ppq2l.export.metadata, ppq2l.data; "
            "sys.exit(3 if 'torch' in sys.modules else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
