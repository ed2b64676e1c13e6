"""CocoDataset and CsvDataset give the labels of the list file made from the same COCO json;
skip_bad_images drops and counts undecodable images; check_dataset reports bad data."""
import copy
import os

import numpy as np
import pytest

from ppq2l.cli import run_cli
from ppq2l.commands import check_dataset
from ppq2l.data import build_dataloader
from ppq2l.data.coco_dataset import CocoDataset
from ppq2l.data.csv_dataset import CsvDataset
from ppq2l.data.label_map import read_label_map
from ppq2l.data.list_dataset import MultiLabelListDataset
from ppq2l.errors import DataError

from conftest import DEMO_CONFIG


@pytest.fixture
def listed(tiny_demo_root, tiny_config):
    ops = tiny_config["DataLoader"]["Train"]["dataset"]["transform_ops"]
    dataset = MultiLabelListDataset(tiny_demo_root, tiny_demo_root / "multilabel_train_list.txt",
                                    copy.deepcopy(ops), class_num=12)
    return dataset, ops


def normalized(paths):
    return [os.path.normpath(path) for path in paths]


def test_coco_dataset_matches_the_list_file(tiny_demo_root, listed):
    reference, ops = listed
    coco = CocoDataset(tiny_demo_root / "train2017",
                       tiny_demo_root / "annotations" / "instances_train2017.json", ops, class_num=12)
    assert normalized(coco.image_paths) == normalized(reference.image_paths)
    assert np.array_equal(coco.labels, reference.labels) and reference.labels.sum() > 0


def test_csv_dataset_in_both_layouts_matches_the_list_file(tiny_demo_root, listed, tmp_path):
    reference, ops = listed
    label_file = tiny_demo_root / "labels.txt"
    names = read_label_map(label_file, 12)
    relative = [os.path.relpath(path, tiny_demo_root) for path in reference.image_paths]
    by_name = ["path,labels"] + [f"{path},{';'.join(n for n, v in zip(names, row) if v)}"
                                 for path, row in zip(relative, reference.labels)]
    multi_hot = [f"{path},{','.join(map(str, row))}" for path, row in zip(relative, reference.labels)]
    (tmp_path / "names.csv").write_text("\n".join(by_name) + "\n")
    (tmp_path / "hot.csv").write_text("\n".join(multi_hot) + "\n")
    for dataset in (CsvDataset(tiny_demo_root, tmp_path / "names.csv", ops, 12, class_id_map_file=label_file),
                    CsvDataset(tiny_demo_root, tmp_path / "hot.csv", ops, 12)):
        assert normalized(dataset.image_paths) == normalized(reference.image_paths)
        assert np.array_equal(dataset.labels, reference.labels)
    (tmp_path / "bad.csv").write_text(f"{relative[0]},{names[0]};zebra\n")
    with pytest.raises(DataError, match=r"line 1: unknown class 'zebra'"):
        CsvDataset(tiny_demo_root, tmp_path / "bad.csv", ops, 12, class_id_map_file=label_file)


