"""NUS-WIDE in the official layout (ImageList + Groundtruth/AllLabels, Windows paths, CRLF) and in
ML-Decoder's CSV layout (BOM, quoted label lists), written here: images missing from the download
are reported and left out, never relabelled; a folder in the wrong layout names the file it
expected."""
import logging

import cv2
import numpy as np
import pytest

from ppq2l.cli import run_cli
from ppq2l.commands import nuswide_lists
from ppq2l.data.dataloader import build_dataset
from ppq2l.data.label_map import read_label_map
from ppq2l.data.nus_wide import read_nus_wide
from ppq2l.errors import DataError

OPS = [{"DecodeImage": None}, {"ResizeImage": {"size": 8}}, {"NormalizeImage": {"order": ""}}, {"ToCHWImage": None}]
CONCEPTS = ["animal", "sky", "zebra"]  # zebra has no positive
IMAGES = ["actor\\0001_2124494179.jpg", "airport\\0002_174174086.jpg", "sky\\0003_391414405.jpg",
          "sky\\0004_gone.jpg"]  # the last is gone from the download
LABELS = [[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 1, 0]]


def write_image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((8, 8, 3), 90, np.uint8))


@pytest.fixture
def official_root(tmp_path):
    root = tmp_path / "NUS-WIDE"
    (root / "ImageList").mkdir(parents=True)
    (root / "Groundtruth" / "AllLabels").mkdir(parents=True)
    crlf = "\r\n".join
    (root / "ImageList" / "Imagelist.txt").write_text(crlf(f"C:\\ImageData\\Flickr\\{i}" for i in IMAGES) + "\r\n")
    (root / "ImageList" / "TrainImagelist.txt").write_text(crlf([IMAGES[0], IMAGES[2], IMAGES[3]]) + "\r\n")
    (root / "ImageList" / "TestImagelist.txt").write_text(IMAGES[1] + "\r\n")
    (root / "Concepts81.txt").write_text("\n".join(CONCEPTS) + "\n")
    for column, concept in enumerate(CONCEPTS):
        text = "".join(f"{row[column]} \r\n" for row in LABELS)  # trailing spaces, as in the download
        (root / "Groundtruth" / "AllLabels" / f"Labels_{concept}.txt").write_text(text)
    for image in IMAGES[:3]:
        write_image(root / "Flickr" / image.replace("\\", "/"))
    return root


def test_official_layout_splits_and_missing_images(official_root):
    table, image_root = read_nus_wide("official", "train", official_root)
    assert image_root == str(official_root / "Flickr")
    assert table.paths == ["actor/0001_2124494179.jpg", "sky/0003_391414405.jpg"]
    assert np.array_equal(table.labels, [LABELS[0], LABELS[2]]) and table.class_names == CONCEPTS
    assert table.skipped["whose image file is missing"] == [str(official_root / "Flickr" / "sky/0004_gone.jpg")]
    test, _ = read_nus_wide("official", "test", official_root)
    assert test.paths == ["airport/0002_174174086.jpg"] and test.labels.tolist() == [LABELS[1]]


def test_dataset_and_converter(official_root, tmp_path, caplog):
    logger = logging.getLogger("ppq2l")
    logger.addHandler(caplog.handler)
    try:
        dataset = build_dataset({"name": "NusWideDataset", "root": str(official_root), "split": "all",
                                 "transform_ops": OPS}, 3, "DataLoader.Train.dataset")
    finally:
        logger.removeHandler(caplog.handler)
    assert len(dataset) == 3 and dataset[2][1].tolist() == LABELS[2]
    assert "left out 1 image(s) whose image file is missing" in caplog.text
    assert dataset.label_counts().positives.tolist() == [2, 2, 0]
    summary = nuswide_lists.main(["--dataset_dir", str(official_root), "--split", "train", "--save_name", "nus",
                                  "--output_dir", str(tmp_path / "out"), "--save_label_name"])
    assert (tmp_path / "out" / "nus.txt").read_text() == ("Flickr/actor/0001_2124494179.jpg\t1,0,0\n"
                                                          "Flickr/sky/0003_391414405.jpg\t1,1,0\n")
    assert summary["num_skipped"] == 1 and read_label_map(tmp_path / "out" / "labels.txt") == CONCEPTS


def test_the_ml_decoder_csv_layout(tmp_path):
    rows = ['filepath,label,split_name', 'images/0_a.jpg,"[\'sky\', \'clouds\']",train',
            'images/1_b.jpg,[],val', "images/2_gone.jpg,['zebra'],train", 'images/3_c.jpg,"[\'animal\']",train']
    (tmp_path / "nus_wid_data.csv").write_bytes(b"\xef\xbb\xbf" + "\r\n".join(rows).encode() + b"\r\n")
    for name in ("0_a", "1_b", "3_c"):
        write_image(tmp_path / "images" / f"{name}.jpg")
    table, image_root = read_nus_wide("csv", "train", csv_path=tmp_path / "nus_wid_data.csv")
    names = read_label_map("builtin:nuswide81", 81)
    assert image_root == str(tmp_path) and table.paths == ["images/0_a.jpg", "images/3_c.jpg"]
    assert [np.flatnonzero(row).tolist() for row in table.labels] == [
        [names.index("clouds"), names.index("sky")], [names.index("animal")]]
    assert len(table.skipped["whose image file is missing"]) == 1
    with pytest.raises(DataError, match=r"no row has split 'test'; the split column holds train, val"):
        read_nus_wide("csv", "test", csv_path=tmp_path / "nus_wid_data.csv")
    (tmp_path / "bad.csv").write_text("filepath,label,split_name\nimages/0_a.jpg,['skies'],train\n")
    with pytest.raises(DataError, match=r"bad.csv, line 2: 'skies' is not one of the 81 NUS-WIDE concepts"):
        read_nus_wide("csv", "train", csv_path=tmp_path / "bad.csv")


def test_wrong_layouts_name_the_file_they_expected(official_root, capsys):
    argv = ["--dataset_dir", str(official_root / "Flickr"), "--split", "train", "--save_name", "x"]
    assert run_cli(nuswide_lists.main, argv) == 2
    assert f"{official_root / 'Flickr' / 'ImageList' / 'Imagelist.txt'} not found (the image list)" in \
        capsys.readouterr().err
    (official_root / "Groundtruth/AllLabels/Labels_sky.txt").write_text("0\n1\n")
    with pytest.raises(DataError, match=r"Labels_sky.txt has 2 labels but ImageList/Imagelist.txt lists 4 images"):
        read_nus_wide("official", "all", official_root)
    (official_root / "Concepts81.txt").unlink()
    for path in (official_root / "Groundtruth/AllLabels").iterdir():
        path.unlink()
    with pytest.raises(DataError, match=r"AllLabels/Labels_airport.txt not found \(one 0/1 label file per concept\)"):
        read_nus_wide("official", "all", official_root)
