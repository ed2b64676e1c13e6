"""The synthetic shapes demo dataset: valid COCO, reproducible bytes, and the generation stamp."""
import contextlib
import io
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from ppq2l.data import demo_shapes
from ppq2l.data.demo_shapes import (
    CATEGORIES,
    EMPTY_IMAGE_PERIOD,
    STAMP_NAME,
    generate_demo_dataset,
    is_up_to_date,
    render_demo_image,
)
from ppq2l.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[2]
SPLITS = ("train2017", "val2017")


def _load_tool():
    from ppq2l.commands import make_demo_dataset

    return make_demo_dataset


def _load_coco(root: Path, split: str) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(root / "annotations" / f"instances_{split}.json"))


def _file_bytes(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "shapes"
    generate_demo_dataset(root, num_train=60, num_val=6, seed=0)
    return root


def test_annotation_files_load_with_pycocotools(dataset):
    for split, count in zip(SPLITS, (60, 6)):
        coco = _load_coco(dataset, split)
        assert len(coco.getImgIds()) == count
        assert len(coco.getCatIds()) == len(CATEGORIES) >= 10
        assert {"info", "licenses", "images", "annotations", "categories"} <= set(coco.dataset)


def test_category_ids_are_sparse_and_names_unique(dataset):
    categories = _load_coco(dataset, "train2017").dataset["categories"]
    ids = [category["id"] for category in categories]
    assert ids == sorted(ids) and ids != list(range(1, len(ids) + 1))
    assert len({category["name"] for category in categories}) == len(categories)
    assert all(category["supercategory"] for category in categories)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools and numpy 2
def test_annotations_lie_inside_their_images_and_match_their_polygons(dataset):
    tight = total = 0
    for split in SPLITS:
        coco = _load_coco(dataset, split)
        assert coco.dataset["annotations"], split
        for annotation in coco.dataset["annotations"]:
            image = coco.imgs[annotation["image_id"]]
            x, y, width, height = annotation["bbox"]
            assert x >= 0 and y >= 0 and width > 0 and height > 0
            assert x + width <= image["width"] and y + height <= image["height"]
            assert annotation["iscrowd"] == 0
            assert 0 < annotation["area"] <= width * height
            assert all(len(polygon) >= 6 and len(polygon) % 2 == 0
                       for polygon in annotation["segmentation"])
            assert np.count_nonzero(coco.annToMask(annotation)) > 0
            # Polygons trace the centres of boundary pixels: inside the box, touching it unless
            # a one-pixel sliver of a partly hidden object was too thin to trace.
            points = np.concatenate([np.reshape(polygon, (-1, 2))
                                     for polygon in annotation["segmentation"]])
            low, high = points.min(0), points.max(0)
            assert low[0] >= x and low[1] >= y
            assert high[0] <= x + width - 1 and high[1] <= y + height - 1
            tight += bool((low == (x, y)).all() and (high == (x + width - 1, y + height - 1)).all())
            total += 1
    assert tight >= 0.9 * total


def test_json_images_match_the_files_on_disk(dataset):
    image_ids = set()
    for split in SPLITS:
        images = _load_coco(dataset, split).dataset["images"]
        on_disk = {path.name for path in (dataset / split).iterdir()}
        assert {image["file_name"] for image in images} == on_disk
        for image in images:
            pixels = cv2.imread(str(dataset / split / image["file_name"]))
            assert pixels.shape == (image["height"], image["width"], 3)
        image_ids |= {image["id"] for image in images}
    assert len(image_ids) == 66, "image ids must be unique across splits"


def test_only_the_designated_images_have_no_objects(dataset):
    coco = _load_coco(dataset, "train2017")
    images = sorted(coco.dataset["images"], key=lambda image: image["id"])
    empty = [index for index, image in enumerate(images) if not coco.imgToAnns.get(image["id"])]
    assert empty == [index for index in range(60) if index % EMPTY_IMAGE_PERIOD == 1]
    objects = Counter(annotation["image_id"] for annotation in coco.dataset["annotations"])
    assert max(objects.values()) <= 5


def test_every_category_appears_with_similar_frequency(dataset):
    counts = Counter(annotation["category_id"]
                     for annotation in _load_coco(dataset, "train2017").dataset["annotations"])
    assert set(counts) == {category.category_id for category in CATEGORIES}
    assert max(counts.values()) <= 4 * min(counts.values())


def test_overlapping_objects_stay_mostly_visible(monkeypatch):
    fractions = []
    describe = demo_shapes._annotation

    def recording(obj):
        fractions.append(np.count_nonzero(obj.visible) / obj.full_area)
        return describe(obj)

    monkeypatch.setattr(demo_shapes, "_annotation", recording)
    for index in range(40):
        render_demo_image(2, "train", index)
    assert min(fractions) >= 1 - demo_shapes.MAX_HIDDEN_FRACTION
    assert min(fractions) < 0.95, "no object overlapped another, so nothing was checked"


def test_image_sizes_vary(dataset):
    images = _load_coco(dataset, "train2017").dataset["images"]
    sizes = {(image["width"], image["height"]) for image in images}
    assert len(sizes) > 10
    assert all(112 <= side <= 160 for size in sizes for side in size)


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path, dataset):
    generate_demo_dataset(tmp_path / "again", num_train=60, num_val=6, seed=0)
    assert _file_bytes(tmp_path / "again") == _file_bytes(dataset)
    generate_demo_dataset(tmp_path / "other", num_train=4, num_val=2, seed=1)
    first = (tmp_path / "other" / "train2017" / "000000000001.jpg").read_bytes()
    assert first != (dataset / "train2017" / "000000000001.jpg").read_bytes()