def corrupt_copy(tiny_demo_root, tmp_path, count):
    """A list file over copies of the train images, the first `count` of them overwritten."""
    rows = (tiny_demo_root / "multilabel_train_list.txt").read_text().splitlines()
    for number, row in enumerate(rows):
        path = tmp_path / row.split("\t")[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not an image" if number < count else (tiny_demo_root / row.split("\t")[0]).read_bytes())
    (tmp_path / "list.txt").write_text("\n".join(rows) + "\n")
    return tmp_path / "list.txt"


def test_skip_bad_images_drops_them_and_off_by_default_is_an_error(tiny_demo_root, tiny_config, tmp_path):
    list_file = corrupt_copy(tiny_demo_root, tmp_path, 3)
    section = copy.deepcopy(tiny_config["DataLoader"]["Train"])
    section["dataset"].update(image_root=str(tmp_path), cls_label_path=str(list_file))
    section["sampler"].update(shuffle=False)
    with pytest.raises(DataError, match="cannot decode"):
        next(iter(build_dataloader(copy.deepcopy(section), "Train", 12)))
    section["dataset"]["skip_bad_images"] = True
    sizes = [images.shape[0] for images, _ in build_dataloader(section, "Train", 12)]
    assert sizes == [13, 16, 16]


def test_check_dataset_reports_a_corrupt_image_and_a_wrong_label_length(
        tiny_demo_root, tmp_path, capsys):
    list_file = corrupt_copy(tiny_demo_root, tmp_path, 1)
    bad_eval = tmp_path / "eval_list.txt"
    rows = (tiny_demo_root / "multilabel_val_list.txt").read_text().splitlines()
    bad_eval.write_text("\n".join(rows[:2] + [rows[2] + ",1"] + rows[3:]) + "\n")
    argv = ["-c", str(DEMO_CONFIG), "-o", "Arch.backbone.channels=[8,16,32,64]",
            "-o", f"DataLoader.Train.dataset.image_root={tmp_path}",
            "-o", f"DataLoader.Train.dataset.cls_label_path={list_file}",
            "-o", f"DataLoader.Eval.dataset.image_root={tiny_demo_root}",
            "-o", f"DataLoader.Eval.dataset.cls_label_path={bad_eval}"]
    assert run_cli(check_dataset.main, argv) == 2
    out = capsys.readouterr()
    first_image = rows and (tiny_demo_root / "multilabel_train_list.txt").read_text().split("\t")[0]
    assert f"unreadable image {tmp_path / first_image}" in out.out
    assert "line 3: 13 labels, expected class_num=12" in out.out
    assert "DataLoader.Train.dataset: 48 images, 1 problem(s)" in out.out
    assert "positives per class: [" in out.out and "2 problem(s) found" in out.err


def test_training_counts_the_skipped_images_in_the_epoch_record(tiny_demo_root, tiny_config, tmp_path):
    import json

    from ppq2l.engine import Trainer
    list_file = corrupt_copy(tiny_demo_root, tmp_path / "copy", 5)
    tiny_config["Global"].update(epochs=1, eval_during_train=False)
    tiny_config["DataLoader"]["Train"]["dataset"].update(
        image_root=str(tmp_path / "copy"), cls_label_path=str(list_file), skip_bad_images=True)
    Trainer(tiny_config).train()
    record = json.loads((tmp_path / "output" / "metrics.jsonl").read_text())
    assert record["skipped_images"] == 5 and record["step"] == 3
    assert "5 bad images skipped" in (tmp_path / "output" / "train.log").read_text()


def test_csv_and_coco_datasets_check_their_images_when_built(tiny_demo_root, listed, tmp_path):
    _, ops = listed
    zeros = ",0" * 12
    (tmp_path / "gone.csv").write_text(f"path\ntrain2017/000000000001.jpg{zeros}\nnope/x.jpg{zeros}\n")
    with pytest.raises(DataError, match=r"1 of 2 listed images do not exist: .*nope/x.jpg "
                                        r"\(line 3 of .*gone.csv\)"):
        CsvDataset(tiny_demo_root, tmp_path / "gone.csv", ops, 12)
    with pytest.raises(DataError, match=f"image_root {tmp_path / 'absent'} does not exist"):
        CocoDataset(tmp_path / "absent", tiny_demo_root / "annotations" / "instances_train2017.json",
                    ops, class_num=12)


def test_check_dataset_lists_every_missing_image(tiny_demo_root, tmp_path, capsys):
    rows = (tiny_demo_root / "multilabel_val_list.txt").read_text().splitlines()
    names = [row.split("\t")[0] for row in rows]
    missing = names[:7]
    for name in names[7:]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes((tiny_demo_root / name).read_bytes())
    argv = ["-c", str(DEMO_CONFIG), "-o", f"DataLoader.Train.dataset.image_root={tiny_demo_root}",
            "-o", f"DataLoader.Train.dataset.cls_label_path={tiny_demo_root / 'multilabel_train_list.txt'}",
            "-o", f"DataLoader.Eval.dataset.image_root={tmp_path}",
            "-o", f"DataLoader.Eval.dataset.cls_label_path={tiny_demo_root / 'multilabel_val_list.txt'}"]
    assert run_cli(check_dataset.main, argv) == 2
    out = capsys.readouterr()
    for number, name in enumerate(missing, start=1):
        assert f"  - missing image {tmp_path / name} (line {number} of " in out.out
    assert "7 problem(s) found" in out.err
