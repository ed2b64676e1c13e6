"""Sharded data under torch.distributed (two gloo processes): each process reads its own samples,
every sample exactly once per epoch, and a sharded training run evaluates like a single process
on the folder dataset it was made from."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from ppq2l.commands.make_shards import make_shards
from ppq2l.config import get_config
from ppq2l.engine import evaluate_from_config

from conftest import DEMO_CONFIG, REPO, tiny_overrides

pytestmark = pytest.mark.slow  # two processes under torch.distributed.run

READER = """
import json, sys
import torch.distributed as dist
import torch
from ppq2l.data import build_dataloader
from ppq2l.data import sharded_dataset

dist.init_process_group("gloo")
reads = []
original = sharded_dataset.read_piece
def counting(url, first, start, stop):
    for index, sample in original(url, first, start, stop):
        reads.append(index)
        yield index, sample
sharded_dataset.read_piece = counting
ops = [{"DecodeImage": None}, {"ResizeImage": {"size": 8}}, {"NormalizeImage": {"order": ""}}, {"ToCHWImage": None}]
section = {"dataset": {"name": "ShardedDataset", "shards": sys.argv[1], "transform_ops": ops, "shuffle_window": 4,
                       "readers": 2},
           "sampler": {"batch_size": 3, "shuffle": True, "drop_last": False}, "loader": {"num_workers": 0}}
loader = build_dataloader(section, "Train", 5, seed=11)
loader.set_epoch(1)
served = [int(row) for _, targets in loader for row in (targets.long() * (1 << torch.arange(5))).sum(1)]
with open(f"{sys.argv[2]}/rank{dist.get_rank()}.json", "w") as handle:
    json.dump({"reads": reads, "served": served, "batches": len(loader)}, handle)
dist.destroy_process_group()
"""


def torchrun(*args, timeout=240):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
               "--rdzv_backend=c10d", "--rdzv_endpoint=127.0.0.1:0", *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_two_gloo_processes_read_each_sample_once(tmp_path):
    rows = []
    for number in range(24):
        cv2.imwrite(str(tmp_path / f"{number}.png"), np.full((6, 6, 3), number * 10, np.uint8))
        rows.append(f"{number}.png\t{','.join(str(number >> bit & 1) for bit in range(5))}")
    (tmp_path / "list.txt").write_text("\n".join(rows) + "\n")
    ops = [{"DecodeImage": None}, {"ResizeImage": {"size": 8}}, {"NormalizeImage": {"order": ""}}, {"ToCHWImage": None}]
    config = {"Arch": {"class_num": 5}, "DataLoader": {"Train": {"dataset": {
        "name": "MultiLabelListDataset", "image_root": str(tmp_path), "cls_label_path": str(tmp_path / "list.txt"),
        "transform_ops": ops}}}}
    make_shards(config, "Train", str(tmp_path / "shards"), samples_per_shard=5)
    (tmp_path / "reader.py").write_text(READER)
    torchrun(tmp_path / "reader.py", tmp_path / "shards" / "shards.json", tmp_path)
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert ranks[0]["batches"] == ranks[1]["batches"] == 4  # 12 samples each, batches of 3
    for key in ("reads", "served"):
        together = ranks[0][key] + ranks[1][key]
        assert sorted(together) == list(range(24)), key
    assert not set(ranks[0]["served"]) & set(ranks[1]["served"])


def test_sharded_training_under_two_processes_evaluates_like_one(tiny_demo_root, tmp_path):
    base = get_config(DEMO_CONFIG, tiny_overrides(tiny_demo_root, tmp_path / "unused"))
    for split in ("Train", "Eval"):
        make_shards(base, split, str(tmp_path / split), samples_per_shard=7, seed=None if split == "Eval" else 0)
    output = tmp_path / "ddp"
    overrides = tiny_overrides(tiny_demo_root, output) + [
        "Global.epochs=1", "Global.num_threads=1", "DataLoader.Train.sampler.batch_size=8",
        "DataLoader.Eval.sampler.batch_size=5"]
    for split in ("Train", "Eval"):
        ops = json.dumps(base["DataLoader"][split]["dataset"]["transform_ops"])
        overrides += [f"DataLoader.{split}.dataset={{name: ShardedDataset, shards: {tmp_path / split / 'shards.json'}, "
                      f"shuffle_window: 8, transform_ops: {ops}}}"]
    arguments = [REPO / "tools" / "train.py", "-c", DEMO_CONFIG]
    for override in overrides:
        arguments += ["-o", override]
    torchrun(*arguments)
    record = json.loads((output / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["step"] == 3  # 48 images / (2 processes x 8)
    single = get_config(DEMO_CONFIG, tiny_overrides(tiny_demo_root, tmp_path / "single") + [
        f"Global.pretrained_model={output / 'latest.pth'}", "DataLoader.Eval.sampler.batch_size=5"])
    results = evaluate_from_config(single)
    assert record["model_mAP"] == pytest.approx(results["mAP"], abs=1e-6)
    assert record["model_loss"] == pytest.approx(results["loss"], rel=1e-6)
