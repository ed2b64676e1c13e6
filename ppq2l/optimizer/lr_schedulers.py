"""Learning-rate schedules, all advanced once per optimizer step (`scheduler.step()` after each
`optimizer.step()`) and restorable from `state_dict()` to continue a run. Each class is registered
under the name `Optimizer.lr.name` gives it and built as `Schedule(optimizer, steps_per_epoch,
epochs, learning_rate=..., <keywords>)`."""
from __future__ import annotations

import math
from typing import Any, Sequence

from torch.optim import Optimizer
from torch.optim import lr_scheduler as torch_schedulers

from ppq2l.checks import choice, flag, number, number_list
from ppq2l.errors import ConfigError
from ppq2l.registry import LR_SCHEDULERS

ANNEAL_STRATEGIES = ("cos", "linear")


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


def total_steps_of(steps_per_epoch: int, epochs: int, where: str) -> int:
    """Optimizer steps in the whole run; a run without any is a ConfigError."""
    if steps_per_epoch < 1 or epochs < 1:
        raise ConfigError(f"{where}: a schedule needs at least one step, got {steps_per_epoch} steps "
                          f"per epoch for {epochs} epochs (is the training list empty?)")
    return int(steps_per_epoch) * int(epochs)


def group_rates(optimizer: Optimizer, learning_rate: float) -> list[float]:
    """The base rate of each parameter group: `learning_rate` times the group's `lr_scale`
    (set from `Optimizer.lr_multipliers`; 1 when absent)."""
    return [learning_rate * float(group.get("lr_scale", 1.0)) for group in optimizer.param_groups]


def set_base_lr(optimizer: Optimizer, learning_rate: float) -> None:
    """Give every group its base rate; the schedule, not the optimizer keywords, owns it."""
    for group, rate in zip(optimizer.param_groups, group_rates(optimizer, learning_rate)):
        group["lr"] = rate
        group["initial_lr"] = rate


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


@LR_SCHEDULERS.register
class Constant(StepwiseSchedule):
    """The same learning rate for the whole run."""

    def __init__(self, optimizer: Optimizer, steps_per_epoch: int, epochs: int, /, *,
                 learning_rate: float) -> None:
        set_base_lr(optimizer, number(learning_rate, "learning_rate", above=0.0, where="Constant"))
        super().__init__(optimizer, total_steps_of(steps_per_epoch, epochs, "Constant"))

    def rate_at(self, step: int, base_lr: float) -> float:
        """The base rate, whatever the step."""
        return base_lr


@LR_SCHEDULERS.register
class CosineWarmup(StepwiseSchedule):
    """Per-step linear warm-up from `warmup_start_lr` to `learning_rate` over `warmup_epoch`
    epochs, then a half cosine that reaches `eta_min` at the last step."""

    def __init__(self, optimizer: Optimizer, steps_per_epoch: int, epochs: int, /, *,
                 learning_rate: float, warmup_epoch: float = 0, warmup_start_lr: float = 0.0,
                 eta_min: float = 0.0) -> None:
        where = "CosineWarmup"
        learning_rate = number(learning_rate, "learning_rate", above=0.0, where=where)
        warmup_epoch = number(warmup_epoch, "warmup_epoch", minimum=0.0, where=where)
        total_steps = total_steps_of(steps_per_epoch, epochs, where)
        # Attribute names are those of saved checkpoints' schedule states; keep them.
        self.warmup_steps = round(warmup_epoch * steps_per_epoch)
        if self.warmup_steps >= total_steps:
            raise ConfigError(f"{where}: warmup_epoch {warmup_epoch:g} leaves no steps to decay in "
                              f"{epochs} epochs; use a smaller warmup_epoch")
        self.warmup_start_lr = number(warmup_start_lr, "warmup_start_lr", minimum=0.0, where=where)
        self.eta_min = number(eta_min, "eta_min", minimum=0.0, where=where)
        set_base_lr(optimizer, learning_rate)
        super().__init__(optimizer, total_steps)

    def rate_at(self, step: int, base_lr: float) -> float:
        """Warm-up rate before `warmup_steps`, cosine-annealed rate from there to the end."""
        if step < self.warmup_steps:
            return self.warmup_start_lr + (base_lr - self.warmup_start_lr) * step / self.warmup_steps
        decay_steps = max(self.total_steps - 1 - self.warmup_steps, 1)
        fraction = min((step - self.warmup_steps) / decay_steps, 1.0)
        return cosine_between(base_lr, self.eta_min, fraction)


