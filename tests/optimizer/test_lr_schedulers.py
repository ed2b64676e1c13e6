"""Per-step learning-rate schedules: their values, agreement with torch's OneCycleLR, resuming from
a saved state, and config mistakes."""
import io
import json
import math
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from ppq2l.errors import ConfigError
from ppq2l.optimizer import build_lr_scheduler, build_optimizer
from ppq2l.registry import LR_SCHEDULERS

# Optimizer hyperparameters and schedule states that the earlier schedule builders (functions
# returning ConstantSchedule, WarmupCosineSchedule, MultiStepSchedule and OneCycleSchedule)
# wrote after 7 of 16 steps, with the (lr, beta1) of the 9 steps that followed.
SAVED_SCHEDULES = json.loads((Path(__file__).parent / "saved_schedules.json").read_text())


def build(lr_config, steps_per_epoch, epochs, optimizer="AdamW"):
    model = nn.Linear(3, 2)
    return build_optimizer({"name": optimizer, "lr": lr_config}, model, steps_per_epoch, epochs)


def run(optimizer, scheduler, steps):
    """Rates (and beta1 where present) used by each of the next `steps` optimizer steps."""
    seen = []
    for _ in range(steps):
        group = optimizer.param_groups[0]
        seen.append((group["lr"], group["betas"][0] if "betas" in group else None))
        optimizer.step()
        scheduler.step()
    return seen


def test_one_cycle_matches_torch_and_peaks_after_pct_start():
    total, peak = 40, 1e-3
    optimizer, scheduler = build({"name": "OneCycleLR", "learning_rate": peak, "pct_start": 0.2}, 8, 5)
    ours = run(optimizer, scheduler, total)

    reference_optimizer = torch.optim.AdamW(nn.Linear(3, 2).parameters(), lr=peak)
    reference = torch.optim.lr_scheduler.OneCycleLR(reference_optimizer, max_lr=peak, total_steps=total,
                                                    pct_start=0.2)
    expected = run(reference_optimizer, reference, total)
    for (lr, beta), (expected_lr, expected_beta) in zip(ours, expected):
        assert lr == pytest.approx(expected_lr, rel=1e-12)
        assert beta == pytest.approx(expected_beta, rel=1e-12)

    rates = [lr for lr, _ in ours]
    assert rates.index(max(rates)) == int(0.2 * total) - 1
    assert max(rates) == pytest.approx(peak)
    assert rates[0] == pytest.approx(peak / 25)
    assert rates[-1] == pytest.approx(peak / 25 / 1e4)
    # beta1 moves against the rate: 0.95 at the start, 0.85 at the peak.
    assert ours[0][1] == pytest.approx(0.95) and ours[int(0.2 * total) - 1][1] == pytest.approx(0.85)


def test_one_cycle_edges_do_not_fail():
    # 5 steps with pct_start 0.2 is a zero-length warm-up that makes torch's own class divide by zero.
    optimizer, scheduler = build({"name": "OneCycleLR", "learning_rate": 1e-2}, 5, 1)
    rates = [lr for lr, _ in run(optimizer, scheduler, 5)]
    assert rates[0] == pytest.approx(1e-2) and rates == sorted(rates, reverse=True)
    # Steps past the end keep the final rate instead of raising or rising again.
    final = optimizer.param_groups[0]["lr"]
    run(optimizer, scheduler, 3)
    assert optimizer.param_groups[0]["lr"] == final == pytest.approx(1e-2 / 25 / 1e4)


def test_cosine_warmup_values():
    base, start, floor = 1e-3, 1e-5, 1e-6
    optimizer, scheduler = build({"name": "CosineWarmup", "learning_rate": base, "warmup_epoch": 1,
                                  "warmup_start_lr": start, "eta_min": floor}, 4, 3)
    rates = [lr for lr, _ in run(optimizer, scheduler, 12)]
    assert rates[0] == pytest.approx(start)
    assert rates[2] == pytest.approx((start + base) / 2)
    assert rates[4] == pytest.approx(base)
    assert rates[7] == pytest.approx(floor + (base - floor) * (1 + math.cos(math.pi * (7 - 4) / 7)) / 2)
    assert rates[11] == pytest.approx(floor)
    assert max(rates) == rates[4]


def test_cosine_without_warmup_starts_at_base():
    optimizer, scheduler = build({"name": "CosineWarmup", "learning_rate": 0.1}, 3, 2)
    rates = [lr for lr, _ in run(optimizer, scheduler, 6)]
    assert rates[0] == pytest.approx(0.1) and rates[-1] == pytest.approx(0.0, abs=1e-12)


def test_multi_step_decay_and_constant():
    optimizer, scheduler = build({"name": "MultiStepDecay", "learning_rate": 1.0, "milestones": [1, 3],
                                  "gamma": 0.5}, 3, 4, optimizer="SGD")
    rates = [lr for lr, _ in run(optimizer, scheduler, 12)]
    assert rates == pytest.approx([1.0] * 3 + [0.5] * 6 + [0.25] * 3)
    optimizer, scheduler = build({"name": "Constant", "learning_rate": 0.3}, 2, 2)
    assert [lr for lr, _ in run(optimizer, scheduler, 4)] == pytest.approx([0.3] * 4)


