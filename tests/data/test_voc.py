"""Pascal VOC from the devkit's own files (written here in the official layout): the class lists
and the XML annotations give the same labels, difficult-only classes are unknown (or positive on
request), a missing JPEG is reported and left out, and a folder in the wrong layout names the
file it expected."""
import logging

import cv2
import numpy as np
import pytest

from ppq2l.cli import run_cli
from ppq2l.commands import voc_lists
from ppq2l.data.dataloader import build_dataset
from ppq2l.data.label_map import read_label_map
from ppq2l.data.voc import VOC_CLASSES, VocDataset, read_voc
from ppq2l.errors import DataError

OPS = [{"DecodeImage": None}, {"ResizeImage": {"size": 8}}, {"NormalizeImage": {"order": ""}}, {"ToCHWImage": None}]
# image id -> objects (class, difficult); 000012's JPEG is missing from the download
OBJECTS = {
    "000005": [("chair", 0), ("chair", 1), ("person", 1), ("sofa", 1), ("sofa", 0)],
    "000007": [("car", 0)],
    "000009": [("horse", 0), ("person", 0), ("person", 1)],
    "000012": [("car", 0)],
}
C = {name: index for index, name in enumerate(VOC_CLASSES)}


def xml(objects):
    items = "".join(f"<object><name>{name}</name><pose>Left</pose><truncated>0</truncated>"
                    f"<difficult>{difficult}</difficult><bndbox><xmin>1</xmin></bndbox></object>"
                    for name, difficult in objects)
    return f"<annotation><folder>VOC2007</folder><size><width>8</width></size>{items}</annotation>"


@pytest.fixture
def voc_root(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2007"
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / folder).mkdir(parents=True)
    for image, objects in OBJECTS.items():
        if image != "000012":
            cv2.imwrite(str(root / "JPEGImages" / f"{image}.jpg"), np.full((8, 8, 3), 50, np.uint8))
        (root / "Annotations" / f"{image}.xml").write_text(xml(objects))
    (root / "ImageSets/Main/trainval.txt").write_text("".join(f"{image}\n" for image in OBJECTS))
    for name in VOC_CLASSES:
        lines = []
        for image, objects in OBJECTS.items():
            states = [difficult for object_name, difficult in objects if object_name == name]
            value = " 1" if 0 in states else " 0" if states else "-1"
            lines.append(f"{image} {value}")
        ending = "\r\n" if name == "cat" else "\n"  # CRLF from a Windows copy
        (root / f"ImageSets/Main/{name}_trainval.txt").write_text(ending.join(lines) + ending)
    return root


def expected(difficult_value):
    rows = np.zeros((3, 20), np.int8)
    rows[0, [C["chair"], C["sofa"]]] = 1
    rows[0, C["person"]] = difficult_value
    rows[1, C["car"]] = 1
    rows[2, [C["horse"], C["person"]]] = 1
    return rows


@pytest.mark.parametrize("source", ["imagesets", "annotations"])
@pytest.mark.parametrize("difficult, value", [("unknown", -1), ("positive", 1)])
def test_both_sources_give_the_devkit_labels(voc_root, source, difficult, value):
    table = read_voc(voc_root, "trainval", source, difficult)
    assert table.paths == ["JPEGImages/000005.jpg", "JPEGImages/000007.jpg", "JPEGImages/000009.jpg"]
    assert np.array_equal(table.labels, expected(value)) and table.class_names == list(VOC_CLASSES)
    assert table.skipped["whose JPEGImages file is missing"] == [str(voc_root / "JPEGImages/000012.jpg")]


def test_dataset_reports_the_missing_image_and_loads_samples(voc_root, caplog):
    logger = logging.getLogger("ppq2l")
    logger.addHandler(caplog.handler)
    try:
        dataset = build_dataset({"name": "VocDataset", "root": str(voc_root), "split": "trainval",
                                 "transform_ops": OPS}, 20, "DataLoader.Train.dataset")
    finally:
        logger.removeHandler(caplog.handler)
    assert isinstance(dataset, VocDataset) and len(dataset) == 3
    assert "left out 1 image(s) whose JPEGImages file is missing" in caplog.text and "000012.jpg" in caplog.text
    image, labels = dataset[0]
    assert image.shape == (3, 8, 8) and labels.tolist() == expected(-1)[0].tolist()
    assert dataset.label_counts().positives[C["bird"]] == 0  # a class without positives is kept


def test_the_converter_writes_the_list_and_the_class_names(voc_root, tmp_path):
    summary = voc_lists.main(["--dataset_dir", str(voc_root), "--split", "trainval", "--save_name", "voc07",
                              "--output_dir", str(tmp_path / "lists"), "--save_label_name"])
    rows = (tmp_path / "lists" / "voc07.txt").read_text().splitlines()
    assert rows[0] == "JPEGImages/000005.jpg\t" + ",".join(map(str, expected(-1)[0]))
    assert len(rows) == 3 and summary["num_skipped"] == 1 and summary["num_unknown_labels"] == 1
    assert read_label_map(tmp_path / "lists" / "labels.txt", 20) == read_label_map("builtin:voc20", 20)


def test_wrong_layouts_name_the_file_they_expected(voc_root, capsys):
    devkit = voc_root.parent
    with pytest.raises(DataError, match=f"{devkit}/ImageSets/Main/trainval.txt not found: the VOC root must be "
                                        f"a VOC20XX folder .*looks like the VOCdevkit folder: use {voc_root}"):
        read_voc(devkit, "trainval")
    (voc_root / "ImageSets/Main/bird_trainval.txt").unlink()
    with pytest.raises(DataError, match=r"ImageSets/Main/bird_trainval.txt not found \(the classification list "
                                        r"of class bird for split trainval\)"):
        read_voc(voc_root, "trainval")
    (voc_root / "Annotations/000009.xml").unlink()
    with pytest.raises(DataError, match=r"Annotations/000009.xml not found \(the annotation of image 000009"):
        read_voc(voc_root, "trainval", source="annotations")
    (voc_root / "ImageSets/Main/aeroplane_trainval.txt").write_text("000005 2\n")
    argv = ["--dataset_dir", str(voc_root), "--split", "trainval", "--save_name", "x"]
    assert run_cli(voc_lists.main, argv) == 2
    assert "aeroplane_trainval.txt, line 1: expected '<image id> 1|-1|0', got '000005 2'" in capsys.readouterr().err