@LR_SCHEDULERS.register
class MultiStepDecay(StepwiseSchedule):
    """The rate times `gamma` each time an epoch in `milestones` (1-based epochs completed) is
    over."""

    def __init__(self, optimizer: Optimizer, steps_per_epoch: int, epochs: int, /, *,
                 learning_rate: float, milestones: Sequence[int], gamma: float = 0.1) -> None:
        where = "MultiStepDecay"
        learning_rate = number(learning_rate, "learning_rate", above=0.0, where=where)
        epochs_done = number_list(milestones, "milestones", integers=True, minimum=1,
                                  increasing=True, example="[30, 60] (epochs)", where=where)
        self.milestone_steps = [milestone * int(steps_per_epoch) for milestone in epochs_done]
        self.gamma = number(gamma, "gamma", above=0.0, where=where)
        set_base_lr(optimizer, learning_rate)
        super().__init__(optimizer, total_steps_of(steps_per_epoch, epochs, where))

    def rate_at(self, step: int, base_lr: float) -> float:
        """Base rate decayed by the number of milestones at or before `step`."""
        passed = sum(1 for milestone in self.milestone_steps if step >= milestone)
        return base_lr * self.gamma ** passed


@LR_SCHEDULERS.register
class OneCycleLR(torch_schedulers.OneCycleLR):
    """torch's OneCycleLR peaking at `learning_rate` after `pct_start` of all steps (official
    Query2Label: pct_start 0.2, momentum/beta1 cycled between 0.95 and 0.85), made safe at the
    edges: a warm-up phase of zero length no longer divides by zero, and steps past the end keep
    the final rate instead of raising or climbing back up."""

    def __init__(self, optimizer: Optimizer, steps_per_epoch: int, epochs: int, /, *,
                 learning_rate: float, pct_start: float = 0.2, div_factor: float = 25.0,
                 final_div_factor: float = 1e4, anneal_strategy: str = "cos",
                 three_phase: bool = False, cycle_momentum: bool = True,
                 base_momentum: float = 0.85, max_momentum: float = 0.95) -> None:
        where = "OneCycleLR"
        learning_rate = number(learning_rate, "learning_rate", above=0.0, where=where)
        cycle_momentum = flag(cycle_momentum, "cycle_momentum", where=where)
        if cycle_momentum and "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
            raise ConfigError(f"{where}: cycle_momentum needs an optimizer with momentum or betas; "
                              f"set cycle_momentum: false")
        super().__init__(
            optimizer, max_lr=group_rates(optimizer, learning_rate),
            total_steps=total_steps_of(steps_per_epoch, epochs, where),
            pct_start=number(pct_start, "pct_start", minimum=0.0, maximum=1.0, where=where),
            anneal_strategy=choice(anneal_strategy, "anneal_strategy", ANNEAL_STRATEGIES, where=where),
            cycle_momentum=cycle_momentum,
            base_momentum=number(base_momentum, "base_momentum", minimum=0.0, where=where),
            max_momentum=number(max_momentum, "max_momentum", minimum=0.0, where=where),
            div_factor=number(div_factor, "div_factor", above=0.0, where=where),
            final_div_factor=number(final_div_factor, "final_div_factor", above=0.0, where=where),
            three_phase=flag(three_phase, "three_phase", where=where))

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
        check_resumed_length(type(self).__name__, self.total_steps, state_dict)
        super().load_state_dict(state_dict)


def build_lr_scheduler(cfg: Any, optimizer: Optimizer, steps_per_epoch: int,
                       epochs: int) -> torch_schedulers.LRScheduler:
    """Build the schedule described by `Optimizer.lr` (e.g. `{name: OneCycleLR, learning_rate: 1e-4}`)
    for a run of `epochs` epochs of `steps_per_epoch` optimizer steps."""
    return LR_SCHEDULERS.build_mapping(cfg, "Optimizer.lr", optimizer, int(steps_per_epoch),
                                       int(epochs), example="{name: OneCycleLR, learning_rate: 1.0e-4}")
