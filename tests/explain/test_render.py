"""Rendering per-label maps (numpy and OpenCV only): where on the image a map belongs after the
preprocessing, that the heat lands where the map peaks, which labels are drawn, and the files an
image gets."""
import subprocess
import sys

import cv2
import numpy as np
import pytest

from ppq2l.data.transforms import build_transforms
from ppq2l.explain.render import (
    DISPLAY_MIN_SIDE,
    OverlayWriter,
    heatmap_overlay,
    input_region,
    labels_to_draw,
    map_on_image,
)

from conftest import REPO


def ops(*entries):
    return build_transforms([{"DecodeImage": {"to_rgb": True}}, *entries, {"ToCHWImage": None}]).ops


def test_a_plain_resize_shows_the_model_the_whole_image():
    assert input_region(ops({"ResizeImage": {"size": 64}}), 200, 100) == (0.0, 0.0, 1.0, 1.0)


def test_a_centre_crop_after_resize_short_shows_the_middle():
    # 200x100 -> resize_short 50 -> 100x50 -> crop 50x50 at x 25..75: the middle half in width
    region = input_region(ops({"ResizeImage": {"resize_short": 50}}, {"CropImage": {"size": 50}}),
                          200, 100)
    assert region == pytest.approx((0.25, 0.0, 0.75, 1.0))


def test_a_map_is_placed_over_the_region_and_zero_elsewhere():
    full = map_on_image(np.ones((2, 2), np.float32), 200, 100, (0.25, 0.0, 0.75, 1.0))
    assert full.shape == (100, 200)
    assert full[:, :50].max() == 0 and full[:, 150:].max() == 0
    assert np.allclose(full[:, 50:150], 1.0)


def test_the_heat_is_where_the_map_peaks_and_small_images_are_enlarged():
    image = np.full((100, 120, 3), 128, np.uint8)
    label_map = np.zeros((4, 4), np.float32)
    label_map[3, 0] = 1.0  # bottom-left cell
    picture = heatmap_overlay(image, label_map, "circle 0.97")
    assert min(picture.shape[:2]) >= DISPLAY_MIN_SIDE
    height, width = picture.shape[:2]
    red = picture[..., 2].astype(int) - picture[..., 0].astype(int)  # JET: hot is red, cold blue
    assert red[height * 7 // 8, width // 8] > 40
    assert red[height // 8 + 20, width * 7 // 8] < -40
    assert picture[5:15, 5:40].max() == 255  # the text's white on its dark box, top-left


def test_predicted_labels_are_drawn_else_the_top_k():
    scores = np.array([0.1, 0.7, 0.3, 0.9])
    fired = {"class_ids": [1, 3], "scores": [0.7, 0.9]}
    assert labels_to_draw(fired, scores, 2) == [(1, 0.7, True), (3, 0.9, True)]
    none = {"class_ids": [], "scores": []}
    assert labels_to_draw(none, scores, 2) == [(3, 0.9, False), (1, 0.7, False)]


def test_an_image_gets_an_overlay_per_label_a_grid_and_its_raw_maps(tmp_path):
    image_dir = tmp_path / "images" / "sub"
    image_dir.mkdir(parents=True)
    source = image_dir / "cat 1.jpg"
    cv2.imwrite(str(source), np.full((60, 80, 3), 90, np.uint8))
    maps = np.random.default_rng(0).random((3, 2, 2)).astype(np.float32)
    writer = OverlayWriter(tmp_path / "out", ops({"ResizeImage": {"size": 64}}),
                           ["dog", "traffic light", "cat"], root=tmp_path / "images", top_k=1)
    records = [{"file_name": str(source), "class_ids": [1, 2], "scores": [0.8, 0.6],
                "label_names": ["traffic light", "cat"]}]
    writer([source], records, np.array([[0.1, 0.8, 0.6]]), maps[None])
    folder = tmp_path / "out" / "sub__cat 1"
    assert sorted(path.name for path in folder.iterdir()) == [
        "1_traffic_light.jpg", "2_cat.jpg", "grid.jpg", "maps.npy"]
    np.testing.assert_array_equal(np.load(folder / "maps.npy"), maps)
    tile = cv2.imread(str(folder / "2_cat.jpg"))
    grid = cv2.imread(str(folder / "grid.jpg"))
    assert grid.shape == (tile.shape[0], 2 * tile.shape[1], 3)
    # nothing fired: the best class alone, and no grid
    writer([source], [{**records[0], "class_ids": [], "scores": []}], np.array([[0.1, 0.3, 0.2]]),
           maps[None])
    assert sorted(path.name for path in folder.iterdir()) == [
        "1_traffic_light.jpg", "2_cat.jpg", "grid.jpg", "maps.npy"]
    assert writer.images == 2


def test_numpy_images_are_rgb_and_named_by_position(tmp_path):
    writer = OverlayWriter(tmp_path, ops({"ResizeImage": {"size": 64}}), None)
    rgb = np.zeros((70, 70, 3), np.uint8)
    rgb[..., 0] = 255  # pure red in RGB
    written = writer.render(rgb, {"file_name": "<array 4>", "class_ids": [0], "scores": [0.9]},
                            np.array([0.9]), np.zeros((1, 2, 2), np.float32))
    assert [path.relative_to(tmp_path).as_posix() for path in written] == [
        "array_4/0_class_0.jpg", "array_4/maps.npy"]
    picture = cv2.imread(str(written[0]))
    assert picture[-1, -1, 2] > picture[-1, -1, 0]  # still red under a flat (blue) heatmap


def test_rendering_imports_no_torch():
    code = ("import sys, ppq2l.explain.render, ppq2l.explain.pointing_game; "
            "sys.exit('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
