"""The COCO -> multi-label list converter: PaddleClas's output format, its fixed options, errors."""
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from ppq2l.data.label_map import read_label_map
from ppq2l.errors import DataError
from ppq2l.utils.create_coco_multilabel_lists import create_multilabel_list, main

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "ppq2l" / "utils" / "create_coco_multilabel_lists.py"
ANNO = "annotations/instances_val2017.json"

# Category ids are sparse and out of order, as in COCO; the class index follows this json order.
CATEGORIES = [{"id": 7, "name": "train"}, {"id": 1, "name": "person"},
              {"id": 90, "name": "toothbrush"}, {"id": 3, "name": "traffic light"}]
IMAGES = [  # image ids unsorted; file names deliberately not in id order
    {"id": 42, "file_name": "b.jpg", "width": 4, "height": 4},
    {"id": 63, "file_name": "c.jpg", "width": 4, "height": 4},
    {"id": 17, "file_name": "empty.jpg", "width": 4, "height": 4},
    {"id": 8, "file_name": "missing.jpg", "width": 4, "height": 4},
    {"id": 30, "file_name": "negative.jpg", "width": -1, "height": 4},
    {"id": 5, "file_name": "a.jpg", "width": 4, "height": 4},
]
ANNOTATIONS = [
    {"id": 1, "image_id": 42, "category_id": 3, "iscrowd": 0},
    {"id": 2, "image_id": 42, "category_id": 3, "iscrowd": 0},  # same class twice in one image
    {"id": 3, "image_id": 42, "category_id": 90, "iscrowd": 0},
    {"id": 4, "image_id": 5, "category_id": 1, "iscrowd": 1},  # crowd still counts as a label
    {"id": 5, "image_id": 5, "category_id": 7, "iscrowd": 0},
    {"id": 6, "image_id": 63, "category_id": 90, "iscrowd": 0},
    {"id": 7, "image_id": 8, "category_id": 1, "iscrowd": 0},
    {"id": 8, "image_id": 30, "category_id": 7, "iscrowd": 0},
]
# Sorted by image id (5, 17, 42, 63); 8 (no file) and 30 (negative width) skipped; every line,
# the last one too, ends with a newline.
EXPECTED_LIST = ("val2017/a.jpg\t1,1,0,0\n"
                 "val2017/empty.jpg\t0,0,0,0\n"
                 "val2017/b.jpg\t0,0,1,1\n"
                 "val2017/c.jpg\t0,0,1,0\n")
EXPECTED_LABELS = "0 train\n1 person\n2 toothbrush\n3 traffic light\n"


def write_coco(root: Path, content) -> Path:
    path = root / ANNO
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


@pytest.fixture
def coco_root(tmp_path) -> Path:
    root = tmp_path / "COCO2017"
    (root / "val2017").mkdir(parents=True)
    for image in IMAGES:
        if image["file_name"] != "missing.jpg":
            cv2.imwrite(str(root / "val2017" / image["file_name"]), np.zeros((4, 4, 3), np.uint8))
    write_coco(root, {"images": IMAGES, "annotations": ANNOTATIONS, "categories": CATEGORIES})
    return root


@pytest.fixture
def ppq2l_log(caplog):
    # The project logger does not propagate to the root logger, so hook the capture in directly.
    logger = logging.getLogger("ppq2l")
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


