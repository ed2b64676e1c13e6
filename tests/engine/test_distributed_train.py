"""Two gloo processes under torchrun train one epoch; their gathered evaluation equals a
single-process evaluation of the same weights (every validation sample counted once)."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from ppq2l.config import get_config
from ppq2l.data.dataloader import SeededSampler
from ppq2l.engine import evaluate_from_config

from conftest import DEMO_CONFIG, REPO, tiny_overrides

pytestmark = pytest.mark.slow  # two training processes under torch.distributed.run


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unpadded_eval_shards_cover_every_sample_once():
    shards = [SeededSampler(11, shuffle=False, seed=0, num_replicas=3, rank=rank, pad=False).shard()[0]
              for rank in range(3)]
    assert sorted(np.concatenate(shards).tolist()) == list(range(11))
    assert [len(shard) for shard in shards] == [4, 4, 3]


def test_two_process_gloo_run_evaluates_like_a_single_process(tiny_demo_root, tmp_path):
    output = tmp_path / "ddp"
    overrides = tiny_overrides(tiny_demo_root, output) + [
        "Global.epochs=1", "Global.num_threads=1", "DataLoader.Train.sampler.batch_size=8",
        "DataLoader.Eval.sampler.batch_size=5"]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
               f"--master_port={free_port()}", str(REPO / "tools" / "train.py"), "-c", str(DEMO_CONFIG)]
    for override in overrides:
        command += ["-o", override]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = json.loads((output / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["step"] == 3  # 48 images / (2 processes x 8)
    single = get_config(DEMO_CONFIG, tiny_overrides(tiny_demo_root, tmp_path / "single") + [
        f"Global.pretrained_model={output / 'latest.pth'}", "DataLoader.Eval.sampler.batch_size=5"])
    results = evaluate_from_config(single)
    print(f"distributed vs single-process mAP: {record['model_mAP']} vs {results['mAP']}")
    assert record["model_mAP"] == pytest.approx(results["mAP"], abs=1e-6)
    # Shards of 12 images in batches of 5, 5, 2 against one shard in 5, 5, 5, 5, 4: the loss
    # agrees only if both ranks' samples enter it, each with its batch's weight.
    assert record["model_loss"] == pytest.approx(results["loss"], rel=1e-6)
    assert "cannot" not in result.stderr and (output / "train.log").read_text().count("epoch 1/1:") == 1
