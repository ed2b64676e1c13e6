"""Optimizers default to torch's fused (single-kernel) update on CPU: the same result as the
per-tensor loop, the config can still choose, and older loop-optimizer states resume."""
import copy

import pytest
import torch
from torch import nn

from ppq2l.optimizer import build_optimizer
from ppq2l.optimizer.optimizers import fused_unless_configured

CONFIGS = [
    {"name": "AdamW", "weight_decay": 0.05},
    {"name": "Adam", "weight_decay": 1e-3, "amsgrad": True},
    {"name": "SGD", "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3},
]


def small_model() -> nn.Module:
    torch.manual_seed(0)
    # no bias before a norm: its gradient would be rounding noise that Adam scales up to full steps
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LayerNorm(64), nn.Linear(64, 5))


def optimizer_for(model: nn.Module, config: dict, **extra):
    full = {**config, **extra, "lr": {"name": "Constant", "learning_rate": 0.01},
            "lr_multipliers": {"4": 2.0}}  # a second learning rate, as Query2Label recipes use
    return build_optimizer(full, model, 10, 1)[0]


def train(model: nn.Module, optimizer, steps: int, seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        images = torch.randn(6, 3, 6, 6, generator=generator)
        loss = model(images).square().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


@pytest.mark.parametrize("config", CONFIGS, ids=[config["name"] for config in CONFIGS])
def test_default_is_fused_and_equals_the_per_tensor_loop(config):
    fused_model, loop_model = small_model(), small_model()
    fused = optimizer_for(fused_model, config)
    loop = optimizer_for(loop_model, config, foreach=False)
    assert all(group["fused"] is True for group in fused.param_groups)
    assert not any(group["fused"] for group in loop.param_groups)
    train(fused_model, fused, 4)
    train(loop_model, loop, 4)
    for (name, got), expected in zip(fused_model.state_dict().items(), loop_model.state_dict().values()):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.equal(fused_model[4].weight, small_model()[4].weight)  # it did train


def test_configured_foreach_or_fused_is_kept():
    model = small_model()
    chosen = optimizer_for(model, CONFIGS[0], foreach=True)
    assert chosen.param_groups[0]["foreach"] is True and not chosen.param_groups[0]["fused"]
    assert optimizer_for(model, CONFIGS[0], fused=False).param_groups[0]["fused"] is False


def test_parameters_off_cpu_and_cuda_keep_torchs_default():
    groups = [{"params": [nn.Parameter(torch.empty(3, device="meta"))]}]
    assert fused_unless_configured(groups, None, None) is None
    assert fused_unless_configured([{"params": [nn.Parameter(torch.ones(3))]}], None, None) is True


def test_a_loop_optimizer_state_resumes_into_a_fused_build():
    """Checkpoints written before the fused default load and continue the same run."""
    model = small_model()
    loop = optimizer_for(model, CONFIGS[0], foreach=False)
    train(model, loop, 2)
    resumed_model = copy.deepcopy(model)
    resumed = optimizer_for(resumed_model, CONFIGS[0])
    resumed.load_state_dict(copy.deepcopy(loop.state_dict()))
    train(model, loop, 3, seed=2)
    train(resumed_model, resumed, 3, seed=2)
    for got, expected in zip(resumed_model.parameters(), model.parameters()):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
