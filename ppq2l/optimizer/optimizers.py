"""Optimizers built from the `Optimizer` config section, with parameter groups that keep weight
decay off norm weights and biases, and the learning-rate schedule from `Optimizer.lr`."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from ppq2l.checks import flag, number, number_list
from ppq2l.errors import ConfigError
from ppq2l.optimizer.lr_schedulers import build_lr_scheduler
from ppq2l.registry import OPTIMIZERS

ParamGroups = list[dict[str, Any]]

# Devices where torch has single-kernel ("fused") Adam, AdamW and SGD updates.
FUSED_DEVICE_TYPES = ("cpu", "cuda")


def fused_unless_configured(params: list, foreach: bool | None, fused: bool | None) -> bool | None:
    """The `fused` flag to pass on: as configured when `foreach` or `fused` is set; otherwise True
    when every parameter is a floating-point tensor on CPU or CUDA. Torch's own default on CPU is
    one small kernel per tensor per operation; the fused update reads each tensor once, which
    matters most for wide heads such as Query2Label's (benchmarks/bench_train.py times the whole
    step against a per-tensor loop). The result is the same update up to float rounding."""
    if foreach is not None or fused is not None:
        return fused
    tensors = [tensor for item in params
               for tensor in (item["params"] if isinstance(item, dict) else [item])]
    if tensors and all(tensor.is_floating_point() and tensor.device.type in FUSED_DEVICE_TYPES
                       for tensor in tensors):
        return True
    return None


def adam_keywords(where: str, params: list, betas: Any, eps: Any, weight_decay: Any, amsgrad: Any,
                  foreach: bool | None, fused: bool | None) -> dict[str, Any]:
    """The checked keywords Adam and AdamW share."""
    return {"betas": tuple(number_list(betas, "betas", length=2, minimum=0.0, below=1.0,
                                       example="[0.9, 0.999]", where=where)),
            "eps": number(eps, "eps", above=0.0, where=where),
            "weight_decay": number(weight_decay, "weight_decay", minimum=0.0, where=where),
            "amsgrad": flag(amsgrad, "amsgrad", where=where), "foreach": foreach,
            "fused": fused_unless_configured(params, foreach, fused)}


@OPTIMIZERS.register
class AdamW(torch.optim.AdamW):
    """Adam with decoupled weight decay (the Query2Label recipe: lr 1e-4, weight_decay 1e-2)."""

    def __init__(self, params: Any, lr: float, /, *, betas: Sequence[float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False,
                 foreach: bool | None = None, fused: bool | None = None) -> None:
        params = list(params)
        super().__init__(params, lr=lr, **adam_keywords("AdamW", params, betas, eps, weight_decay,
                                                        amsgrad, foreach, fused))


@OPTIMIZERS.register
class Adam(torch.optim.Adam):
    """Adam with L2 penalty added to the gradient (the ML-Decoder recipe: lr 1e-4, weight_decay 1e-4)."""

    def __init__(self, params: Any, lr: float, /, *, betas: Sequence[float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False,
                 foreach: bool | None = None, fused: bool | None = None) -> None:
        params = list(params)
        super().__init__(params, lr=lr, **adam_keywords("Adam", params, betas, eps, weight_decay,
                                                        amsgrad, foreach, fused))


@OPTIMIZERS.register
class SGD(torch.optim.SGD):
    """Stochastic gradient descent, optionally with (Nesterov) momentum."""

    def __init__(self, params: Any, lr: float, /, *, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, foreach: bool | None = None,
                 fused: bool | None = None) -> None:
        where, params = "SGD", list(params)
        momentum = number(momentum, "momentum", minimum=0.0, where=where)
        dampening = number(dampening, "dampening", minimum=0.0, where=where)
        if flag(nesterov, "nesterov", where=where) and (momentum <= 0 or dampening != 0):
            raise ConfigError(f"{where}: nesterov needs momentum > 0 and dampening 0, got "
                              f"momentum={momentum:g}, dampening={dampening:g}")
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening,
                         weight_decay=number(weight_decay, "weight_decay", minimum=0.0, where=where),
                         nesterov=nesterov, foreach=foreach,
                         fused=fused_unless_configured(params, foreach, fused))


def _declared_no_decay(model: nn.Module) -> set[str]:
    """Full names of parameters that modules list in a timm-style `no_weight_decay()` method
    (positional embeddings, relative-position tables)."""
    names: set[str] = set()
    for prefix, module in model.named_modules():
        declare = getattr(module, "no_weight_decay", None)
        if not callable(declare):
            continue
        for name in declare():
            names.add(f"{prefix}.{name}" if prefix else name)
    return names


def is_norm_or_bias(name: str, parameter: torch.Tensor) -> bool:
    """Whether a parameter is a bias or a norm scale: 1-D or scalar, or named `bias`, `*_bias` or `b`
    (the per-class bias of the Query2Label head has shape [1, classes])."""
    leaf = name.rsplit(".", 1)[-1]
    return parameter.ndim <= 1 or leaf in ("bias", "b") or leaf.endswith("_bias")


def lr_scale_of(name: str, lr_multipliers: dict[str, float]) -> float:
    """The multiplier of the longest prefix in `lr_multipliers` that names `name` or a module
    containing it (`backbone` covers `backbone.body.conv1.weight`); 1 when none does."""
    matches = [prefix for prefix in lr_multipliers if name == prefix or name.startswith(prefix + ".")]
    return float(lr_multipliers[max(matches, key=len)]) if matches else 1.0


def check_lr_multipliers(lr_multipliers: Any, names: list[str]) -> dict[str, float]:
    """`Optimizer.lr_multipliers` as {module prefix: positive number}, each prefix naming at least
    one trainable parameter."""
    where = "Optimizer.lr_multipliers"
    if lr_multipliers is None:
        return {}
    if not isinstance(lr_multipliers, dict):
        raise ConfigError(f"{where} must map module names to numbers, e.g. {{backbone: 2.0}}; "
                          f"got {lr_multipliers!r}")
    modules = sorted({name.split(".", 1)[0] for name in names})
    checked = {}
    for prefix, scale in lr_multipliers.items():
        if not any(name == prefix or name.startswith(f"{prefix}.") for name in names):
            raise ConfigError(f"{where}: {prefix!r} names no trainable parameter; top-level modules: "
                              f"{', '.join(modules)}")
        checked[str(prefix)] = number(scale, str(prefix), above=0.0, where=where)
    return checked


def parameter_groups(model: nn.Module, no_weight_decay_on_norm_and_bias: bool = True,
                     lr_multipliers: dict[str, float] | None = None) -> ParamGroups:
    """Trainable parameters grouped by weight decay (norm weights, biases and names a module
    declares in `no_weight_decay()` get 0 when `no_weight_decay_on_norm_and_bias`) and by learning-
    rate multiplier (`lr_scale`, from `lr_multipliers` = {module prefix: factor}); frozen
    parameters are left out."""
    trainable: list[tuple[str, nn.Parameter]] = [
        (name, parameter) for name, parameter in model.named_parameters() if parameter.requires_grad]
    if not trainable:
        raise ConfigError("Optimizer: the model has no trainable parameters (all are frozen)")
    multipliers = check_lr_multipliers(lr_multipliers, [name for name, _ in trainable])
    declared = _declared_no_decay(model) if no_weight_decay_on_norm_and_bias else set()
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for name, parameter in trainable:
        exempt = no_weight_decay_on_norm_and_bias and (
            name in declared or is_norm_or_bias(name, parameter))
        groups.setdefault((exempt, lr_scale_of(name, multipliers)), []).append(parameter)
    result = []
    for (exempt, scale), params in sorted(groups.items(), key=lambda item: item[0]):  # decayed first
        group: dict[str, Any] = {"params": params}
        if exempt:
            group["weight_decay"] = 0.0
        if scale != 1.0:
            group["lr_scale"] = scale
        result.append(group)
    return result


def build_optimizer(cfg: Any, model: nn.Module, steps_per_epoch: int,
                    epochs: int) -> tuple[Optimizer, LRScheduler]:
    """Build the optimizer named in `cfg` over `model`'s trainable parameters and the schedule in
    `cfg["lr"]`, e.g. `{name: AdamW, weight_decay: 1e-2, lr: {name: OneCycleLR, learning_rate: 1e-4}}`."""
    where = "Optimizer"
    name, kwargs = OPTIMIZERS.parse_mapping(
        cfg, where, example="{name: AdamW, lr: {name: OneCycleLR, learning_rate: 1.0e-4}}")
    # The keys below shape the parameter groups and the schedule, not the optimizer itself.
    lr_cfg = kwargs.pop("lr", None)
    exempt_norm_and_bias = flag(kwargs.pop("no_weight_decay_on_norm_and_bias", True),
                                "no_weight_decay_on_norm_and_bias", where=where)
    lr_multipliers = kwargs.pop("lr_multipliers", None)
    if not isinstance(lr_cfg, dict) or "learning_rate" not in lr_cfg:
        raise ConfigError(f"{where}.lr: expected a mapping with name and learning_rate, e.g. "
                          f"{{name: OneCycleLR, learning_rate: 1.0e-4, pct_start: 0.2}}; got {lr_cfg!r}")
    learning_rate = number(lr_cfg["learning_rate"], "learning_rate", above=0.0, where=f"{where}.lr")
    groups = parameter_groups(model, exempt_norm_and_bias, lr_multipliers)
    try:
        optimizer = OPTIMIZERS.build(name, kwargs, where, groups, learning_rate)
    except (ValueError, RuntimeError) as error:  # torch's own checks, e.g. fused on other devices
        raise ConfigError(f"{where} {name}: {error}") from error
    return optimizer, build_lr_scheduler(lr_cfg, optimizer, steps_per_epoch, epochs)
