"""The pointing game: which pairs count, where a peak lands on the image, the centre baseline,
finding and matching the COCO boxes, and tools/eval.py with Eval.pointing_game on the demo data."""
import json

import numpy as np
import pytest
import torch

from ppq2l.arch import build_model
from ppq2l.commands.evaluate import main as evaluate_main
from ppq2l.config import get_config
from ppq2l.data.transforms import build_transforms
from ppq2l.engine.checkpoint import save_checkpoint
from ppq2l.errors import ConfigError, DataError
from ppq2l.explain.pointing_game import (
    ImageBoxes,
    find_annotations,
    format_pointing_game,
    read_boxes,
    score_pointing_game,
)

from conftest import DEMO_CONFIG, tiny_overrides

RESIZE = build_transforms([{"ResizeImage": {"size": 64}}]).ops


def test_only_true_positives_count_and_the_centre_plays_the_same_pairs():
    images = [ImageBoxes(100, 100, {0: np.array([[0, 0, 40, 40.]]), 1: np.array([[40, 40, 90, 90.]])}),
              ImageBoxes(200, 100, {1: np.array([[150, 0, 200, 50.]])})]
    targets = np.array([[1, 1, 0], [0, 1, 0]], dtype=np.float32)
    scores = np.array([[0.9, 0.8, 0.99], [0.2, 0.4, 0.1]])  # class 2 is a false positive
    peaks = np.zeros((2, 3, 2))
    peaks[0, 0] = (0.2, 0.2)  # (20, 20): inside the class 0 box
    peaks[0, 1] = (0.1, 0.9)  # (10, 90): outside the class 1 box
    peaks[1, 1] = (0.9, 0.1)  # (180, 10): inside, but 0.4 is below the threshold
    result = score_pointing_game(peaks, scores, targets, np.full(3, 0.5), images, RESIZE,
                                 ["a", "b", "c"])
    assert result["pairs"] == 2 and result["accuracy"] == 50.0
    assert result["centre_baseline"] == 50.0  # (50, 50) is in the class 1 box only
    assert result["per_class"]["a"] == {"accuracy": 100.0, "centre_baseline": 0.0, "pairs": 1}
    assert result["per_class"]["c"] == {"accuracy": None, "centre_baseline": None, "pairs": 0}
    # per-class thresholds: class 1 at 0.3 lets image 1 in, and its centre (100, 50) misses
    lower = score_pointing_game(peaks, scores, targets, np.array([0.5, 0.3, 0.5]), images, RESIZE)
    assert lower["pairs"] == 3
    assert lower["accuracy"] == pytest.approx(200 / 3) and lower["centre_baseline"] == pytest.approx(100 / 3)
    table = format_pointing_game(result)
    assert "map peak  50.00  centre point  50.00" in table and "c        n/a" in table


def test_a_peak_is_placed_on_the_part_of_the_image_the_model_saw():
    # resize_short 32 + centre crop 32 of a 200x100 image: the model sees x in 50..150
    crop = build_transforms([{"ResizeImage": {"resize_short": 32}}, {"CropImage": {"size": 32}}]).ops
    image = ImageBoxes(200, 100, {0: np.array([[55, 0, 65, 100.]])})
    peaks = np.array([[[0.1, 0.5]]])  # 10 % into the crop: x = 50 + 10 = 60
    result = score_pointing_game(peaks, np.ones((1, 1)), np.ones((1, 1)), np.full(1, 0.5), [image], crop)
    assert result["accuracy"] == 100.0
    whole = score_pointing_game(peaks, np.ones((1, 1)), np.ones((1, 1)), np.full(1, 0.5), [image], RESIZE)
    assert whole["accuracy"] == 0.0  # read over the whole image, x = 20 misses


def test_a_class_without_boxes_in_the_image_is_counted_apart():
    images = [ImageBoxes(10, 10, {})]
    result = score_pointing_game(np.zeros((1, 1, 2)), np.ones((1, 1)), np.ones((1, 1)),
                                 np.full(1, 0.5), images, RESIZE)
    assert result["pairs"] == 0 and result["no_box"] == 1 and result["accuracy"] is None


