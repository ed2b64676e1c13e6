"""Infer.visualize: labels are drawn in the top-left corner of a copy, files are named after their
path under the input folder, and error records are not drawn."""
import cv2
import numpy as np

from ppq2l.postprocess.visualize import draw_labels, save_visualizations


def record(**fields):
    return {"class_ids": [3, 7], "scores": [0.91, 0.55], "label_names": ["cat", "dog"], **fields}


def test_labels_are_drawn_top_left_on_a_copy():
    image = np.full((200, 300, 3), 128, np.uint8)
    drawn = draw_labels(image, record())
    assert (image == 128).all()  # the input is left as it was
    changed = np.argwhere((drawn != 128).any(axis=2))
    assert len(changed) > 100
    assert changed[:, 0].max() < 60 and changed[:, 1].max() < 150  # two short lines in the corner
    unnamed = draw_labels(image, record(label_names=[]))  # class ids stand in for names
    assert not np.array_equal(unnamed, drawn) and (unnamed != 128).any()


def test_visualizations_are_named_by_relative_path_and_skip_errors(tmp_path):
    root = tmp_path / "images"
    (root / "a").mkdir(parents=True)
    files = [root / "a" / "one.png", root / "two.png"]
    for path in files:
        assert cv2.imwrite(str(path), np.zeros((40, 60, 3), np.uint8))
    written = save_visualizations(files, [record(), {"file_name": "x", "error": "cannot decode"}],
                                  tmp_path / "out", root)
    assert written == [tmp_path / "out" / "a__one.jpg"]
    assert [path.name for path in (tmp_path / "out").iterdir()] == ["a__one.jpg"]
    assert cv2.imread(str(written[0])).shape == (40, 60, 3)