def test_list_is_byte_exact_and_summary_counts(coco_root, ppq2l_log):
    summary = create_multilabel_list(coco_root, "val2017", ANNO, save_name="multilabel_val_list")
    list_path = coco_root / "multilabel_val_list.txt"
    assert list_path.read_bytes() == EXPECTED_LIST.encode()
    assert summary == {"list_path": str(list_path), "label_path": None, "num_written": 4,
                       "num_skipped": 2, "num_empty": 1, "num_classes": 4, "num_unknown_labels": 0}
    assert not (coco_root / "labels.txt").exists()
    warnings = [record.getMessage() for record in ppq2l_log.records
                if record.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "image id 8" in warnings[0] and "missing.jpg" in warnings[0]
    assert "image id 30" in warnings[1] and "negative.jpg" in warnings[1]


def test_label_file_indices_match_list_columns(coco_root):
    # labels.txt whatever the dataset folder is called, so a config can name it in advance
    summary = create_multilabel_list(str(coco_root) + os.sep, "val2017", ANNO,
                                     save_name="multilabel_val_list", save_label_name=True)
    label_path = coco_root / "labels.txt"
    assert summary["label_path"] == str(label_path)
    assert label_path.read_bytes() == EXPECTED_LABELS.encode()
    assert read_label_map(label_path, class_num=4) == ["train", "person", "toothbrush",
                                                      "traffic light"]


def test_output_dir_is_created_and_used_with_default_save_name(coco_root, tmp_path):
    output_dir = tmp_path / "lists" / "nested"
    summary = create_multilabel_list(coco_root, "val2017", ANNO, output_dir=output_dir,
                                     save_label_name=True)
    assert summary["list_path"] == str(output_dir / "instances_val2017.txt")
    assert (output_dir / "instances_val2017.txt").read_text(encoding="utf-8") == EXPECTED_LIST
    assert (output_dir / "labels.txt").read_text(encoding="utf-8") == EXPECTED_LABELS
    assert not list(coco_root.glob("*.txt"))


def test_skip_empty_through_main(coco_root, tmp_path):
    status = main(["--dataset_dir", str(coco_root), "--image_dir", "val2017", "--anno_path", ANNO,
                   "--save_name", "kept", "--output_dir", str(tmp_path), "--skip_empty"])
    assert status == 0
    expected = "val2017/a.jpg\t1,1,0,0\nval2017/b.jpg\t0,0,1,1\nval2017/c.jpg\t0,0,1,0\n"
    assert (tmp_path / "kept.txt").read_text(encoding="utf-8") == expected


def test_crowd_only_classes_and_listed_categories_can_be_unknown(coco_root, tmp_path):
    """a.jpg has person only as a crowd region: unknown with --crowd unknown; b.jpg lists train
    under a user's key. A plain annotation beside a crowd one keeps the class positive."""
    content = json.loads((coco_root / ANNO).read_text())
    content["annotations"].append({"id": 9, "image_id": 42, "category_id": 3, "iscrowd": 1})
    content["images"][0]["unknown_category_ids"] = [7]
    write_coco(coco_root, content)
    status = main(["--dataset_dir", str(coco_root), "--image_dir", "val2017", "--anno_path", ANNO,
                   "--output_dir", str(tmp_path), "--save_name", "partial", "--crowd", "unknown",
                   "--unknown_key", "unknown_category_ids"])
    assert status == 0
    assert (tmp_path / "partial.txt").read_text() == ("val2017/a.jpg\t1,-1,0,0\n"
                                                      "val2017/empty.jpg\t0,0,0,0\n"
                                                      "val2017/b.jpg\t-1,0,1,1\n"
                                                      "val2017/c.jpg\t0,0,1,0\n")
    from ppq2l.data.coco_dataset import CocoDataset
    ops = [{"DecodeImage": None}, {"ResizeImage": {"size": 4}}, {"NormalizeImage": {"order": ""}},
           {"ToCHWImage": None}]
    dataset = CocoDataset(coco_root / "val2017", coco_root / ANNO, ops, 4, crowd="unknown",
                          unknown_key="unknown_category_ids")
    assert dataset.labels.tolist() == [[1, -1, 0, 0], [0, 0, 0, 0], [-1, 0, 1, 1], [0, 0, 1, 0]]
    content["images"][0]["unknown_category_ids"] = [8]
    write_coco(coco_root, content)
    with pytest.raises(DataError, match="image id 42: unknown_category_ids names category id 8, which is not"):
        CocoDataset(coco_root / "val2017", coco_root / ANNO, ops, 4, unknown_key="unknown_category_ids")


def test_image_dir_is_normalised_in_rows(coco_root):
    create_multilabel_list(coco_root, "./val2017/", ANNO, save_name="normalised")
    assert (coco_root / "normalised.txt").read_text(encoding="utf-8") == EXPECTED_LIST


BROKEN_INPUTS = {
    "missing_file": (None, "error: annotation file not found: {anno}"),
    "not_json": ("{'images': [", "error: annotation file {anno} is not valid JSON"),
    "missing_key": ({"images": IMAGES, "annotations": ANNOTATIONS},
                    "error: annotation file {anno} is not a COCO instances file: missing "
                    "'categories'"),
    "not_an_object": ([1, 2], "must hold a JSON object"),
    "entry_without_key": ({"images": IMAGES, "annotations": [{"id": 1, "image_id": 5}],
                           "categories": CATEGORIES},
                          "error: annotation file {anno}: annotations[0] lacks 'category_id'"),
    "unknown_category": ({"images": IMAGES, "annotations": ANNOTATIONS,
                          "categories": CATEGORIES[1:]},
                         "annotations[4] has category_id 7, which is not in 'categories'"),
    "duplicate_image_id": ({"images": IMAGES + [{"id": 5, "file_name": "c.jpg"}],
                            "annotations": ANNOTATIONS, "categories": CATEGORIES},
                           "id 5 appears twice in 'images'"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_INPUTS))
def test_broken_annotation_file_is_one_error_line(case, coco_root, capsys):
    content, message = BROKEN_INPUTS[case]
    anno = coco_root / ANNO
    if content is None:
        anno.unlink()
    else:
        write_coco(coco_root, content)
    status = main(["--dataset_dir", str(coco_root), "--image_dir", "val2017",
                   "--anno_path", ANNO, "--save_name", "out"])
    stderr = capsys.readouterr().err
    assert status == 2
    assert message.format(anno=anno) in stderr
    assert "Traceback" not in stderr
    assert not (coco_root / "out.txt").exists()


def test_missing_image_dir_is_one_error_line(coco_root, capsys):
    status = main(["--dataset_dir", str(coco_root), "--image_dir", "train2017",
                   "--anno_path", ANNO])
    assert status == 2
    assert f"error: image_dir not found: {coco_root / 'train2017'}" in capsys.readouterr().err


def test_function_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="dataset_dir not found"):
        create_multilabel_list(tmp_path / "absent", "val2017", ANNO)


