"""Learning-rate schedules, all advanced once per optimizer step (`scheduler.step()` after each
`optimizer.step()`) and restorable from `state_dict()` to continue a run."""
from __future__ import annotations

import math
from typing import Any, Sequence

from torch.optim import Optimizer
from torch.optim import lr_scheduler as torch_schedulers

from ppq2l.errors import ConfigError
from ppq2l.registry import LR_SCHEDULERS, check_keywords

ANNEAL_STRATEGIES = ("cos", "linear")


def require_number(value: Any, name: str, where: str, minimum: float | None = None,
                   above: float | None = None) -> float:
    """Return `value` as a float, or raise a ConfigError when it is not a finite number in range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}: {name} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{where}: {name} must be >= {minimum}, got {value}")
    if above is not None and value <= above:
        raise ConfigError(f"{where}: {name} must be > {above}, got {value}")
    return float(value)


def require_flag(value: Any, name: str, where: str) -> bool:
    """Return `value`, or raise a ConfigError when it is not a boolean."""
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {name} must be true or false, got {value!r}")
    return value


def cosine_between(start: float, end: float, fraction: float) -> float:
    """Half-cosine from `start` (fraction 0) to `end` (fraction 1)."""
    return end + (start - end) * (1.0 + math.cos(math.pi * fraction)) / 2.0


def check_resumed_length(name: str, total_steps: int, state: dict[str, Any]) -> None:
    """Refuse a saved schedule whose length differs from the configured one, since continuing it
    would silently follow the old plan (or step past its end)."""
    saved = state.get("total_steps")
    if saved is not None and saved != total_steps:
        raise ConfigError(
            f"{name}: the checkpoint's schedule has {saved} steps but the config gives {total_steps} "
            f"(epochs x steps per epoch); resume with the same Global.epochs, batch size and dataset")


class StepwiseSchedule(torch_schedulers.LRScheduler):
    """Base of schedules whose rate is a closed-form function of the step index; steps past the
    last one keep the last step's rate."""

    def __init__(self, optimizer: Optimizer, total_steps: int) -> None:
        self.total_steps = int(total_steps)
        super().__init__(optimizer)

    def rate_at(self, step: int, base_lr: float) -> float:
        """The learning rate for step `step` (0-based) of a group whose base rate is `base_lr`."""
        raise NotImplementedError

    def get_lr(self) -> list[float]:
        """Rates for the current step, one per parameter group."""
        step = min(self.last_epoch, self.total_steps - 1)
        return [self.rate_at(step, base_lr) for base_lr in self.base_lrs]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a saved position; the saved schedule must have the configured length."""
        check_resumed_length(type(self).__name__, self.total_steps, state_dict)
        super().load_state_dict(state_dict)


class ConstantSchedule(StepwiseSchedule):
    """The base learning rate at every step."""

    def rate_at(self, step: int, base_lr: float) -> float:
        """The base rate, whatever the step."""
        return base_lr


class WarmupCosineSchedule(StepwiseSchedule):
    """Linear warm-up from `warmup_start_lr` to the base rate over `warmup_steps`, then a half
    cosine that reaches `eta_min` at the last step."""

    def __init__(self, optimizer: Optimizer, total_steps: int, warmup_steps: int,
                 warmup_start_lr: float, eta_min: float) -> None:
        self.warmup_steps = int(warmup_steps)
        self.warmup_start_lr = float(warmup_start_lr)
        self.eta_min = float(eta_min)
        super().__init__(optimizer, total_steps)

    def rate_at(self, step: int, base_lr: float) -> float:
        """Warm-up rate before `warmup_steps`, cosine-annealed rate from there to the end."""
        if step < self.warmup_steps:
            return self.warmup_start_lr + (base_lr - self.warmup_start_lr) * step / self.warmup_steps
        decay_steps = max(self.total_steps - 1 - self.warmup_steps, 1)
        fraction = min((step - self.warmup_steps) / decay_steps, 1.0)
        return cosine_between(base_lr, self.eta_min, fraction)


class MultiStepSchedule(StepwiseSchedule):
    """The base rate times `gamma` once for every milestone step already reached."""

    def __init__(self, optimizer: Optimizer, total_steps: int, milestone_steps: Sequence[int],
                 gamma: float) -> None:
        self.milestone_steps = [int(step) for step in milestone_steps]
        self.gamma = float(gamma)
        super().__init__(optimizer, total_steps)

    def rate_at(self, step: int, base_lr: float) -> float:
        """Base rate decayed by the number of milestones at or before `step`."""
        passed = sum(1 for milestone in self.milestone_steps if step >= milestone)
        return base_lr * self.gamma ** passed


class OneCycleSchedule(torch_schedulers.OneCycleLR):
    """torch's OneCycleLR (its phases, anneal functions and momentum cycling), made safe at the
    edges: a warm-up phase of zero length no longer divides by zero, and steps past the end keep
    the final rate instead of raising or climbing back up."""

    def get_lr(self) -> list[float]:
        """Rates for the current step, one per parameter group (betas/momentum updated too)."""
        step = min(self.last_epoch, self.total_steps - 1)
        rates = []
        for group in self.optimizer.param_groups:
            phase_start = 0.0
            for index, phase in enumerate(self._schedule_phases):
                phase_end = phase["end_step"]
                if step <= phase_end or index == len(self._schedule_phases) - 1:
                    span = phase_end - phase_start
                    fraction = (step - phase_start) / span if span > 0 else 1.0
                    fraction = min(max(fraction, 0.0), 1.0)
                    rates.append(self._anneal_func(group[phase["start_lr"]], group[phase["end_lr"]],
                                                   fraction))
                    if self.cycle_momentum:
                        momentum = self._anneal_func(group[phase["start_momentum"]],
                                                     group[phase["end_momentum"]], fraction)
                        if self.use_beta1:
                            group["betas"] = (momentum, *group["betas"][1:])
                        else:
                            group["momentum"] = momentum
                    break
                phase_start = phase_end
        return rates

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a saved position; the saved schedule must have the configured length."""
        check_resumed_length("OneCycleLR", self.total_steps, state_dict)
        super().load_state_dict(state_dict)


