"""List files, CSV files and label maps that are not UTF-8: one DataError naming the file, the line
of the first bad byte and the fix, for every reader alike."""
import pytest

from ppq2l.data.csv_dataset import CsvDataset
from ppq2l.data.label_map import read_label_map
from ppq2l.data.list_dataset import MultiLabelListDataset
from ppq2l.data.text_files import read_utf8_text
from ppq2l.errors import DataError

OPS = [{"DecodeImage": {"to_rgb": True}}, {"ResizeImage": {"size": 16}},
       {"NormalizeImage": {"scale": "1.0/255.0", "order": ""}}, {"ToCHWImage": None}]


def assert_not_utf8(caught, path, line):
    text = str(caught.value)
    assert f"{path}, line {line}: byte 0xe9 is not UTF-8" in text and "save it as UTF-8" in text


def test_latin1_csv_names_file_and_line(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_bytes("path,labels\na.jpg,cat\ncaf\u00e9.jpg,dog\n".encode("latin-1"))
    with pytest.raises(DataError) as caught:
        CsvDataset(tmp_path, path, OPS, 2)
    assert_not_utf8(caught, path, 3)


def test_latin1_label_map_names_file_and_line(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_bytes("0 cat\n1 dog\n2 caf\u00e9\n".encode("latin-1"))
    with pytest.raises(DataError) as caught:
        read_label_map(path)
    assert_not_utf8(caught, path, 3)


def test_latin1_list_file_names_file_and_line(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes("a.jpg\t1,0\n\u00e9t\u00e9.jpg\t0,1\n".encode("latin-1"))
    with pytest.raises(DataError) as caught:
        MultiLabelListDataset(tmp_path, path, OPS, 2)
    assert_not_utf8(caught, path, 2)


def test_byte_order_mark_is_dropped_and_counted_in_the_line(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbf0 cat\n1 dog\n")
    assert read_utf8_text(path, "label map") == "0 cat\n1 dog\n"
    path.write_bytes(b"\xef\xbb\xbf0 cat\n1 \xe9\n")
    with pytest.raises(DataError) as caught:
        read_utf8_text(path, "label map")
    assert_not_utf8(caught, path, 2)


def test_a_folder_is_a_read_error_not_a_traceback(tmp_path):
    with pytest.raises(DataError, match=f"cannot read list file {tmp_path}"):
        read_utf8_text(tmp_path, "list file")
