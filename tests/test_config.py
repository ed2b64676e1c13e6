"""Config loading, `-o` overrides and validation messages."""
import textwrap

import pytest
import yaml

from ppq2l.config import apply_override, get_config, parse_override, save_config
from ppq2l.errors import ConfigError

BASE = """
Global:
  epochs: 3
  output_dir: ./output/x
Arch:
  name: Query2Label
  class_num: 10
  backbone: {name: resnet10t, pretrained: false}
Optimizer:
  name: AdamW
  lr: {name: OneCycleLR, learning_rate: 1.0e-4}
DataLoader:
  Train:
    dataset:
      name: MultiLabelListDataset
      transform_ops:
        - DecodeImage: {to_rgb: true}
        - ResizeImage: {size: 96}
        - ToCHWImage:
"""


@pytest.fixture
def config_path(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(BASE))
    return path


def test_defaults_are_filled_and_file_values_kept(config_path):
    config = get_config(config_path)
    assert config["Global"]["epochs"] == 3
    assert config["Global"]["seed"] == 42 and config["Global"]["pretrained_model"] is None
    assert "EMA" not in config and "AMP" not in config


@pytest.mark.parametrize("text, expected", [
    ("Optimizer.lr.learning_rate=2e-4", 2e-4),
    ("Optimizer.lr.learning_rate=1.0e-3", 1e-3),
    ("Global.image_shape=[3,448,448]", [3, 448, 448]),
    ("Global.pretrained_model=null", None),
    ("Global.pretrained_model=", None),
    ("Global.eval_during_train=false", False),
])
def test_values_parse_as_yaml(config_path, text, expected):
    config = get_config(config_path, [text])
    path, _ = parse_override(text)
    node = config
    for part in path:
        node = node[part]
    assert node == expected and type(node) is type(expected)


def test_values_parse_the_same_inside_lists(config_path):
    config = get_config(config_path, ["DataLoader.Train.dataset.transform_ops.1.ResizeImage.size=[448,448]",
                                      "DataLoader.Train.dataset.transform_ops.0.DecodeImage.to_rgb=false"])
    ops = config["DataLoader"]["Train"]["dataset"]["transform_ops"]
    assert ops[1] == {"ResizeImage": {"size": [448, 448]}}
    assert ops[0] == {"DecodeImage": {"to_rgb": False}}


def test_list_entries_by_name_and_keyword_added_to_an_op(config_path):
    config = get_config(config_path, ["DataLoader.Train.dataset.transform_ops.ResizeImage.interpolation=area",
                                      "DataLoader.Train.dataset.transform_ops.2.ToCHWImage.order=chw"])
    ops = config["DataLoader"]["Train"]["dataset"]["transform_ops"]
    assert ops[1]["ResizeImage"] == {"size": 96, "interpolation": "area"}
    assert ops[2] == {"ToCHWImage": {"order": "chw"}}


def test_keyword_may_be_added_to_a_named_component(config_path):
    config = get_config(config_path, ["Arch.dec_layers=1", "Arch.backbone.drop_rate=0.1",
                                      "Optimizer.lr.pct_start=0.3"])
    assert config["Arch"]["dec_layers"] == 1
    assert config["Arch"]["backbone"]["drop_rate"] == 0.1
    assert config["Optimizer"]["lr"]["pct_start"] == 0.3


def test_overrides_apply_in_order(config_path):
    config = get_config(config_path, ["Global.epochs=5", "Global.epochs=7"])
    assert config["Global"]["epochs"] == 7


def test_section_can_be_added_and_gets_defaults(config_path):
    config = get_config(config_path, ["EMA={}"])
    assert config["EMA"] == {"decay": 0.9997, "warmup": False}
    config = get_config(config_path, ["AMP={dtype: bfloat16}"])
    assert config["AMP"]["dtype"] == "bfloat16" and config["AMP"]["init_scale"] == 65536.0


