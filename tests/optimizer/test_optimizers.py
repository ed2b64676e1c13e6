"""build_optimizer: parameter groups with and without weight decay, registered optimizers and the
messages for unknown names and keywords."""
import copy

import pytest
import torch
from torch import nn

from ppq2l.errors import ConfigError
from ppq2l.optimizer import build_optimizer, parameter_groups
from ppq2l.registry import OPTIMIZERS


class ClassHead(nn.Module):
    """Shaped like the Query2Label head: W [1, K, d] and a per-class bias b [1, K]."""

    def __init__(self, classes: int, dim: int) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(1, classes, dim))
        self.b = nn.Parameter(torch.zeros(1, classes))


class Encoder(nn.Module):
    """Declares a 2-D positional table exempt from decay, as timm models do."""

    def __init__(self) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(4, 8))
        self.proj = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)

    def no_weight_decay(self):
        return {"pos_embed"}


class TinyModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = Encoder()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.query_embed = nn.Embedding(5, 8)
        self.frozen_queries = nn.Embedding(5, 8)
        self.frozen_queries.weight.requires_grad_(False)
        self.in_proj_bias = nn.Parameter(torch.zeros(3, 8))
        self.fc = ClassHead(5, 8)


def group_names(model, groups):
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    return [sorted(names[id(parameter)] for parameter in group["params"]) for group in groups]


def adamw_config(**extra):
    return {"name": "AdamW", "lr": {"name": "Constant", "learning_rate": 1e-3}, **extra}


def test_norms_biases_and_declared_names_skip_weight_decay():
    model = TinyModel()
    optimizer, _ = build_optimizer(adamw_config(weight_decay=0.05), model, steps_per_epoch=2, epochs=1)
    decayed, exempt = group_names(model, optimizer.param_groups)
    assert decayed == ["conv.weight", "encoder.proj.weight", "fc.W", "query_embed.weight"]
    assert exempt == ["bn.bias", "bn.weight", "conv.bias", "encoder.norm.bias", "encoder.norm.weight",
                      "encoder.pos_embed", "encoder.proj.bias", "fc.b", "in_proj_bias"]
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.05, 0.0]
    assert all(group["lr"] == 1e-3 for group in optimizer.param_groups)


def test_grouping_can_be_switched_off_and_frozen_parameters_are_left_out():
    model = TinyModel()
    optimizer, _ = build_optimizer(adamw_config(no_weight_decay_on_norm_and_bias=False), model, 2, 1)
    (everything,) = group_names(model, optimizer.param_groups)
    trainable = sorted(name for name, p in model.named_parameters() if p.requires_grad)
    assert everything == trainable and "frozen_queries.weight" not in everything
    assert optimizer.param_groups[0]["weight_decay"] == 1e-2


def test_exempt_parameters_are_not_decayed_by_a_step():
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.bias.fill_(1.0)
    optimizer, _ = build_optimizer(
        {"name": "SGD", "weight_decay": 0.5, "lr": {"name": "Constant", "learning_rate": 0.1}}, model, 1, 1)
    weight_before = model.weight.detach().clone()
    model.weight.grad, model.bias.grad = torch.zeros(2, 2), torch.zeros(2)
    optimizer.step()
    torch.testing.assert_close(model.bias.detach(), torch.ones(2))
    torch.testing.assert_close(model.weight.detach(), weight_before * (1 - 0.1 * 0.5))