@pytest.mark.parametrize("lr_config", [
    {"name": "OneCycleLR", "learning_rate": 1e-3, "pct_start": 0.3},
    {"name": "CosineWarmup", "learning_rate": 1e-3, "warmup_epoch": 1, "warmup_start_lr": 1e-5},
    {"name": "MultiStepDecay", "learning_rate": 1e-3, "milestones": [2]},
    {"name": "Constant", "learning_rate": 1e-3},
])
def test_resumed_schedule_continues_the_same_sequence(lr_config):
    steps_per_epoch, epochs, done = 4, 4, 7
    optimizer, scheduler = build(lr_config, steps_per_epoch, epochs)
    run(optimizer, scheduler, done)
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "lr_scheduler": scheduler.state_dict()}, buffer)
    expected = run(optimizer, scheduler, steps_per_epoch * epochs - done)

    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    resumed_optimizer, resumed_scheduler = build(lr_config, steps_per_epoch, epochs)
    resumed_optimizer.load_state_dict(state["optimizer"])
    resumed_scheduler.load_state_dict(state["lr_scheduler"])
    assert run(resumed_optimizer, resumed_scheduler, steps_per_epoch * epochs - done) == expected


@pytest.mark.parametrize("saved", SAVED_SCHEDULES, ids=lambda saved: saved["config"]["name"])
def test_states_saved_by_the_earlier_schedule_classes_continue_the_same_sequence(saved):
    optimizer, scheduler = build(saved["config"], saved["steps_per_epoch"], saved["epochs"])
    state = optimizer.state_dict()
    for group, saved_group in zip(state["param_groups"], saved["optimizer_param_groups"]):
        group.update(saved_group)
    optimizer.load_state_dict(state)
    scheduler.load_state_dict(saved["lr_scheduler"])
    rates = run(optimizer, scheduler, len(saved["next_rates"]))
    assert [value for pair in rates for value in pair] == pytest.approx(
        [value for pair in saved["next_rates"] for value in pair], rel=1e-12)


def test_each_schedule_is_registered_under_its_class_name():
    assert LR_SCHEDULERS.names() == ["Constant", "CosineWarmup", "MultiStepDecay", "OneCycleLR"]
    for name in LR_SCHEDULERS.names():
        schedule = LR_SCHEDULERS.get(name)
        assert schedule.__name__ == name
        assert issubclass(schedule, torch.optim.lr_scheduler.LRScheduler)
    _, scheduler = build({"name": "OneCycleLR", "learning_rate": 1e-3}, 4, 2)
    assert isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR)


@pytest.mark.parametrize("name", ["OneCycleLR", "CosineWarmup"])
def test_resuming_a_schedule_of_another_length_is_refused(name):
    optimizer, scheduler = build({"name": name, "learning_rate": 1e-3}, 4, 2)
    _, longer = build({"name": name, "learning_rate": 1e-3}, 4, 3)
    with pytest.raises(ConfigError, match="8 steps but the config gives 12"):
        longer.load_state_dict(scheduler.state_dict())


def test_steps_in_trainer_order_raise_no_warnings():
    optimizer, scheduler = build({"name": "OneCycleLR", "learning_rate": 1e-3}, 2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run(optimizer, scheduler, 4)


@pytest.mark.parametrize("lr_config, message", [
    ({"name": "Cosine", "learning_rate": 1e-3}, r"unknown lr scheduler 'Cosine'.*Did you mean"),
    ({"name": "OneCycleLR", "learning_rate": 1e-3, "max_lr": 1e-2},
     r"Optimizer.lr OneCycleLR: unknown keyword 'max_lr'.*Accepted: learning_rate, pct_start"),
    ({"name": "OneCycleLR"}, r"Optimizer\.lr OneCycleLR needs learning_rate"),
    ({"name": "OneCycleLR", "learning_rate": 1e-3, "pct_start": 1.5},
     r"Optimizer\.lr OneCycleLR: pct_start must be a number from 0 to 1, got 1\.5"),
    ({"name": "OneCycleLR", "learning_rate": 1e-3, "anneal_strategy": "exp"},
     r"Optimizer\.lr OneCycleLR: anneal_strategy must be one of cos, linear, got 'exp'"),
    ({"name": "CosineWarmup", "learning_rate": 1e-3, "warmup_epoch": 2},
     r"Optimizer\.lr CosineWarmup: warmup_epoch 2 leaves no steps to decay in 2 epochs"),
    ({"name": "MultiStepDecay", "learning_rate": 1e-3, "milestones": [2, 1]},
     r"Optimizer\.lr MultiStepDecay: milestones must be a list of one or more increasing positive"),
    ({"name": "MultiStepDecay", "learning_rate": 1e-3, "milestones": []}, "milestones"),
    ({"learning_rate": 1e-3}, "expected a mapping with a name"),
])
def test_schedule_config_mistakes(lr_config, message):
    optimizer = torch.optim.AdamW(nn.Linear(2, 2).parameters(), lr=1e-3)
    with pytest.raises(ConfigError, match=message):
        build_lr_scheduler(lr_config, optimizer, steps_per_epoch=4, epochs=2)


def test_one_cycle_with_an_optimizer_without_momentum_needs_cycle_momentum_off():
    optimizer = torch.optim.Adagrad(nn.Linear(2, 2).parameters(), lr=1e-3)
    with pytest.raises(ConfigError, match="cycle_momentum"):
        build_lr_scheduler({"name": "OneCycleLR", "learning_rate": 1e-3}, optimizer, 4, 2)
    scheduler = build_lr_scheduler({"name": "OneCycleLR", "learning_rate": 1e-3, "cycle_momentum": False},
                                   optimizer, 4, 2)
    assert scheduler.get_last_lr()[0] == pytest.approx(1e-3 / 25)


def test_empty_training_run_is_reported():
    optimizer = torch.optim.AdamW(nn.Linear(2, 2).parameters(), lr=1e-3)
    with pytest.raises(ConfigError, match="at least one step"):
        build_lr_scheduler({"name": "Constant", "learning_rate": 1e-3}, optimizer, 0, 3)
