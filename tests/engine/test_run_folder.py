"""One training run per output folder: a finished or running run is never overwritten unless the
user resumes it or asks for Global.overwrite; stale locks and temporary files are cleaned up."""
import json
import os
import socket
import subprocess
import sys

import pytest

from ppq2l.engine import Trainer
from ppq2l.engine.checkpoint import load_checkpoint
from ppq2l.engine.run_folder import LOCK_FILE
from ppq2l.errors import ConfigError


def dead_pid():
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    return int(child.stdout)


@pytest.fixture
def finished_run(tiny_config, tmp_path):
    tiny_config["Global"]["epochs"] = 1
    Trainer(tiny_config).train()
    output = tmp_path / "output"
    return tiny_config, output, {name: (output / name).read_bytes()
                                 for name in ("best_model.pth", "latest.pth", "config.yaml",
                                              "metrics.jsonl")}


def test_a_finished_run_is_refused_and_left_byte_identical(finished_run):
    config, output, before = finished_run
    config["Optimizer"]["lr"]["learning_rate"] = 1e-6  # a second, different run
    with pytest.raises(ConfigError) as info:
        Trainer(config)
    message = str(info.value)
    assert "already holds a training run" in message and "metrics.jsonl reaches epoch 1" in message
    assert f"Global.checkpoints={output / 'latest.pth'}" in message and "Global.overwrite=True" in message
    assert {name: (output / name).read_bytes() for name in before} == before
    assert not (output / LOCK_FILE).exists()


def test_overwrite_deletes_the_earlier_run_only_when_training_starts(finished_run):
    config, output, before = finished_run
    config["Global"]["overwrite"] = True
    config["Global"]["epochs"] = 2
    config["Global"]["eval_during_train"] = False
    trainer = Trainer(config)
    # built but not trained: nothing of the earlier run is gone yet
    assert {name: (output / name).read_bytes() for name in before} == before
    trainer.train()
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in records] == [1, 2]  # the new run's alone
    assert load_checkpoint(output / "best_model.pth")["selected_by"].startswith("last epoch")
    assert "Global.overwrite: deleted the earlier run" in (output / "train.log").read_text()


def test_overwrite_with_a_config_mistake_loses_nothing(finished_run):
    config, output, before = finished_run
    config["Global"]["overwrite"] = True
    config["Arch"]["hiden_dim"] = 8
    with pytest.raises(ConfigError, match="hiden_dim"):
        Trainer(config)
    assert {name: (output / name).read_bytes() for name in before} == before


def test_resuming_in_the_same_folder_is_allowed(finished_run):
    config, output, _ = finished_run
    config["Global"]["checkpoints"] = str(output / "latest.pth")
    config["Global"]["epochs"] = 2
    Trainer(config).train()
    assert load_checkpoint(output / "latest.pth")["epoch"] == 2


def test_resuming_another_folders_checkpoint_into_a_used_folder_is_refused(finished_run, tmp_path):
    config, output, _ = finished_run
    other = tmp_path / "other"
    other.mkdir()
    (other / "latest.pth").write_bytes((output / "latest.pth").read_bytes())
    config["Global"]["checkpoints"] = str(other / "latest.pth")
    with pytest.raises(ConfigError, match="already holds a training run"):
        Trainer(config)


def test_a_live_lock_is_refused(tiny_config, tmp_path):
    output = tmp_path / "output"
    output.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (output / LOCK_FILE).write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(),
                                                     "started": "then"}))
        with pytest.raises(ConfigError, match=f"another training run \\(pid {sleeper.pid}, started then\\)"):
            Trainer(tiny_config)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_lock_from_another_host_names_the_file_to_delete(tiny_config, tmp_path):
    output = tmp_path / "output"
    output.mkdir()
    (output / LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "then"}))
    with pytest.raises(ConfigError, match="host elsewhere.*delete that file"):
        Trainer(tiny_config)


def test_stale_lock_and_temporaries_of_a_killed_run_are_removed(finished_run, caplog):
    config, output, _ = finished_run
    pid = dead_pid()
    (output / LOCK_FILE).write_text(json.dumps({"pid": pid, "host": socket.gethostname(),
                                                "started": "then"}))
    stale = output / f".latest.pth.tmp{pid}"
    stale.write_bytes(b"x" * 1000)
    config["Global"]["checkpoints"] = str(output / "latest.pth")
    config["Global"]["epochs"] = 2
    trainer = Trainer(config)
    assert not (output / LOCK_FILE).exists() and "stale lock" in caplog.text
    trainer.train()
    assert not stale.exists() and str(stale) in caplog.text
    assert not (output / LOCK_FILE).exists()


def test_the_lock_is_held_while_training_and_released_after_an_error(tiny_config, tmp_path, monkeypatch):
    output = tmp_path / "output"
    seen = {}

    def fail(self, epoch, first_batch=0):
        seen["lock"] = json.loads((output / LOCK_FILE).read_text())
        raise RuntimeError("boom")

    monkeypatch.setattr(Trainer, "train_one_epoch", fail)
    with pytest.raises(RuntimeError, match="boom"):
        Trainer(tiny_config).train()
    assert seen["lock"]["pid"] == os.getpid() and seen["lock"]["host"] == socket.gethostname()
    assert not (output / LOCK_FILE).exists()


def test_config_yaml_is_written_when_training_starts_not_before(finished_run):
    config, output, before = finished_run
    config["Global"]["checkpoints"] = str(output / "latest.pth")
    config["Global"]["epochs"] = 3
    trainer = Trainer(config)
    assert (output / "config.yaml").read_bytes() == before["config.yaml"]
    trainer.train()
    assert "epochs: 3" in (output / "config.yaml").read_text()
