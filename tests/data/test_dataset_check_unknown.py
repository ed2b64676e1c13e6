"""check_dataset reports the unknown (-1) labels of a dataset per class; a class whose only
positives are hidden counts as a class without positives."""
import cv2
import numpy as np

from ppq2l.data.dataset_check import check_datasets, format_report

OPS = [{"DecodeImage": None}, {"ResizeImage": {"size": 8}}, {"NormalizeImage": {"order": ""}}, {"ToCHWImage": None}]


def test_unknown_share_per_class_is_reported(tmp_path):
    rows = ["1,-1,0", "0,-1,-1", "1,-1,0", "0,1,-1"]
    for number in range(len(rows)):
        cv2.imwrite(str(tmp_path / f"{number}.png"), np.full((8, 8, 3), number * 30, np.uint8))
    (tmp_path / "list.txt").write_text("".join(f"{n}.png\t{row}\n" for n, row in enumerate(rows)))
    dataset = {"name": "MultiLabelListDataset", "image_root": str(tmp_path),
               "cls_label_path": str(tmp_path / "list.txt"), "transform_ops": OPS}
    config = {"Arch": {"class_num": 3}, "DataLoader": {"Train": {"dataset": dataset}}}
    report, = check_datasets(config)
    assert report["unknown_per_class"] == [0, 3, 2]
    assert report["unknown_fraction_per_class"] == [0.0, 0.75, 0.5]
    assert report["positives_per_class"] == [2, 1, 0] and report["images_without_labels"] == 1
    assert report["problems"] == ["classes without any positive image: 2"]
    text = format_report([report])
    assert "unknown labels (-1, left out of losses with unknown: ignore and of the metrics): 41.7% in all; " \
           "fraction per class: [0.00, 0.75, 0.50]" in text