@pytest.mark.parametrize("config, expected_type, checks", [
    ({"name": "AdamW", "betas": [0.8, 0.99], "eps": 1e-6}, torch.optim.AdamW,
     {"betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 1e-2}),
    ({"name": "Adam", "weight_decay": 1e-4}, torch.optim.Adam, {"weight_decay": 1e-4, "betas": (0.9, 0.999)}),
    ({"name": "SGD", "momentum": 0.9, "nesterov": True}, torch.optim.SGD,
     {"momentum": 0.9, "nesterov": True, "weight_decay": 0.0}),
])
def test_registered_optimizers(config, expected_type, checks):
    config = {**config, "lr": {"name": "Constant", "learning_rate": 0.01}}
    optimizer, scheduler = build_optimizer(config, nn.Linear(3, 2), 4, 2)
    assert isinstance(optimizer, expected_type) and type(optimizer).__name__ == config["name"]
    decayed = optimizer.param_groups[0]
    for key, value in checks.items():
        assert decayed[key] == value, key
    assert scheduler.optimizer is optimizer


def test_each_optimizer_is_registered_under_its_class_name():
    assert OPTIMIZERS.names() == ["Adam", "AdamW", "SGD"]
    for name in OPTIMIZERS.names():
        assert OPTIMIZERS.get(name).__name__ == name
        assert issubclass(OPTIMIZERS.get(name), getattr(torch.optim, name))


def test_a_torch_adamw_state_continues_in_the_registered_adamw():
    """Checkpoints hold state dicts of torch's own AdamW; the registered class must take them."""
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    config = adamw_config(fused=False)
    reference = torch.optim.AdamW(parameter_groups(model), lr=1e-3, fused=False)
    for _ in range(3):
        model(torch.randn(4, 3)).square().sum().backward()
        reference.step()
        reference.zero_grad()
    saved_weights = {key: value.clone() for key, value in model.state_dict().items()}
    twin = nn.Linear(3, 2)
    twin.load_state_dict(saved_weights)
    ours, _ = build_optimizer(config, twin, 2, 1)
    ours.load_state_dict(copy.deepcopy(reference.state_dict()))  # as read from a checkpoint
    inputs = torch.randn(4, 3)
    for network, optimizer in ((model, reference), (twin, ours)):
        network(inputs).square().sum().backward()
        optimizer.step()
    assert type(ours).__name__ == "AdamW" and type(ours) is not torch.optim.AdamW
    for key, value in model.state_dict().items():
        torch.testing.assert_close(twin.state_dict()[key], value, rtol=0, atol=0)


def test_all_frozen_model_is_an_error():
    model = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ConfigError, match="no trainable parameters"):
        parameter_groups(model)


@pytest.mark.parametrize("config, message", [
    ({"name": "adamw", "lr": {"name": "Constant", "learning_rate": 1e-3}},
     r"Optimizer: unknown optimizer 'adamw'. Did you mean .*'AdamW'.*Registered optimizers: Adam, AdamW, SGD"),
    ({"name": "AdamW", "momentum": 0.9, "lr": {"name": "Constant", "learning_rate": 1e-3}},
     r"Optimizer AdamW: unknown keyword 'momentum'.*Accepted: betas, eps, weight_decay"),
    ({"lr": {"name": "Constant", "learning_rate": 1e-3}}, "expected a mapping with a name"),
    ({"name": "AdamW"}, r"Optimizer.lr: expected a mapping with name and learning_rate"),
    ({"name": "AdamW", "lr": 1e-3}, r"Optimizer.lr: expected a mapping"),
    ({"name": "AdamW", "lr": {"name": "Constant", "learning_rate": -1.0}},
     "learning_rate must be a finite number > 0, got -1.0"),
    ({"name": "AdamW", "betas": [0.9], "lr": {"name": "Constant", "learning_rate": 1e-3}}, "betas"),
    ({"name": "AdamW", "no_weight_decay_on_norm_and_bias": "yes",
      "lr": {"name": "Constant", "learning_rate": 1e-3}}, "no_weight_decay_on_norm_and_bias"),
    ({"name": "SGD", "nesterov": True, "lr": {"name": "Constant", "learning_rate": 1e-3}},
     "nesterov needs momentum"),
])
def test_config_mistakes_are_reported(config, message):
    with pytest.raises(ConfigError, match=message):
        build_optimizer(config, nn.Linear(2, 2), 2, 1)


@pytest.mark.parametrize("lr_config", [
    {"name": "OneCycleLR", "learning_rate": 1e-3, "pct_start": 0.5},
    {"name": "CosineWarmup", "learning_rate": 1e-3, "warmup_epoch": 1},
    {"name": "Constant", "learning_rate": 1e-3},
    {"name": "MultiStepDecay", "learning_rate": 1e-3, "milestones": [1]},
])
def test_lr_multipliers_scale_a_module_through_the_whole_schedule(lr_config):
    model = TinyModel()
    config = {"name": "AdamW", "lr": lr_config, "lr_multipliers": {"encoder": 3.0, "encoder.norm": 0.5}}
    optimizer, scheduler = build_optimizer(config, model, steps_per_epoch=4, epochs=3)
    names = group_names(model, optimizer.param_groups)
    scale_of = {name: group.get("lr_scale", 1.0)
                for group, members in zip(optimizer.param_groups, names) for name in members}
    assert scale_of["encoder.proj.weight"] == scale_of["encoder.pos_embed"] == 3.0
    assert scale_of["encoder.norm.weight"] == 0.5  # the longest prefix wins
    assert scale_of["conv.weight"] == scale_of["bn.bias"] == 1.0
    plain = next(group for group in optimizer.param_groups if "lr_scale" not in group)
    tripled = next(group for group in optimizer.param_groups if group.get("lr_scale") == 3.0)
    for _ in range(12):
        assert tripled["lr"] == pytest.approx(3.0 * plain["lr"], rel=1e-9)
        optimizer.step()
        scheduler.step()


def test_lr_multipliers_keep_weight_decay_grouping():
    model = TinyModel()
    config = adamw_config(weight_decay=0.05, lr_multipliers={"encoder": 2})
    optimizer, _ = build_optimizer(config, model, steps_per_epoch=2, epochs=1)
    exempt_names = {"bn.bias", "bn.weight", "conv.bias", "fc.b", "in_proj_bias", "encoder.norm.bias",
                    "encoder.norm.weight", "encoder.proj.bias", "encoder.pos_embed"}
    groups = list(zip(optimizer.param_groups, group_names(model, optimizer.param_groups)))
    assert len(groups) == 4  # {decayed, exempt} x {x1, x2}
    for group, members in groups:
        exempt = group.get("weight_decay") == 0.0
        assert all((name in exempt_names) == exempt for name in members), members
        assert all(name.startswith("encoder.") == ("lr_scale" in group) for name in members), members


@pytest.mark.parametrize("multipliers, message", [
    ({"backbone": 2.0}, r"'backbone' names no trainable parameter; top-level modules: bn, conv, encoder"),
    ({"frozen_queries": 2.0}, "'frozen_queries' names no trainable parameter"),
    ({"encoder": 0}, "encoder"),
    ([2.0], "must map module names to numbers"),
])
def test_lr_multiplier_mistakes(multipliers, message):
    with pytest.raises(ConfigError, match=message):
        build_optimizer(adamw_config(lr_multipliers=multipliers), TinyModel(), 2, 1)