def test_an_image_does_not_depend_on_how_many_are_generated(dataset):
    pixels, annotations = render_demo_image(0, "train", 7)
    coco = _load_coco(dataset, "train2017")
    assert pixels.shape[:2] == (coco.imgs[8]["height"], coco.imgs[8]["width"])
    assert [a["bbox"] for a in annotations] == [a["bbox"] for a in coco.imgToAnns[8]]


def test_tool_skips_an_up_to_date_dataset_and_regenerates_on_change(tmp_path, capsys):
    tool, root = _load_tool(), tmp_path / "demo"
    arguments = ["--root", str(root), "--num_train", "3", "--num_val", "2"]
    tool.main(arguments)
    assert "train2017" in capsys.readouterr().out
    stamp = json.loads((root / STAMP_NAME).read_text())
    assert stamp["complete"] is True and stamp["num_train"] == 3 and stamp["seed"] == 0
    image = root / "train2017" / "000000000001.jpg"
    os.utime(image, (1, 1))

    tool.main(arguments)
    assert "skipped" in capsys.readouterr().out
    assert image.stat().st_mtime == 1

    tool.main(arguments + ["--force"])
    assert "skipped" not in capsys.readouterr().out
    assert image.stat().st_mtime != 1

    tool.main(["--root", str(root), "--num_train", "2", "--num_val", "2", "--seed", "5"])
    assert "skipped" not in capsys.readouterr().out
    assert sorted(path.name for path in (root / "train2017").iterdir()) == [
        "000000000001.jpg", "000000000002.jpg"], "images of the earlier, larger run must be removed"
    assert is_up_to_date(root, num_train=2, num_val=2, seed=5)
    next((root / "val2017").iterdir()).unlink()
    assert not is_up_to_date(root, num_train=2, num_val=2, seed=5)


def test_a_folder_of_other_files_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("not a demo dataset")
    with pytest.raises(DataError, match="not empty"):
        generate_demo_dataset(tmp_path, num_train=1, num_val=1)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("keywords, message", [
    ({"num_train": -1}, r"^num_train must be an integer from 0 to 999999 \(image ids of the two splits "
                        r"must not overlap\), got -1$"),
    ({"num_val": 10 ** 6}, r"^num_val must be an integer from 0 to 999999 .*got 1000000$"),
    ({"seed": 1.5}, r"^seed must be an integer >= 0, got 1\.5$"),
    ({"image_size_range": (8, 4)}, r"^image_size_range must be a list of 2 integers >= 32"),
    ({"image_size_range": (112.5, 160)}, r"^image_size_range must be a list of 2 integers >= 32"),
    ({"image_size_range": (160, 112)}, r"^image_size_range must be \(low, high\) with 32 <= low <= high"),
])
def test_bad_parameters_are_config_errors(tmp_path, keywords, message):
    with pytest.raises(ConfigError, match=message):
        generate_demo_dataset(tmp_path / "bad", **keywords)
    assert not (tmp_path / "bad").exists()


def test_tool_runs_from_any_folder_without_pythonpath(tmp_path):
    environment = dict(os.environ, PYTHONPATH=str(REPO))  # this checkout, not an installed copy
    command = [sys.executable, str(REPO / "tools" / "make_demo_dataset.py"),
               "--root", str(tmp_path / "demo"), "--num_train", "1", "--num_val", "1"]
    result = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "circle" in result.stdout
    assert (tmp_path / "demo" / "annotations" / "instances_val2017.json").is_file()


def test_regenerating_keeps_the_users_files_and_removes_only_its_own(tmp_path):
    root = tmp_path / "demo"
    generate_demo_dataset(root, num_train=4, num_val=2)
    (root / "train2017" / "my_photo.jpg").write_bytes(b"mine")
    (root / "val2017" / "notes.txt").write_text("mine")
    generate_demo_dataset(root, num_train=2, num_val=2, seed=1)
    assert sorted(path.name for path in (root / "train2017").iterdir()) == [
        "000000000001.jpg", "000000000002.jpg", "my_photo.jpg"]
    assert (root / "train2017" / "my_photo.jpg").read_bytes() == b"mine"
    assert (root / "val2017" / "notes.txt").read_text() == "mine"
    assert is_up_to_date(root, num_train=2, num_val=2, seed=1)  # the user's files do not count


def test_a_foreign_file_where_an_image_would_go_is_refused_untouched(tmp_path):
    root = tmp_path / "demo"
    generate_demo_dataset(root, num_train=2, num_val=1)
    foreign = root / "train2017" / "000000000003.jpg"
    foreign.write_bytes(b"mine")
    with pytest.raises(DataError, match=r"1 file\(s\) that .*generation.json does not list as "
                                        r"written by this generator.*000000000003.jpg"):
        generate_demo_dataset(root, num_train=3, num_val=1)
    assert foreign.read_bytes() == b"mine"
    assert (root / "train2017" / "000000000002.jpg").is_file()  # nothing removed before the refusal