def _total_steps(steps_per_epoch: int, epochs: int, where: str) -> int:
    if steps_per_epoch < 1 or epochs < 1:
        raise ConfigError(f"{where}: a schedule needs at least one step, got {steps_per_epoch} steps "
                          f"per epoch for {epochs} epochs (is the training list empty?)")
    return steps_per_epoch * epochs


def group_rates(optimizer: Optimizer, learning_rate: float) -> list[float]:
    """The base rate of each parameter group: `learning_rate` times the group's `lr_scale`
    (set from `Optimizer.lr_multipliers`; 1 when absent)."""
    return [learning_rate * float(group.get("lr_scale", 1.0)) for group in optimizer.param_groups]


def _set_base_lr(optimizer: Optimizer, learning_rate: float) -> None:
    # The schedule, not the optimizer keywords, owns the base rate.
    for group, rate in zip(optimizer.param_groups, group_rates(optimizer, learning_rate)):
        group["lr"] = rate
        group["initial_lr"] = rate


@LR_SCHEDULERS.register(name="OneCycleLR")
def build_one_cycle(optimizer: Optimizer, steps_per_epoch: int, epochs: int, /, *,
                    learning_rate: float, pct_start: float = 0.2, div_factor: float = 25.0,
                    final_div_factor: float = 1e4, anneal_strategy: str = "cos",
                    three_phase: bool = False, cycle_momentum: bool = True,
                    base_momentum: float = 0.85, max_momentum: float = 0.95) -> OneCycleSchedule:
    """One-cycle policy peaking at `learning_rate` after `pct_start` of all steps (official Query2Label:
    pct_start 0.2, momentum/beta1 cycled between 0.95 and 0.85)."""
    where = "Optimizer.lr OneCycleLR"
    learning_rate = require_number(learning_rate, "learning_rate", where, above=0.0)
    pct_start = require_number(pct_start, "pct_start", where, minimum=0.0)
    if pct_start > 1.0:
        raise ConfigError(f"{where}: pct_start must be in [0, 1], got {pct_start}")
    div_factor = require_number(div_factor, "div_factor", where, above=0.0)
    final_div_factor = require_number(final_div_factor, "final_div_factor", where, above=0.0)
    if anneal_strategy not in ANNEAL_STRATEGIES:
        raise ConfigError(f"{where}: unknown anneal_strategy {anneal_strategy!r}; valid: "
                          f"{', '.join(ANNEAL_STRATEGIES)}")
    cycle_momentum = require_flag(cycle_momentum, "cycle_momentum", where)
    if cycle_momentum and "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
        raise ConfigError(f"{where}: cycle_momentum needs an optimizer with momentum or betas; "
                          f"set cycle_momentum: false")
    return OneCycleSchedule(
        optimizer, max_lr=group_rates(optimizer, learning_rate), total_steps=_total_steps(steps_per_epoch, epochs, where),
        pct_start=pct_start, anneal_strategy=anneal_strategy, cycle_momentum=cycle_momentum,
        base_momentum=require_number(base_momentum, "base_momentum", where, minimum=0.0),
        max_momentum=require_number(max_momentum, "max_momentum", where, minimum=0.0),
        div_factor=div_factor, final_div_factor=final_div_factor,
        three_phase=require_flag(three_phase, "three_phase", where))