@pytest.mark.parametrize("text, fragments", [
    ("Global.epoch=3", ["'Global.epoch' does not exist", "Did you mean 'epochs'", "Valid keys:"]),
    ("Global.epochs", ["must look like Key.sub=value"]),
    ("Globl.epochs=3", ["no section 'Globl'", "Did you mean 'Global'"]),
    ("DataLoader.Train.dataset.transform_ops.5.ResizeImage.size=3", ["index 5 is out of range", "3 entries"]),
    ("DataLoader.Train.dataset.transform_ops.Resize.size=3", ["neither an index", "Did you mean 'ResizeImage'"]),
    ("DataLoader.Train.datset.name=X", ["'DataLoader.Train.datset' does not exist", "Did you mean 'dataset'"]),
    ("Global.epochs.x=1", ["'Global.epochs' is a value (3)"]),
    ("Global.epochs=[1", ["the value is not valid YAML"]),
])
def test_override_errors_name_the_key_and_valid_ones(config_path, text, fragments):
    with pytest.raises(ConfigError) as info:
        get_config(config_path, [text])
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_adding_a_key_to_a_plain_mapping_is_refused(config_path):
    with pytest.raises(ConfigError, match="'DataLoader.Train.sampler' does not exist"):
        get_config(config_path, ["DataLoader.Train.sampler.batch_size=2"])


@pytest.mark.parametrize("yaml_text, fragment", [
    ("Global: {epoch: 3}\nArch: {name: X}\n", "Global.epoch: unknown key. Did you mean 'epochs'"),
    ("Global: {epochs: three}\nArch: {name: X}\n", "Global.epochs must be an integer, got 'three'"),
    ("Global: {eval_during_train: 1}\nArch: {name: X}\n", "Global.eval_during_train must be true or false, got 1"),
    ("Global: {}\nArchitecture: {name: X}\n", "unknown section 'Architecture'"),
    ("Global: {}\n", "needs a 'Arch' section"),
    ("Global: {}\nArch: {name: X}\nAMP: {dtype: float8}\n",
     "AMP.dtype must be one of float16, bfloat16, got 'float8'. Did you mean 'float16'"),
    ("Global: {}\nArch: {name: X}\nEMA: {decay: 1.5}\n", "EMA.decay must be a number in (0, 1), got 1.5"),
    ("Global: {}\nArch: {name: X}\nInfer: {infer_img: a.jpg}\n", "Did you mean 'infer_imgs'"),
    ("Global: {}\nArch: {name: X}\nLoss: {eval: []}\n", "Loss.eval: unknown key. Did you mean 'Eval'?"),
    ("Global: {}\nArch: {name: X}\nLoss: [{AsymmetricLoss: {}}]\n",
     "section 'Loss' must be a mapping with keys Train, Eval"),
    ("- just\n- a list\n", "must be a mapping"),
    ("Global: {epochs: [1\n", "is not valid YAML"),
])
def test_file_errors(tmp_path, yaml_text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        get_config(path)
    assert fragment in str(info.value), str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        get_config(tmp_path / "nope.yaml")


def test_nothing_is_evaluated(config_path):
    config = get_config(config_path, ["Global.output_dir=__import__('os').getcwd()"])
    assert config["Global"]["output_dir"] == "__import__('os').getcwd()"


def test_saved_config_round_trips(config_path, tmp_path):
    config = get_config(config_path, ["Global.epochs=9"])
    save_config(config, tmp_path / "out" / "config.yaml")
    assert yaml.safe_load((tmp_path / "out" / "config.yaml").read_text()) == config


def test_apply_override_on_plain_dict():
    config = {"Global": {"a": {"b": [1, 2]}}}
    apply_override(config, "Global.a.b.-1=5")
    assert config["Global"]["a"]["b"] == [1, 5]


def test_exponent_floats_mean_the_same_in_files_lists_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("Global: {}\nArch: {name: X, lrs: [1e-4, 2.5e-3], eps: 1e-8}\n")
    config = get_config(path, ["Arch.scale=3e-2", "Arch.lrs=[1e-5, 1]"])
    assert config["Arch"]["eps"] == 1e-8
    assert config["Arch"]["scale"] == 3e-2
    assert config["Arch"]["lrs"] == [1e-5, 1]
