"""The training state on its own: what `training_state` saves, `restore_training_state` puts back
so the next step equals the step the saved run would have taken, and the EMA cases."""
import logging
import random

import numpy as np
import pytest
import torch
from torch import nn

from ppq2l.engine.checkpoint import save_checkpoint
from ppq2l.engine.ema import ModelEMA
from ppq2l.engine.training_state import restore_training_state, training_state
from ppq2l.errors import CheckpointError, ConfigError

LOGGER = logging.getLogger("test_training_state")
EMPTY_BEST = {"metric": "mAP", "value": None, "epoch": None, "source": None}


def parts(seed=0, with_ema=True):
    """A small model with its EMA, optimizer (with momentum), schedule and a disabled scaler."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    ema = ModelEMA(model, decay=0.5) if with_ema else None
    return model, ema, optimizer, schedule, torch.amp.GradScaler("cpu", enabled=False)


def step(model, ema, optimizer, schedule):
    """One optimizer step on random data (so it depends on the restored RNG too)."""
    loss = model(torch.randn(8, 4)).square().mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    schedule.step()
    if ema is not None:
        ema.update(model)


def saved_run(tmp_path, steps=3, **state):
    model, ema, optimizer, schedule, scaler = parts()
    for _ in range(steps):
        step(model, ema, optimizer, schedule)
    fields = {"epoch": 1, "epoch_batches": 0, "global_step": steps, "skipped_nonfinite": 2,
              "best": {"metric": "mAP", "value": 61.5, "epoch": 1, "source": "ema"},
              "config": {"Global": {"epochs": 4}}, **state}
    path = save_checkpoint(training_state(model, ema, optimizer, schedule, scaler, **fields),
                           tmp_path / "latest.pth")
    return path, (model, ema, optimizer, schedule)


def restore(path, fresh, epochs=4):
    model, ema, optimizer, schedule, scaler = fresh
    return restore_training_state(str(path), {"Global": {"epochs": 4}}, model, ema, optimizer,
                                  schedule, scaler, epochs=epochs, best=dict(EMPTY_BEST),
                                  logger=LOGGER)


def test_a_restored_run_takes_the_same_next_step(tmp_path):
    path, (model, ema, optimizer, schedule) = saved_run(tmp_path)
    draws = (random.random(), float(np.random.rand()))
    step(model, ema, optimizer, schedule)  # the saved run goes on
    fresh = parts(seed=1)  # other initial weights: everything must come from the file
    torch.manual_seed(123), random.seed(5), np.random.seed(7)  # other random states too
    resumed = restore(path, fresh)
    assert (random.random(), float(np.random.rand())) == draws
    step(*fresh[:4])
    assert (resumed.start_epoch, resumed.epoch_batches, resumed.global_step) == (2, 0, 3)
    assert resumed.skipped_nonfinite == 2 and resumed.best["value"] == 61.5
    assert resumed.ema is fresh[1] and fresh[1].updates == ema.updates == 4
    for left, right in ((model, fresh[0]), (ema.module, fresh[1].module)):
        for key, value in left.state_dict().items():
            assert torch.equal(value, right.state_dict()[key]), key
    assert fresh[2].param_groups[0]["lr"] == optimizer.param_groups[0]["lr"] == pytest.approx(0.02)


def test_a_checkpoint_without_ema_restarts_the_ema_from_the_restored_model(tmp_path, caplog):
    path, (model, _, _, _) = saved_run(tmp_path)
    state = torch.load(path, weights_only=True)
    state["ema"] = None
    save_checkpoint(state, path)
    fresh = parts(seed=1)
    with caplog.at_level(logging.WARNING, logger=LOGGER.name):
        resumed = restore(path, fresh)
    assert "has no EMA weights; the EMA restarts from the model" in caplog.text
    assert resumed.ema is not fresh[1] and resumed.ema.updates == 0
    assert torch.equal(resumed.ema.module[0].weight, model[0].weight)


def test_ema_weights_without_an_ema_section_are_dropped_with_a_warning(tmp_path, caplog):
    path, _ = saved_run(tmp_path)
    with caplog.at_level(logging.WARNING, logger=LOGGER.name):
        resumed = restore(path, parts(with_ema=False))
    assert resumed.ema is None
    assert "has EMA weights but the config has no EMA section: they are dropped" in caplog.text


def test_ema_weights_that_do_not_fit_are_named(tmp_path):
    path, _ = saved_run(tmp_path)
    state = torch.load(path, weights_only=True)
    state["ema"]["module"]["2.weight"] = torch.zeros(3, 6)
    save_checkpoint(state, path)
    with pytest.raises(CheckpointError, match=r"latest.pth \(its EMA weights\) does not fit the "
                                              r"model.*shape mismatch \(1\): 2.weight \(3, 6\) "
                                              r"vs model \(2, 6\)"):
        restore(path, parts())


def test_a_finished_run_has_nothing_left_to_train(tmp_path):
    path, _ = saved_run(tmp_path, epoch=4)
    with pytest.raises(ConfigError, match="has already trained 4 epochs and Global.epochs is 4"):
        restore(path, parts(), epochs=4)


def test_a_model_entry_that_holds_no_weights_is_named(tmp_path):
    path, _ = saved_run(tmp_path)
    state = torch.load(path, weights_only=True)
    state["model"] = "weights.pth"  # a hand-edited file
    save_checkpoint(state, path)
    with pytest.raises(CheckpointError, match=r"latest.pth contains no tensors \(its keys: model, "
                                              r"ema, optimizer"):
        restore(path, parts())
