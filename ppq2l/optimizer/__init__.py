"""Optimizers and learning-rate schedules; importing this package registers them in `OPTIMIZERS`
and `LR_SCHEDULERS`."""
from ppq2l.optimizer import lr_schedulers, optimizers
from ppq2l.optimizer.lr_schedulers import build_lr_scheduler
from ppq2l.optimizer.optimizers import build_optimizer, parameter_groups

__all__ = ["build_lr_scheduler", "build_optimizer", "parameter_groups", "lr_schedulers", "optimizers"]
