"""Training and evaluation with unknown labels end to end: a run trains on a list with hidden
labels, and evaluation leaves the unknown labels out of the metrics and counts them."""
import json

import numpy as np
import pytest

from ppq2l.commands.hide_labels import hide_labels
from ppq2l.data.list_dataset import read_label_list
from ppq2l.engine import Trainer, evaluate_from_config


def write_list(path, paths, labels):
    path.write_text("".join(f"{p}\t{','.join(map(str, row))}\n" for p, row in zip(paths, labels)))


def test_unknown_labels_reach_the_loss_and_the_metrics(tiny_demo_root, tiny_config, tmp_path):
    paths, labels, _ = read_label_list(tiny_demo_root / "multilabel_train_list.txt", 12)
    write_list(tmp_path / "train.txt", paths, hide_labels(labels, 0.5, seed=0))
    paths, labels, _ = read_label_list(tiny_demo_root / "multilabel_val_list.txt", 12)
    column = int(np.argmax((labels == 1).sum(axis=0)))
    partial = labels.copy()
    partial[labels[:, column] == 0, column] = -1  # only the positives of one class are known
    write_list(tmp_path / "val.txt", paths, partial)
    tiny_config["Global"]["epochs"] = 1
    tiny_config["DataLoader"]["Train"]["dataset"]["cls_label_path"] = str(tmp_path / "train.txt")
    tiny_config["DataLoader"]["Eval"]["dataset"]["cls_label_path"] = str(tmp_path / "val.txt")
    Trainer(tiny_config).train()
    tiny_config["Global"]["pretrained_model"] = str(tmp_path / "output" / "best_model.pth")
    results = evaluate_from_config(tiny_config)
    saved = json.loads((tmp_path / "output" / "eval_metrics.json").read_text())
    assert saved["num_unknown_labels"] == int((partial == -1).sum()) and saved["num_labels"] == partial.size
    assert saved["unknown_labels_per_class"][column] == int((labels[:, column] == 0).sum())
    # with its negatives unknown, the class is ranked among its positives only: AP 100
    assert results["per_class_AP"][column] == pytest.approx(100.0)
    assert "labels unknown, left out" in (tmp_path / "output" / "eval.log").read_text()


def test_a_selective_run_estimates_its_prior_from_the_training_labels(tiny_demo_root, tiny_config, tmp_path):
    paths, labels, _ = read_label_list(tiny_demo_root / "multilabel_train_list.txt", 12)
    hidden = hide_labels(labels, 0.5, seed=1)
    write_list(tmp_path / "train.txt", paths, hidden)
    tiny_config["Global"]["epochs"] = 1
    tiny_config["DataLoader"]["Train"]["dataset"]["cls_label_path"] = str(tmp_path / "train.txt")
    tiny_config["Loss"]["Train"] = [{"AsymmetricLoss": {"unknown": "selective", "reduction": "mean",
                                                        "selective": {"likelihood_topk": 2}}}]
    trainer = Trainer(tiny_config)
    known = (hidden >= 0).sum(axis=0)
    expected = (hidden == 1).sum(axis=0) / np.maximum(known, 1)
    assert trainer.loss_fn.components["AsymmetricLoss"].prior.numpy() == pytest.approx(expected, rel=1e-6)
    trainer.train()  # a run with it trains and saves a model
    assert (tmp_path / "output" / "best_model.pth").is_file()
