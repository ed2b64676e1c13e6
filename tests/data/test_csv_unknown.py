"""CsvDataset with unknown labels: `?name`, `?*` and `-name` in the names layout and -1 in
multi-hot rows, read from a CSV with a byte-order mark and CRLF line ends."""
import cv2
import numpy as np
import pytest

from ppq2l.data.csv_dataset import CsvDataset
from ppq2l.errors import DataError

OPS = [{"DecodeImage": None}, {"ResizeImage": {"size": 8}}, {"NormalizeImage": {"order": ""}}, {"ToCHWImage": None}]
CLASSES = ["cat", "dog", "sofa", "?odd"]


def make(tmp_path, rows, names=True):
    for number in range(len(rows)):
        cv2.imwrite(str(tmp_path / f"{number}.png"), np.full((8, 8, 3), 20 * number, np.uint8))
    (tmp_path / "labels.txt").write_text("".join(f"{i} {name}\n" for i, name in enumerate(CLASSES)))
    text = "path,labels\r\n" + "".join(f"{n}.png,{row}\r\n" for n, row in enumerate(rows))
    (tmp_path / "data.csv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    return CsvDataset(tmp_path, tmp_path / "data.csv", OPS, len(CLASSES),
                      class_id_map_file=(tmp_path / "labels.txt") if names else None)


def test_names_mark_unknown_and_verified_negative_classes(tmp_path):
    dataset = make(tmp_path, ["cat;?dog", "cat;?*;-sofa", "", "?*", "?odd", '"dog ; ?cat"', "1,-1,0,-1"])
    assert dataset.labels.tolist() == [[1, -1, 0, 0], [1, -1, 0, -1], [0, 0, 0, 0], [-1, -1, -1, -1],
                                       [0, 0, 0, 1], [-1, 1, 0, 0], [1, -1, 0, -1]]
    assert dataset[1][1].tolist() == [1, -1, 0, -1] and dataset[1][1].dtype == np.int8
    assert dataset.label_counts().unknown.tolist() == [2, 4, 1, 3]


@pytest.mark.parametrize("cell, message", [
    ("cat;?cat", r"line 2: class 'cat' is given as both positive and unknown; keep one"),
    ("?zebra", r"line 2: unknown class 'zebra'; classes are cat, dog, sofa, \?odd \(a name, \?name for unknown"),
    ("-", r"line 2: unknown class ''"),
])
def test_bad_names_are_errors_naming_the_line(tmp_path, cell, message):
    with pytest.raises(DataError, match=message):
        make(tmp_path, [cell])


def test_multi_hot_rows_take_minus_one_without_a_label_file(tmp_path):
    dataset = make(tmp_path, ["1,-1,0,-1", "0,0,1,1"], names=False)
    assert dataset.labels.tolist() == [[1, -1, 0, -1], [0, 0, 1, 1]]
    with pytest.raises(DataError, match=r"line 2: expected 'path' followed by class_num=4 columns of 0, 1 or -1"):
        make(tmp_path, ["1,-2,0,-1"], names=False)