def test_the_demo_layout_finds_its_json_and_matches_list_paths(tiny_demo_root):
    dataset = {"image_root": str(tiny_demo_root),
               "cls_label_path": str(tiny_demo_root / "multilabel_val_list.txt")}
    path = find_annotations(dataset, None)
    assert path == tiny_demo_root / "annotations" / "instances_val2017.json"
    coco = json.loads(path.read_text())
    first = coco["images"][0]
    paths = [str(tiny_demo_root / "val2017" / first["file_name"])]
    (boxes,) = read_boxes(path, paths, 12)
    assert (boxes.width, boxes.height) == (first["width"], first["height"])
    annotations = [a for a in coco["annotations"] if a["image_id"] == first["id"]]
    assert sum(len(rows) for rows in boxes.boxes.values()) == len(annotations)
    with pytest.raises(DataError, match="nothere.jpg .*is not in"):
        read_boxes(path, [str(tiny_demo_root / "val2017" / "nothere.jpg")], 12)
    with pytest.raises(ConfigError, match="12 categories but the model predicts 5"):
        read_boxes(path, paths, 5)


def test_missing_boxes_name_the_key_to_set(tmp_path):
    with pytest.raises(ConfigError, match="Eval.pointing_game_annotations=path/to/instances.json"):
        find_annotations({"image_root": str(tmp_path), "cls_label_path": None}, None)
    with pytest.raises(ConfigError, match="Eval.pointing_game_annotations: .* is not a file"):
        find_annotations({}, str(tmp_path / "missing.json"))


@pytest.mark.parametrize("arch", [None, "Arch={name: PooledClassifier, class_num: 12, backbone: "
                                        "{name: resnet10t, pretrained: false, channels: [8, 16, 32, 64]}}"])
def test_eval_reports_the_pointing_game_beside_the_metrics(tiny_demo_root, tmp_path, arch):
    overrides = tiny_overrides(tiny_demo_root, tmp_path / "output") + ([arch] if arch else [])
    config = get_config(DEMO_CONFIG, overrides)
    torch.manual_seed(0)
    save_checkpoint({"model": build_model(config["Arch"]).state_dict()}, tmp_path / "weights.pth")
    arguments = ["-c", str(DEMO_CONFIG)]
    for override in overrides + [f"Global.pretrained_model={tmp_path / 'weights.pth'}",
                                 "Eval.pointing_game=True", "Infer.PostProcess.threshold=0.0"]:
        arguments += ["-o", override]
    results = evaluate_main(arguments)
    saved = json.loads((tmp_path / "output" / "eval_metrics.json").read_text())
    game = saved["pointing_game"]
    # threshold 0: every true label is a pair; the demo val labels all come with boxes
    labels = np.loadtxt(tiny_demo_root / "multilabel_val_list.txt", dtype=str, delimiter="\t")
    assert game["pairs"] == sum(row.count("1") for row in labels[:, 1]) and game["no_box"] == 0
    assert 0.0 <= game["accuracy"] <= 100.0 and 0.0 <= game["centre_baseline"] <= 100.0
    assert set(game["per_class"]) == set((tiny_demo_root / "labels.txt").read_text().split()[1::2])
    assert results["mAP"] == saved["mAP"]  # the metrics are those of the plain forward


@pytest.mark.parametrize("override, fragment", [
    ("Eval.pointing_game=1", "Eval.pointing_game must be true or false"),
    ("Eval.pointing_gmae=True", "Did you mean 'pointing_game'"),
    ("Global.export_attention=maybe", "Global.export_attention must be true or false"),
    ("Infer.explain_top_k=0", "Infer.explain_top_k must be a positive integer"),
])
def test_the_new_keys_are_checked(override, fragment):
    with pytest.raises(ConfigError, match=fragment):
        get_config(DEMO_CONFIG, [override])
