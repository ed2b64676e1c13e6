"""Resuming with a config that differs from the checkpoint's: every change is applied and logged,
or refused with a way forward; nothing is silently ignored."""
import copy

import pytest

from ppq2l.engine import Trainer
from ppq2l.engine.training_state import plan_resume
from ppq2l.errors import CheckpointError, ConfigError


@pytest.fixture
def checkpoint(tiny_config, tmp_path):
    tiny_config["Global"]["epochs"] = 3
    tiny_config["Global"]["eval_during_train"] = False
    trainer = Trainer(tiny_config)
    trainer.train_one_epoch(1)
    trainer.save_latest(1)
    resumed = copy.deepcopy(tiny_config)
    resumed["Global"]["checkpoints"] = str(tmp_path / "output" / "latest.pth")
    return resumed, trainer.global_step, trainer.current_lr()


def test_a_new_learning_rate_applies_from_the_resumed_step(checkpoint, tmp_path, caplog):
    config, step, old_lr = checkpoint
    config["Optimizer"]["lr"]["learning_rate"] = 5e-4
    config["Optimizer"]["weight_decay"] = 0.05
    resumed = Trainer(config)
    assert "Optimizer.lr.learning_rate: 0.0012 -> 0.0005" in caplog.text
    assert "Optimizer.weight_decay: 0.0001 -> 0.05" in caplog.text
    # what a fresh run with the new config has at the same step, reached one step at a time
    fresh_config = copy.deepcopy(config)
    fresh_config["Global"]["checkpoints"] = None
    fresh_config["Global"]["output_dir"] = str(tmp_path / "fresh")
    fresh = Trainer(fresh_config)
    for _ in range(step):
        fresh.optimizer.step()
        fresh.lr_scheduler.step()
    assert resumed.current_lr() == pytest.approx(fresh.current_lr(), rel=1e-12)
    assert resumed.current_lr() != pytest.approx(old_lr)
    decays = {group["weight_decay"] for group in resumed.optimizer.param_groups}
    assert decays == {group["weight_decay"] for group in fresh.optimizer.param_groups}
    assert 0.05 in decays
    assert resumed.lr_scheduler.last_epoch == step


def test_an_unchanged_config_restores_the_schedule_exactly(checkpoint):
    config, step, old_lr = checkpoint
    resumed = Trainer(config)
    assert resumed.current_lr() == old_lr and resumed.lr_scheduler.last_epoch == step


def test_another_optimizer_is_refused_with_the_way_forward(checkpoint):
    config, _, _ = checkpoint
    config["Optimizer"]["name"] = "SGD"
    with pytest.raises(CheckpointError) as info:
        Trainer(config)
    message = str(info.value)
    assert "Optimizer.name='SGD'" in message and "trained with 'AdamW'" in message
    assert "Global.pretrained_model=" in message


def test_changed_parameter_groups_are_a_clear_error(checkpoint):
    config, _, _ = checkpoint
    config["Optimizer"]["no_weight_decay_on_norm_and_bias"] = False  # two groups become one
    with pytest.raises(CheckpointError, match="parameter groups differ"):
        Trainer(config)


def test_ema_decay_change_is_applied_and_logged(checkpoint, caplog):
    config, _, _ = checkpoint
    config["EMA"]["decay"] = 0.5
    resumed = Trainer(config)
    assert resumed.ema.decay == 0.5 and "EMA.decay: 0.99 -> 0.5" in caplog.text


def test_nothing_left_to_train_is_said(checkpoint):
    config, _, _ = checkpoint
    config["Global"]["epochs"] = 1
    with pytest.raises(ConfigError, match="already trained 1 epochs and Global.epochs is 1"):
        Trainer(config)


def test_bookkeeping_keys_are_not_warnings():
    saved = {"Global": {"print_batch_step": 10, "epochs": 5}, "Loss": {"Train": [{"A": {}}]}}
    current = {"Global": {"print_batch_step": 1, "epochs": 5}, "Loss": {"Train": [{"B": {}}]}}
    plan = plan_resume(saved, current, "x.pth")
    assert [key for key, _, _ in plan.changes] == ["Global.print_batch_step", "Loss.Train"]
    assert not plan.rebuild_schedule
    from ppq2l.engine.training_state import changes_to_report
    assert changes_to_report(plan) == (["Loss.Train"], ["Global.print_batch_step"])
