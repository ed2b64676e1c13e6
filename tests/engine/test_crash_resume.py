"""Crash safety: a run killed by SIGKILL right after a mid-epoch checkpoint resumes to exactly the
weights of an uninterrupted run; a truncated latest.pth is a clear error and the previous file
still resumes; gradient accumulation matches a larger batch."""
import signal
import subprocess
import sys

import pytest
import torch
from torch import nn

from ppq2l.config import get_config
from ppq2l.engine import Trainer
from ppq2l.engine.checkpoint import load_checkpoint, previous_path
from ppq2l.errors import CheckpointError
from ppq2l.optimizer import build_optimizer

from conftest import DEMO_CONFIG, tiny_overrides

pytestmark = pytest.mark.slow  # training runs in subprocesses (seconds each)

# Runs ppq2l-train's main in a child that SIGKILLs itself just after the first checkpoint
# written inside epoch 2 (after its batch 2) is on disk: a crash at an arbitrary point of training.
KILLER = """
import os, signal, sys
from ppq2l.engine.trainer import Trainer
original = Trainer.save_latest
def save_then_die(self, epoch, epoch_batches=0):
    original(self, epoch, epoch_batches)
    if epoch == 1 and epoch_batches == 2:
        os.kill(os.getpid(), signal.SIGKILL)
Trainer.save_latest = save_then_die
from ppq2l.commands.train import main
main(sys.argv[1:])
"""


def crash_config(root, output, *extra):
    overrides = tiny_overrides(root, output) + [
        "Global.epochs=2", "Global.eval_during_train=False", "Global.save_interval_steps=1",
        "Global.num_threads=1", "Global.deterministic=True",
        "DataLoader.Train.sampler.batch_size=8", *extra]
    return overrides


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tiny_demo_root, tmp_path):
    killed = tmp_path / "killed"
    overrides = crash_config(tiny_demo_root, killed)
    script = KILLER
    args = [sys.executable, "-c", script, "-c", str(DEMO_CONFIG)]
    for override in overrides:
        args += ["-o", override]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    state = load_checkpoint(killed / "latest.pth")
    assert (state["epoch"], state["epoch_batches"], state["global_step"]) == (1, 2, 8)

    resumed_config = get_config(DEMO_CONFIG, overrides + [f"Global.checkpoints={killed / 'latest.pth'}"])
    resumed = Trainer(resumed_config)
    assert (resumed.start_epoch, resumed.resume_batches) == (2, 2)
    resumed.train()
    reference = Trainer(get_config(DEMO_CONFIG, crash_config(tiny_demo_root, tmp_path / "whole")))
    reference.train()
    assert resumed.global_step == reference.global_step == 12
    worst = max((a.double() - b.double()).abs().max().item()
                for a, b in zip(resumed.model.state_dict().values(),
                                reference.model.state_dict().values()) if a.is_floating_point())
    assert worst <= 1e-7
    for a, b in zip(resumed.ema.module.state_dict().values(), reference.ema.module.state_dict().values()):
        assert torch.allclose(a.double(), b.double(), atol=1e-7, rtol=0)
    print(f"kill-resume max weight difference: {worst:.3g}")


def test_truncated_latest_is_a_clear_error_and_the_previous_one_resumes(tiny_demo_root, tmp_path):
    output = tmp_path / "run"
    overrides = crash_config(tiny_demo_root, output, "Global.epochs=1")
    Trainer(get_config(DEMO_CONFIG, overrides)).train()
    latest = output / "latest.pth"
    previous = previous_path(latest)
    assert previous.is_file() and load_checkpoint(previous)["epoch_batches"] == 5
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"truncated.*latest\.prev\.pth"):
        Trainer(get_config(DEMO_CONFIG, overrides + [f"Global.checkpoints={latest}"]))
    trainer = Trainer(get_config(DEMO_CONFIG, overrides + [f"Global.checkpoints={previous}"]))
    assert (trainer.start_epoch, trainer.resume_batches, trainer.global_step) == (1, 5, 5)
    trainer.train()
    assert load_checkpoint(latest)["global_step"] == 6


def linear_trainer(root, output, batch_size, update_freq):
    """A Trainer whose model is swapped for a BatchNorm-free linear classifier, so that a batch
    split in micro-batches must give the same gradients as the whole batch."""
    config = get_config(DEMO_CONFIG, tiny_overrides(root, output) + [
        "Global.eval_during_train=False", f"Global.update_freq={update_freq}",
        f"DataLoader.Train.sampler.batch_size={batch_size}"])
    config.pop("EMA")
    config["Optimizer"].pop("lr_multipliers", None)  # the swapped-in model has no backbone
    trainer = Trainer(config)
    torch.manual_seed(0)
    model = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, 12))
    trainer.model = trainer.train_model = model
    trainer.optimizer, trainer.lr_scheduler = build_optimizer(
        config["Optimizer"], model, trainer.steps_per_epoch(), trainer.epochs)
    return trainer


def test_update_freq_two_matches_a_double_batch(tiny_demo_root, tmp_path):
    accumulated = linear_trainer(tiny_demo_root, tmp_path / "acc", 8, 2)
    whole = linear_trainer(tiny_demo_root, tmp_path / "whole", 16, 1)
    assert accumulated.steps_per_epoch() == whole.steps_per_epoch() == 3
    for trainer in (accumulated, whole):
        trainer.train_loader.set_epoch(1)
        trainer.train_one_epoch(1)
    assert accumulated.global_step == whole.global_step == 3
    for a, b in zip(accumulated.model.parameters(), whole.model.parameters()):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)
    assert not torch.allclose(whole.model[2].weight, linear_trainer(
        tiny_demo_root, tmp_path / "fresh", 16, 1).model[2].weight)  # training did move them
