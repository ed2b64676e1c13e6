"""MultiLabelListDataset: list files are validated row by row with line numbers, samples come out
as float32 CHW images with int8 labels (1, 0, -1 unknown), and unreadable images are errors naming the
file and line."""
import cv2
import numpy as np
import pytest

from ppq2l.data.list_dataset import MultiLabelListDataset
from ppq2l.errors import ConfigError, DataError

OPS = [{"DecodeImage": {"to_rgb": True}}, {"ResizeImage": {"size": 16}},
       {"NormalizeImage": {"scale": "1.0/255.0", "order": ""}}, {"ToCHWImage": None}]


def write_images(root, names, size=(12, 20)):
    for number, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.full((*size, 3), 40 * number, np.uint8))


def write_list(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def make_dataset(tmp_path, text, class_num=3, **kwargs):
    return MultiLabelListDataset(tmp_path, write_list(tmp_path / "list.txt", text), OPS, class_num, **kwargs)


def test_reads_samples_labels_and_paths(tmp_path):
    write_images(tmp_path, ["images/a.png", "images/b.png"])
    dataset = make_dataset(tmp_path, "images/a.png\t1,0,1\nimages/b.png\t0,0,0\n\n\n")
    assert len(dataset) == 2 and dataset.class_num == 3
    assert dataset.labels.dtype == np.int8
    np.testing.assert_array_equal(dataset.labels, [[1, 0, 1], [0, 0, 0]])
    assert dataset.image_paths == [str(tmp_path / "images/a.png"), str(tmp_path / "images/b.png")]
    image, labels = dataset[1]
    assert image.shape == (3, 16, 16) and image.dtype == np.float32
    assert labels.dtype == np.int8 and labels.tolist() == [0, 0, 0]
    # image b is filled with 40: (40/255 - 0.485) / 0.229 in the first channel
    assert image[0, 0, 0] == pytest.approx((40 / 255 - 0.485) / 0.229, rel=1e-5)


def test_minus_one_marks_an_unknown_label(tmp_path):
    write_images(tmp_path, ["a.png", "b.png"])
    dataset = make_dataset(tmp_path, "a.png\t1,-1,0\nb.png\t -1, 0 ,-1\n")
    assert dataset.labels.tolist() == [[1, -1, 0], [-1, 0, -1]]
    assert dataset[0][1].tolist() == [1, -1, 0] and dataset[0][1].dtype == np.int8
    with pytest.raises(DataError, match="two rows run together"):
        make_dataset(tmp_path, "a.png\t1,-1,0b.png\t0,-1,1\n")


def test_other_delimiters_paths_with_spaces_and_crlf(tmp_path):
    write_images(tmp_path, ["my photo.png"])
    dataset = make_dataset(tmp_path, "my photo.png 0,1\r\n", class_num=2, delimiter=" ")
    assert dataset.image_paths == [str(tmp_path / "my photo.png")]
    assert dataset.labels.tolist() == [[0, 1]]
    with pytest.raises(ConfigError, match="delimiter"):
        make_dataset(tmp_path, "a.png,1,0\n", class_num=2, delimiter=",")


@pytest.mark.parametrize("text,line,message", [
    ("a.png\t1,0,1\nb.png 1,0,1\n", 2, r"separated by '\\t'"),
    ("a.png\t1,0,1\nb.png\t1,0\n", 2, "2 labels, expected class_num=3"),
    ("a.png\t1,0,1\n\nc.png\t1,0,1,0\n", 3, "4 labels, expected class_num=3"),
    ("a.png\t1,2,0\n", 1, "labels must be 0, 1 or -1 \\(unknown\\), found .2."),
    ("a.png\t1,0.5,0\n", 1, "found '0.5'"),
    ("a.png\t1,-2,0\n", 1, "found '-2'"),
    ("a.png\t1,- 1,0\n", 1, "found '- 1'"),
    ("a.png\t1,,0\n", 1, "found ''"),
    ("\t1,0,0\n", 1, "expected 'image_path"),
])
def test_bad_rows_are_reported_with_file_and_line(tmp_path, text, line, message):
    with pytest.raises(DataError, match=message) as caught:
        make_dataset(tmp_path, text)
    assert f"{tmp_path / 'list.txt'}, line {line}" in str(caught.value)


def test_missing_or_empty_list_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        MultiLabelListDataset(tmp_path, tmp_path / "nope.txt", OPS, 3)
    with pytest.raises(DataError, match="no samples"):
        make_dataset(tmp_path, "\n\n")
    with pytest.raises(ConfigError, match="class_num"):
        make_dataset(tmp_path, "a.png\t1\n", class_num=0)


def test_missing_images_are_found_when_the_dataset_is_built(tmp_path):
    write_images(tmp_path, ["a.png"])
    rows = "a.png\t1,0,0\n" + "".join(f"gone{number}.png\t0,1,0\n" for number in range(7))
    with pytest.raises(DataError) as caught:
        make_dataset(tmp_path, rows)
    text = str(caught.value)
    assert text.startswith("7 of 8 listed images do not exist: ")
    assert f"{tmp_path / 'gone0.png'} (line 2 of {tmp_path / 'list.txt'})" in text
    assert "gone4.png (line 6 of" in text and "gone5.png" not in text and "and 2 more" in text
    assert caught.value.missing[-1].startswith(str(tmp_path / "gone6.png"))


def test_a_folder_listed_as_an_image_counts_as_missing(tmp_path):
    write_images(tmp_path, ["a.png"])
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(DataError, match=r"1 of 2 listed images do not exist: .*folder.png \(line 2"):
        make_dataset(tmp_path, "a.png\t1,0,0\nfolder.png\t0,1,0\n")


def test_missing_or_wrong_image_root_is_named(tmp_path):
    write_list(tmp_path / "list.txt", "a.png\t1,0,0\n")
    with pytest.raises(DataError, match=f"image_root {tmp_path / 'nope'} does not exist; set "
                                        "image_root to the folder"):
        MultiLabelListDataset(tmp_path / "nope", tmp_path / "list.txt", OPS, 3)
    (tmp_path / "sub").mkdir()
    with pytest.raises(DataError, match=r"none of the 1 listed images exists under image_root "
                                        f"{tmp_path / 'sub'} .*is image_root the folder"):
        MultiLabelListDataset(tmp_path / "sub", tmp_path / "list.txt", OPS, 3)


def test_skip_bad_images_leaves_missing_images_out_with_a_warning(tmp_path, caplog):
    import logging
    write_images(tmp_path, ["a.png", "c.png"])
    logger = logging.getLogger("ppq2l")
    logger.addHandler(caplog.handler)  # the project logger does not propagate
    try:
        dataset = make_dataset(tmp_path, "a.png\t1,0,0\nb.png\t0,1,0\nc.png\t0,0,1\n",
                               skip_bad_images=True)
    finally:
        logger.removeHandler(caplog.handler)
    assert dataset.image_paths == [str(tmp_path / "a.png"), str(tmp_path / "c.png")]
    assert dataset.labels.tolist() == [[1, 0, 0], [0, 0, 1]] and len(dataset.sources) == 2
    assert dataset[1][1].tolist() == [0, 0, 1]
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "leaving out 1 of 3 listed images" in warnings[0]
    assert f"b.png (line 2 of {tmp_path / 'list.txt'})" in warnings[0]


def test_image_removed_after_the_check_names_the_file_and_the_list_line(tmp_path):
    write_images(tmp_path, ["a.png", "later.png"])
    dataset = make_dataset(tmp_path, "a.png\t1,0,0\nlater.png\t0,1,0\n")
    (tmp_path / "later.png").unlink()
    dataset[0]
    with pytest.raises(DataError) as caught:
        dataset[1]
    text = str(caught.value)
    assert str(tmp_path / "later.png") in text and f"line 2 of {tmp_path / 'list.txt'}" in text


def test_undecodable_image_names_the_file_and_the_list_line(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    dataset = make_dataset(tmp_path, "broken.jpg\t0,0,1\n")
    with pytest.raises(DataError, match="cannot decode") as caught:
        dataset[0]
    assert str(tmp_path / "broken.jpg") in str(caught.value) and "line 1 of" in str(caught.value)


def test_transform_ops_errors_and_requirements(tmp_path):
    write_images(tmp_path, ["a.png"])
    with pytest.raises(ConfigError, match="empty"):
        MultiLabelListDataset(tmp_path, write_list(tmp_path / "l.txt", "a.png\t1\n"), [], 1)
    with pytest.raises(ConfigError, match=r"transform_ops\.0: unknown transform"):
        MultiLabelListDataset(tmp_path, tmp_path / "l.txt", [{"Decode": None}], 1)


@pytest.mark.parametrize("text,delimiter", [
    ("a.png\t1,0,1\nb.png\t0,0,1c.png\t1,1,0\n", "\t"),  # `cat` of a list without final newline
    ("a.png 1,0,1\nb.png 0,0,1c.png 1,1,0\n", " "),
])
def test_two_rows_run_together_are_refused_with_the_likely_cause(tmp_path, text, delimiter):
    with pytest.raises(DataError, match="two rows run together.*final newline") as caught:
        make_dataset(tmp_path, text, delimiter=delimiter)
    assert f"{tmp_path / 'list.txt'}, line 2" in str(caught.value) and "'b.png" in str(caught.value)
