"""EMA: the average follows the formula over weights and buffers, and leaves the model alone."""
import pytest
import torch
from torch import nn

from ppq2l.engine.ema import ModelEMA


def test_update_follows_the_formula_for_parameters_and_buffers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = ModelEMA(model, decay=0.9)
    start = {key: value.clone() for key, value in model.state_dict().items()}
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model.train()
    model(torch.randn(8, 3))  # moves BatchNorm's running statistics and its counter
    ema.update(model)
    for key, value in model.state_dict().items():
        averaged = ema.module.state_dict()[key]
        if value.dtype.is_floating_point:
            assert torch.allclose(averaged, 0.9 * start[key] + 0.1 * value), key
        else:
            assert torch.equal(averaged, value), key
    assert not any(parameter.requires_grad for parameter in ema.module.parameters())
    assert not ema.module.training


def test_warmup_decay_grows_towards_the_target():
    ema = ModelEMA(nn.Linear(2, 2), decay=0.999, warmup=True)
    decays = []
    for _ in range(3):
        decays.append(ema.current_decay())
        ema.update(nn.Linear(2, 2))
    assert decays == pytest.approx([0.1, 2 / 11, 3 / 12])
    assert ModelEMA(nn.Linear(2, 2), decay=0.999).current_decay() == 0.999


def test_state_dict_round_trip():
    model = nn.Linear(2, 2)
    ema = ModelEMA(model, decay=0.5)
    ema.update(nn.Linear(2, 2))
    other = ModelEMA(nn.Linear(2, 2), decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1
    assert torch.equal(other.module.weight, ema.module.weight)
