"""The Calibrate and Eval config sections: Calibrate created by an override on any config, Eval
always filled in; their keys and values checked like Global's."""
import pytest

from ppq2l.config import CALIBRATE_DEFAULTS, EVAL_DEFAULTS, get_config
from ppq2l.errors import ConfigError

from conftest import DEMO_CONFIG


def test_an_override_creates_the_section_with_its_defaults():
    plain = get_config(DEMO_CONFIG)
    assert "Calibrate" not in plain and plain["Eval"]["report"] is None and plain["Eval"]["scores"] is None
    config = get_config(DEMO_CONFIG, ["Calibrate.policy=recall:0.8", "Eval.report=out/report"])
    assert config["Calibrate"] == {**CALIBRATE_DEFAULTS, "policy": "recall:0.8"}
    assert config["Eval"] == {**EVAL_DEFAULTS, "report": "out/report"}
    config = get_config(DEMO_CONFIG, ["Calibrate.dataset={cls_label_path: held.txt}"])
    assert config["Calibrate"]["dataset"] == {"cls_label_path": "held.txt"}


@pytest.mark.parametrize("override, fragments", [
    ("Calibrate.polcy=f1", ["'Calibrate.polcy' does not exist", "Did you mean 'policy'"]),
    ("Calibrate.policy=f2", ["Calibrate.policy: 'f2' is not a policy", "Valid policies"]),
    ("Calibrate.folds=1", ["Calibrate.folds must be an integer >= 2"]),
    ("Calibrate.min_positives=0", ["Calibrate.min_positives must be a positive integer"]),
    ("Calibrate.dataset=held.txt", ["Calibrate.dataset must be a mapping of dataset keys"]),
    ("Calibrate.output=[a]", ["Calibrate.output must be a path or null"]),
    ("Eval.report=3", ["Eval.report must be a path or null, got 3"]),
    ("Eval.reprot=x", ["'Eval.reprot' does not exist", "Did you mean 'report'"]),
])
def test_mistakes_in_the_sections_name_the_key(override, fragments):
    with pytest.raises(ConfigError) as caught:
        get_config(DEMO_CONFIG, [override])
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_a_typo_in_a_file_section_is_caught(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("Global: {}\nArch: {name: X}\nCalibrate: {polcy: f1}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="Calibrate.polcy: unknown key. Did you mean 'policy'"):
        get_config(path)