def test_runs_as_plain_script_from_repo_root(coco_root):
    environment = dict(os.environ, PYTHONPATH=str(REPO))  # this checkout, not an installed copy
    result = subprocess.run(
        [sys.executable, str(SCRIPT.relative_to(REPO)), "--dataset_dir", str(coco_root),
         "--image_dir", "val2017", "--anno_path", ANNO, "--save_name", "multilabel_val_list",
         "--save_label_name"],
        cwd=REPO, env=environment, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (coco_root / "multilabel_val_list.txt").read_bytes() == EXPECTED_LIST.encode()
    assert (coco_root / "labels.txt").read_bytes() == EXPECTED_LABELS.encode()
    assert "Wrote 4 images" in result.stderr  # the log goes to stderr


def test_training_modules_import_without_pycocotools(tmp_path):
    # Only the COCO json readers need pycocotools, and they say so; list and CSV training must not.
    annotations = tmp_path / "instances.json"
    annotations.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    code = ("import sys; sys.modules['pycocotools'] = None\n"
            "import ppq2l.engine, ppq2l.data, ppq2l.utils.create_coco_multilabel_lists as converter\n"
            "try:\n"
            f"    converter.load_coco_annotations({str(annotations)!r})\n"
            "except converter.DataError as error:\n"
            "    print(error)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "needs pycocotools" in result.stdout and "pip install pycocotools" in result.stdout


def test_concatenated_lists_keep_one_row_per_line(coco_root, tmp_path):
    from ppq2l.data.list_dataset import read_label_list
    create_multilabel_list(coco_root, "val2017", ANNO, save_name="first")
    create_multilabel_list(coco_root, "val2017", ANNO, save_name="second", skip_empty=True)
    merged = tmp_path / "all.txt"
    merged.write_bytes((coco_root / "first.txt").read_bytes() + (coco_root / "second.txt").read_bytes())
    paths, _, _ = read_label_list(merged, class_num=4)
    assert paths[3:5] == ["val2017/c.jpg", "val2017/a.jpg"] and len(paths) == 7


def test_no_image_found_is_an_error_and_writes_nothing(coco_root, capsys):
    for image in (coco_root / "val2017").iterdir():
        if image.name != "negative.jpg":  # skipped for its size instead
            image.unlink()
    status = main(["--dataset_dir", str(coco_root), "--image_dir", "val2017", "--anno_path", ANNO,
                   "--save_name", "out", "--save_label_name"])
    stderr = capsys.readouterr().err
    assert status == 2 and "Traceback" not in stderr
    assert (f"error: no image of {coco_root / ANNO} can be listed from {coco_root / 'val2017'}: "
            "6 images in the annotation file, 5 file(s) not found (e.g. image id 5 (") in stderr
    assert "1 with a negative size (e.g. image id 30" in stderr and "nothing was written" in stderr
    assert not (coco_root / "out.txt").exists() and not (coco_root / "labels.txt").exists()


def test_skip_empty_leaving_nothing_says_so(tmp_path):
    root = tmp_path / "only_empty"
    (root / "val2017").mkdir(parents=True)
    cv2.imwrite(str(root / "val2017" / "e.jpg"), np.zeros((4, 4, 3), np.uint8))
    write_coco(root, {"images": [{"id": 1, "file_name": "e.jpg"}], "annotations": [],
                      "categories": CATEGORIES})
    with pytest.raises(DataError, match=r"none skipped; 1 without annotations left out \(--skip_empty\)"):
        create_multilabel_list(root, "val2017", ANNO, skip_empty=True)


def test_output_dir_that_is_a_file_is_refused_before_the_scan(coco_root, tmp_path, capsys):
    taken = tmp_path / "taken.txt"
    taken.write_text("mine")
    status = main(["--dataset_dir", str(coco_root), "--image_dir", "val2017", "--anno_path", ANNO,
                   "--output_dir", str(taken)])
    stderr = capsys.readouterr().err
    assert status == 2 and f"error: --output_dir: {taken} is a file, not a folder" in stderr
    assert taken.read_text() == "mine"


def test_label_file_name_chooses_the_name_and_implies_writing_it(coco_root):
    summary = create_multilabel_list(coco_root, "val2017", ANNO, save_name="val",
                                     label_file_name="coco_names.txt")
    assert summary["label_path"] == str(coco_root / "coco_names.txt")
    assert (coco_root / "coco_names.txt").read_text(encoding="utf-8") == EXPECTED_LABELS


@pytest.mark.parametrize("name,message", [("val.txt", "also the list file's name"),
                                          ("sub/labels.txt", "a file name inside --output_dir"),
                                          ("", "a file name inside --output_dir")])
def test_label_file_name_that_would_clash_or_escape_is_refused(coco_root, name, message):
    from ppq2l.errors import ConfigError
    with pytest.raises(ConfigError, match=message):
        create_multilabel_list(coco_root, "val2017", ANNO, save_name="val", label_file_name=name)
    assert not (coco_root / "val.txt").exists()
