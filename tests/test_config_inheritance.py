"""`_base_` inheritance: a config names its base files and overrides only what differs."""
import pytest

from ppq2l.config import get_config, merge_into, read_config_file
from ppq2l.errors import ConfigError


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_mappings_merge_lists_and_scalars_replace():
    base = {"A": {"x": 1, "y": {"p": 1, "q": 2}, "ops": [1, 2]}, "B": 1}
    override = {"A": {"y": {"q": 3}, "ops": [9]}, "C": 2}
    assert merge_into(base, override) == {"A": {"x": 1, "y": {"p": 1, "q": 3}, "ops": [9]},
                                          "B": 1, "C": 2}
    assert base == {"A": {"x": 1, "y": {"p": 1, "q": 2}, "ops": [1, 2]}, "B": 1}  # untouched


def test_delete_replaces_a_mapping_whole():
    base = {"Arch": {"name": "Query2Label", "hidden_dim": 256, "backbone": {"name": "resnet50"}}}
    override = {"Arch": {"_delete_": True, "name": "MLDecoder", "backbone": {"name": "tresnet_m"}}}
    assert merge_into(base, override) == {"Arch": {"name": "MLDecoder",
                                                   "backbone": {"name": "tresnet_m"}}}


def test_chained_and_listed_bases_relative_to_each_file(tmp_path):
    write(tmp_path / "_base_" / "runtime.yaml", "Global: {epochs: 80, seed: 1}\nEMA: {decay: 0.9997}\n")
    write(tmp_path / "_base_" / "model.yaml",
          "_base_: runtime.yaml\nArch: {name: Query2Label, class_num: 80, backbone: {name: resnet50}}\n")
    write(tmp_path / "_base_" / "data.yaml", "Global: {seed: 2}\n")
    child = write(tmp_path / "zoo" / "q2l.yaml",
                  "_base_: [../_base_/model.yaml, ../_base_/data.yaml]\nGlobal: {epochs: 40}\n"
                  "Arch: {backbone: {name: resnet101}}\n")
    config = read_config_file(child)
    assert config == {"Global": {"epochs": 40, "seed": 2}, "EMA": {"decay": 0.9997},
                      "Arch": {"name": "Query2Label", "class_num": 80,
                               "backbone": {"name": "resnet101"}}}
    assert get_config(child, ["Global.epochs=3"])["Global"]["epochs"] == 3


def test_missing_base_names_the_including_file(tmp_path):
    child = write(tmp_path / "a.yaml", "_base_: nothere.yaml\nGlobal: {}\n")
    with pytest.raises(ConfigError, match=f"{child}: its _base_ file nothere.yaml was not found"):
        get_config(child)


def test_a_cycle_is_named(tmp_path):
    write(tmp_path / "a.yaml", "_base_: b.yaml\nGlobal: {}\n")
    write(tmp_path / "b.yaml", "_base_: a.yaml\nArch: {}\n")
    with pytest.raises(ConfigError, match="include each other"):
        get_config(tmp_path / "a.yaml")


def test_a_typo_inherited_from_a_base_is_still_caught(tmp_path):
    write(tmp_path / "base.yaml", "Global: {epoch: 3}\nArch: {name: Query2Label, class_num: 2}\n")
    child = write(tmp_path / "child.yaml", "_base_: base.yaml\n")
    with pytest.raises(ConfigError, match="Global.epoch: unknown key. Did you mean 'epochs'"):
        get_config(child)


def test_yaml_anchors_load_as_separate_copies(tmp_path):
    # an override of one place must not reach the other through a YAML alias
    config = write(tmp_path / "c.yaml", "Global: {}\nArch: {name: X, class_num: 2}\n"
                   "DataLoader:\n  Train: {ops: &ops [{ResizeImage: {size: 64}}]}\n"
                   "  Eval: {ops: *ops}\n")
    resolved = get_config(config, ["DataLoader.Train.ops.ResizeImage.size=32"])
    assert resolved["DataLoader"]["Eval"]["ops"] == [{"ResizeImage": {"size": 64}}]
    assert resolved["DataLoader"]["Train"]["ops"] == [{"ResizeImage": {"size": 32}}]


def test_saved_configs_have_no_anchors(tmp_path):
    from ppq2l.config import config_to_yaml

    ops = [{"ResizeImage": {"size": 64}}]
    text = config_to_yaml({"A": {"ops": ops}, "B": {"ops": ops}})
    assert "&" not in text and "*" not in text