@LR_SCHEDULERS.register(name="CosineWarmup")
def build_cosine_warmup(optimizer: Optimizer, steps_per_epoch: int, epochs: int, /, *,
                        learning_rate: float, warmup_epoch: float = 0, warmup_start_lr: float = 0.0,
                        eta_min: float = 0.0) -> WarmupCosineSchedule:
    """Per-step linear warm-up over `warmup_epoch` epochs, then cosine decay to `eta_min`."""
    where = "Optimizer.lr CosineWarmup"
    learning_rate = require_number(learning_rate, "learning_rate", where, above=0.0)
    warmup_epoch = require_number(warmup_epoch, "warmup_epoch", where, minimum=0.0)
    total_steps = _total_steps(steps_per_epoch, epochs, where)
    warmup_steps = round(warmup_epoch * steps_per_epoch)
    if warmup_steps >= total_steps:
        raise ConfigError(f"{where}: warmup_epoch {warmup_epoch} leaves no steps to decay in "
                          f"{epochs} epochs; use a smaller warmup_epoch")
    _set_base_lr(optimizer, learning_rate)
    return WarmupCosineSchedule(
        optimizer, total_steps, warmup_steps,
        require_number(warmup_start_lr, "warmup_start_lr", where, minimum=0.0),
        require_number(eta_min, "eta_min", where, minimum=0.0))


@LR_SCHEDULERS.register(name="Constant")
def build_constant(optimizer: Optimizer, steps_per_epoch: int, epochs: int, /, *,
                   learning_rate: float) -> ConstantSchedule:
    """The same learning rate for the whole run."""
    where = "Optimizer.lr Constant"
    _set_base_lr(optimizer, require_number(learning_rate, "learning_rate", where, above=0.0))
    return ConstantSchedule(optimizer, _total_steps(steps_per_epoch, epochs, where))


@LR_SCHEDULERS.register(name="MultiStepDecay")
def build_multi_step_decay(optimizer: Optimizer, steps_per_epoch: int, epochs: int, /, *,
                           learning_rate: float, milestones: Sequence[int],
                           gamma: float = 0.1) -> MultiStepSchedule:
    """Multiply the rate by `gamma` when each epoch in `milestones` (1-based epochs completed)
    is over."""
    where = "Optimizer.lr MultiStepDecay"
    learning_rate = require_number(learning_rate, "learning_rate", where, above=0.0)
    if (not isinstance(milestones, (list, tuple)) or not milestones
            or any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in milestones)
            or list(milestones) != sorted(set(milestones))):
        raise ConfigError(f"{where}: milestones must be a non-empty increasing list of epochs >= 1, "
                          f"got {milestones!r}")
    gamma = require_number(gamma, "gamma", where, above=0.0)
    _set_base_lr(optimizer, learning_rate)
    return MultiStepSchedule(optimizer, _total_steps(steps_per_epoch, epochs, where),
                             [milestone * steps_per_epoch for milestone in milestones], gamma)


def build_lr_scheduler(cfg: dict, optimizer: Optimizer, steps_per_epoch: int,
                       epochs: int) -> torch_schedulers.LRScheduler:
    """Build the schedule described by `Optimizer.lr` (e.g. `{name: OneCycleLR, learning_rate: 1e-4}`)
    for a run of `epochs` epochs of `steps_per_epoch` optimizer steps."""
    where = "Optimizer.lr"
    if not isinstance(cfg, dict) or "name" not in cfg:
        raise ConfigError(f"{where}: expected a mapping with a name, e.g. {{name: OneCycleLR, "
                          f"learning_rate: 1.0e-4}}; registered: {', '.join(LR_SCHEDULERS.names())}; "
                          f"got {cfg!r}")
    kwargs = dict(cfg)
    name = kwargs.pop("name")
    builder = LR_SCHEDULERS.get(name, where)
    check_keywords(builder, kwargs, f"{where} {name}")
    if "learning_rate" not in kwargs:
        raise ConfigError(f"{where} {name}: learning_rate is required")
    try:
        return builder(optimizer, int(steps_per_epoch), int(epochs), **kwargs)
    except ValueError as error:
        raise ConfigError(f"{where} {name}: {error}") from error
