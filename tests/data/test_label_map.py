"""Label maps: `<index> <name>` files, and the COCO names shipped with the package as
`builtin:coco80`, which the zoo configs use so that no COCO download is needed to predict."""
from pathlib import Path

import pytest

from ppq2l.config import get_config
from ppq2l.data.label_map import read_label_map
from ppq2l.errors import DataError
from ppq2l.postprocess import build_postprocess
from ppq2l.predict import config_postprocess

ZOO = sorted((Path(__file__).resolve().parents[2] / "configs" / "MultiLabelCOCO").rglob("*.yaml"))


def test_builtin_coco80_is_the_converters_class_order():
    names = read_label_map("builtin:coco80", class_num=80)
    assert len(set(names)) == 80 and names[0] == "person" and names[-1] == "toothbrush"
    # spot checks of the json names (not the paper's): ids 1..90 with gaps, sorted
    assert names[9] == "traffic light" and names[56:58] == ["chair", "couch"]
    assert names[62] == "tv" and names[78] == "hair drier"


def test_unknown_builtin_lists_the_valid_names():
    with pytest.raises(DataError, match=r"builtin:coco91: no such built-in label map; built in: "
                                        r"builtin:coco80"):
        read_label_map("builtin:coco91")


@pytest.mark.parametrize("path", ZOO, ids=lambda path: path.name)
def test_zoo_postprocess_builds_without_any_dataset_folder(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./dataset here: the names must come from the package
    config = get_config(path)
    post = build_postprocess(config_postprocess(config))  # as the tools build it (threshold auto)
    assert len(post.label_names) == config["Arch"]["class_num"] == 80
    assert post.label_names[0] == "person" and post.label_names[-1] == "toothbrush"
